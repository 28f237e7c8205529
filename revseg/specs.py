"""Backend spec strings (``scheme:ref``) and the options a backend factory takes: one rule for every kind."""

from __future__ import annotations

import inspect
from collections.abc import Callable, Collection
from typing import Any

from revseg.errors import SpecError


def split_spec(spec: str, known: Collection[str], kind: str) -> tuple[str, str]:
    """Split ``scheme:ref`` and check the scheme; raise SpecError naming the known schemes."""
    scheme, sep, ref = spec.partition(":")
    if not sep or not ref:
        raise SpecError(f"{kind} spec '{spec}' must look like SCHEME:REF, with SCHEME one of {', '.join(known)}")
    if scheme not in known:
        raise SpecError(f"unknown {kind} backend '{scheme}' in '{spec}'; known: {', '.join(known)}")
    return scheme, ref


def bind_options(
    factory: Callable[..., Any], options: dict[str, Any], spec: str, *, kind: str, passed_apart: Collection[str] = ()
) -> dict[str, Any]:
    """``options`` when ``factory`` takes each as a keyword-only parameter, else SpecError listing those it takes.

    ``spec`` and the names in ``passed_apart`` are not options a user sets. A factory with
    ``**options`` of its own (langchain's, which hands them to the provider) takes any.
    """
    params = inspect.signature(factory).parameters
    if any(p.kind is p.VAR_KEYWORD for p in params.values()):
        return options
    hidden = {"spec", *passed_apart}
    known = sorted(name for name, p in params.items() if p.kind is p.KEYWORD_ONLY and name not in hidden)
    unknown = sorted(set(options) - set(known))
    if unknown:
        raise SpecError(
            f"{kind} spec '{spec}': unknown option{'s' if len(unknown) > 1 else ''} {', '.join(unknown)} "
            f"(this backend takes: {', '.join(known) or 'none'})"
        )
    return options
