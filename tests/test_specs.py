"""Backend specs and options: one rule for policies and trackers, checked before anything loads."""

from __future__ import annotations

import pytest

from revseg.errors import SpecError
from revseg.policies import build_policy
from revseg.specs import bind_options, split_spec


def test_a_policy_option_the_backend_does_not_take_is_a_spec_error_listing_the_ones_it_does() -> None:
    with pytest.raises(SpecError, match=r"'openai:m': unknown option bogus \(this backend takes: .*base_url"):
        build_policy("openai:m", base_url="http://127.0.0.1:9/v1", bogus=1)


def test_options_are_checked_by_name_against_the_factorys_keyword_parameters() -> None:
    def factory(ref: str, *, spec: str | None = None, size: int = 1) -> None: ...

    assert bind_options(factory, {"size": 2}, "x:y", kind="policy") == {"size": 2}
    with pytest.raises(SpecError, match="unknown options a, b"):
        bind_options(factory, {"a": 1, "b": 2}, "x:y", kind="policy")


def test_a_factory_with_its_own_keyword_catch_all_takes_any_option() -> None:
    def factory(ref: str, **options: object) -> None: ...

    assert bind_options(factory, {"anything": 1}, "langchain:p:m", kind="policy") == {"anything": 1}


def test_split_spec_names_the_known_schemes() -> None:
    assert split_spec("hf:a/b", {"hf": 1}, "policy") == ("hf", "a/b")
    with pytest.raises(SpecError, match="known: hf"):
        split_spec("nope:x", {"hf": 1}, "policy")
    with pytest.raises(SpecError, match="SCHEME:REF"):
        split_spec("hf", {"hf": 1}, "policy")
