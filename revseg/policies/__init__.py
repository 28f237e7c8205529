"""Policy backends, chosen by spec string: ``hf:MODEL``, ``openai:MODEL`` or ``langchain:PROVIDER:MODEL``.

A langchain-core chat model object can also be passed to the agent directly; it is wrapped
in :class:`revseg.policies.langchain.LangChainPolicy`.

One plain dict maps a scheme to a factory; a new backend is one new module plus one
line here. Factories import their heavy libraries lazily, so importing this package
stays cheap.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from revseg.policies.base import Generation, ImagePart, Message, Policy, TextPart
from revseg.specs import bind_options, split_spec

DEFAULT_POLICY = "hf:Qwen/Qwen2.5-VL-7B-Instruct"

PolicyFactory = Callable[..., Policy]


def _hf(ref: str, spec: str, **options: Any) -> Policy:
    from revseg.policies.hf import HFPolicy

    return HFPolicy.from_spec(ref, spec=spec, **bind_options(HFPolicy.from_spec, options, spec, kind="policy"))


def _openai(ref: str, spec: str, **options: Any) -> Policy:
    from revseg.policies.openai import OpenAIPolicy

    return OpenAIPolicy(ref, spec=spec, **bind_options(OpenAIPolicy, options, spec, kind="policy"))


def _langchain(ref: str, spec: str, **options: Any) -> Policy:
    from revseg.policies.langchain import LangChainPolicy

    return LangChainPolicy.from_spec(ref, spec=spec, **options)


POLICIES: dict[str, PolicyFactory] = {"hf": _hf, "openai": _openai, "langchain": _langchain}


def build_policy(spec: str = DEFAULT_POLICY, **options: Any) -> Policy:
    """Build a policy from its spec; ``options`` go to the backend (device, base_url, ...).

    Options a backend does not take are dropped only when their value is None, so a
    CLI can pass every flag through; anything else unexpected is an error.
    """
    scheme, ref = split_spec(spec, POLICIES, "policy")
    options = {k: v for k, v in options.items() if v is not None}
    return POLICIES[scheme](ref, spec, **options)


__all__ = [
    "DEFAULT_POLICY",
    "POLICIES",
    "Generation",
    "ImagePart",
    "Message",
    "Policy",
    "TextPart",
    "build_policy",
    "split_spec",
]
