"""Parsers for the ``look_again`` program's answers: a keyframe or a zoom, and a verify verdict.

Same contract as :mod:`revseg.policies.parsing` (STYLE.md 6): model text in, a frozen
result out, never an exception; lenient on syntax, strict on validity; ``strict`` says
the answer was written exactly as the prompt asked, for the format reward.

The actions, as the prompts of ``revseg-look-again-v1`` ask for them inside ``<answer>``:

- a keyframe answer, exactly the paper's turn-1 list ``[{'frame_idx': k, 'object description': '...'}]``
  (``[]`` for no target); after a rejection the rejected indices are refused;
- ``{'action': 'zoom', 'first': i, 'last': j}``: new frames between frames ``i < j`` of the
  last view. Also read: keys ``start``/``end``, ``from``/``to``, a ``window: [i, j]`` pair,
  ``tool``/``name`` for ``action``, and call syntax ``zoom(3, 6)`` or ``zoom(first=3, last=6)``;
- ``{'verdict': 'accept'}`` or ``{'verdict': 'reject', 'reason': '...'}``. Also read: keys
  ``decision``/``answer``/``result``, values ``accepted``/``yes``/``correct``/``true`` and
  ``rejected``/``no``/``wrong``/``false``, and a bare ``accept`` or ``reject: why`` as the answer.

Each parser also takes the decoded arguments of a native tool call (:func:`look_action_from_call`,
:func:`verdict_from_call`), so an API that answers through ``tools=`` yields the same parsed form.
"""

from __future__ import annotations

import json
import re
from collections.abc import Collection, Mapping
from dataclasses import dataclass
from typing import Any, Literal

from revseg.policies.parsing import (
    _MISSING,
    MAX_DESCRIPTION_CHARS,
    KeyframeAnswer,
    KeyframeObject,
    _answer_body,
    _coerce_index,
    _find_think,
    _find_value,
    _kind,
    _pick,
    _strict_layout,
    parse_keyframe_answer,
)

ZOOM = "zoom"
ACCEPT = "accept"
REJECT = "reject"

_ACTION_KEYS = ("action", "tool", "name", "function", "type")
_FIRST_KEYS = ("first", "start", "from", "firstidx", "startidx", "begin")
_LAST_KEYS = ("last", "end", "to", "lastidx", "endidx", "stop")
_WINDOW_KEYS = ("window", "range", "frames", "span")
_VERDICT_KEYS = ("verdict", "decision", "answer", "result", "judgement", "judgment")
_WHY_KEYS = ("reason", "why", "explanation", "comment")
_ACCEPT_WORDS = frozenset({"accept", "accepted", "yes", "correct", "right", "true", "ok", "approve", "approved"})
_REJECT_WORDS = frozenset({"reject", "rejected", "no", "wrong", "incorrect", "false", "deny", "denied"})
_CALL_RE = re.compile(r"\bzoom\s*\(\s*(?:first\s*=\s*)?([+-]?\d+)\s*,\s*(?:last\s*=\s*)?([+-]?\d+)\s*\)", re.I)
_BARE_VERDICT_RE = re.compile(r"^\W*(accept(?:ed)?|reject(?:ed)?)\b\W*(.*)$", re.I | re.S)


# --------------------------------------------------------------------------- results


@dataclass(frozen=True)
class LookAnswer:
    """A keyframe-or-zoom answer (turn 1, a zoom turn, or a re-select), parsed.

    ``action`` is ``"select"`` (``objects`` or ``no_target``, as in
    :class:`~revseg.policies.parsing.KeyframeAnswer`) or ``"zoom"`` (``window``: first and
    last index into the view the model answered about, ``first < last``). When not ``ok``,
    ``action`` is None and ``reason`` says why.
    """

    ok: bool
    action: Literal["select", "zoom"] | None = None
    objects: tuple[KeyframeObject, ...] = ()
    no_target: bool = False
    window: tuple[int, int] | None = None
    think: str | None = None
    has_think: bool = False
    has_answer: bool = False
    strict: bool = False
    reason: str | None = None

    def to_dict(self) -> dict[str, Any]:
        """JSON-serialisable form, stored as a turn's ``parsed`` field in the trajectory."""
        return {
            "ok": self.ok,
            "action": self.action,
            "objects": [o.to_dict() for o in self.objects],
            "no_target": self.no_target,
            "window": None if self.window is None else list(self.window),
            "think": self.think,
            "has_think": self.has_think,
            "has_answer": self.has_answer,
            "strict": self.strict,
            "reason": self.reason,
        }


@dataclass(frozen=True)
class Verdict:
    """A verify answer, parsed: ``accept`` True or False when ``ok``; ``why`` is the model's stated reason."""

    ok: bool
    accept: bool | None = None
    why: str | None = None
    think: str | None = None
    strict: bool = False
    reason: str | None = None

    @property
    def name(self) -> str | None:
        """``"accept"``, ``"reject"``, or None when the answer did not parse."""
        return None if self.accept is None else (ACCEPT if self.accept else REJECT)

    def to_dict(self) -> dict[str, Any]:
        """JSON-serialisable form, stored as a turn's ``parsed`` field in the trajectory."""
        return {
            "ok": self.ok,
            "verdict": self.name,
            "why": self.why,
            "think": self.think,
            "strict": self.strict,
            "reason": self.reason,
        }


# --------------------------------------------------------------------------- keyframe or zoom


def parse_look_answer(text: str, num_frames: int, excluded: Collection[int] = ()) -> LookAnswer:
    """Parse an answer that either names keyframes or asks to zoom, over a view of ``num_frames`` frames.

    ``excluded`` are view indices already rejected by verify: naming one fails the answer.
    Never raises on model text; ValueError only for a non-positive ``num_frames``.
    """
    if num_frames < 1:
        raise ValueError(f"num_frames must be at least 1, got {num_frames}")
    if not isinstance(text, str):
        return LookAnswer(ok=False, reason=f"answer is not text (got {type(text).__name__})")
    think_span = _find_think(text)
    body, _ = _answer_body(text, think_span)
    value, direct = _find_value(body, _looks_like_zoom)
    if value is not _MISSING and _looks_like_zoom(value):
        header = _header(text)
        canonical = _zoom_canonical(value)
        window, reason = _zoom_window(value, num_frames)
        if reason is not None:
            return LookAnswer(ok=False, reason=reason, **header)
        strict = canonical and direct and _strict_layout(text)
        return LookAnswer(ok=True, action="zoom", window=window, strict=strict, **header)
    call = _CALL_RE.search(body)
    if call is not None and not _has_keyframes(body, num_frames):
        window, reason = _zoom_window({"first": int(call.group(1)), "last": int(call.group(2))}, num_frames)
        if reason is not None:
            return LookAnswer(ok=False, reason=reason, **_header(text))
        return LookAnswer(ok=True, action="zoom", window=window, **_header(text))
    return from_keyframe_answer(parse_keyframe_answer(text, num_frames), excluded)


def from_keyframe_answer(answer: KeyframeAnswer, excluded: Collection[int] = ()) -> LookAnswer:
    """A keyframe answer as a :class:`LookAnswer`, failing it when it names an ``excluded`` frame."""
    fields: dict[str, Any] = {
        "think": answer.think,
        "has_think": answer.has_think,
        "has_answer": answer.has_answer,
    }
    if not answer.ok:
        return LookAnswer(ok=False, reason=answer.reason, **fields)
    refused = [o.sample_idx for o in answer.objects if o.sample_idx in set(excluded)]
    if refused:
        return LookAnswer(
            ok=False,
            reason=f"frame_idx {refused[0]} was rejected by verify; a different keyframe is needed",
            **fields,
        )
    return LookAnswer(
        ok=True, action="select", objects=answer.objects, no_target=answer.no_target, strict=answer.strict, **fields
    )


def look_action_from_call(
    name: str, arguments: Mapping[str, Any], num_frames: int, excluded: Collection[int] = ()
) -> LookAnswer:
    """A native tool call (``zoom`` or ``select_keyframe``) as a :class:`LookAnswer`; strict when well-formed."""
    if name == ZOOM:
        window, reason = _zoom_window(dict(arguments), num_frames)
        if reason is not None:
            return LookAnswer(ok=False, reason=reason)
        return LookAnswer(ok=True, action="zoom", window=window, strict=set(arguments) == {"first", "last"})
    if name == "select_keyframe":
        objects = arguments.get("objects", [arguments])
        text = f"<think>tool call</think> <answer>{json.dumps(objects)}</answer>"
        return from_keyframe_answer(parse_keyframe_answer(text, num_frames), excluded)
    return LookAnswer(ok=False, reason=f"unknown tool {name!r}; expected zoom or select_keyframe")


def _header(text: str) -> dict[str, Any]:
    span = _find_think(text)
    has_think = "<think>" in text and "</think>" in text[text.index("<think>") :]
    has_answer = "<answer>" in text and "</answer>" in text[text.index("<answer>") :]
    think = text[span[0] : span[1]].strip() if span and has_think else None
    return {"think": think, "has_think": has_think, "has_answer": has_answer}


def _looks_like_zoom(value: Any) -> bool:
    if not isinstance(value, dict):
        return False
    key, action = _pick(value, "action", _ACTION_KEYS)
    return key is not None and isinstance(action, str) and action.strip().lower() == ZOOM


def _zoom_canonical(value: dict[str, Any]) -> bool:
    return set(value) == {"action", "first", "last"} and all(type(value[k]) is int for k in ("first", "last"))


def _zoom_window(value: dict[str, Any], num_frames: int) -> tuple[tuple[int, int] | None, str | None]:
    """((first, last), None) for a valid window of the view, else (None, reason)."""
    first_key, first = _pick(value, "first", _FIRST_KEYS)
    last_key, last = _pick(value, "last", _LAST_KEYS)
    if first_key is None or last_key is None:
        window_key, window = _pick(value, "window", _WINDOW_KEYS)
        if window_key is None or not isinstance(window, list | tuple) or len(window) != 2:
            return None, "zoom needs 'first' and 'last' frame indices"
        first, last = window
    lo, reason = _coerce_index(first)
    if reason is not None:
        return None, "zoom first: " + reason.replace("frame_idx ", "")
    hi, reason = _coerce_index(last)
    if reason is not None:
        return None, "zoom last: " + reason.replace("frame_idx ", "")
    assert lo is not None and hi is not None
    for index in (lo, hi):
        if not 0 <= index < num_frames:
            return None, f"zoom index {index} out of range 0-{num_frames - 1}"
    if lo >= hi:
        return None, f"zoom window {lo}-{hi} is empty; first must be less than last"
    return (lo, hi), None


def _has_keyframes(body: str, num_frames: int) -> bool:
    """Whether the body also holds a valid keyframe answer (a mention of zoom(...) in prose does not win)."""
    return parse_keyframe_answer(f"<answer>{body}</answer>", num_frames).ok


# --------------------------------------------------------------------------- verify


def parse_verdict(text: str) -> Verdict:
    """Parse verify's answer: accept, or reject with a reason. Never raises."""
    if not isinstance(text, str):
        return Verdict(ok=False, reason=f"answer is not text (got {type(text).__name__})")
    span = _find_think(text)
    think = text[span[0] : span[1]].strip() if span else None
    body, tagged = _answer_body(text, span)
    value, direct = _find_value(body, _looks_like_verdict)
    if value is not _MISSING and _looks_like_verdict(value):
        verdict = _verdict_value(value)
        if not verdict.ok:
            return Verdict(ok=False, think=think, reason=verdict.reason)
        canonical = _verdict_canonical(value)
        strict = canonical and direct and _strict_layout(text)
        return Verdict(ok=True, accept=verdict.accept, why=verdict.why, think=think, strict=strict)
    bare = _BARE_VERDICT_RE.match(body.strip()) if len(body) < 2000 else None
    if bare is not None:
        accept = bare.group(1).lower().startswith(ACCEPT)
        why = bare.group(2).strip(" \t\r\n.:-\"'") or None
        return Verdict(ok=True, accept=accept, why=None if accept else _cut(why), think=think)
    where = "the <answer> block holds no verdict" if tagged else "no verdict (accept or reject) found"
    return Verdict(ok=False, think=think, reason=where)


def verdict_from_call(arguments: Mapping[str, Any]) -> Verdict:
    """A native ``verify`` tool call's arguments as a :class:`Verdict`; strict when well-formed."""
    verdict = _verdict_value(dict(arguments))
    if not verdict.ok:
        return verdict
    return Verdict(ok=True, accept=verdict.accept, why=verdict.why, strict=_verdict_canonical(dict(arguments)))


def _looks_like_verdict(value: Any) -> bool:
    if isinstance(value, list) and len(value) == 1:
        value = value[0]
    return isinstance(value, dict) and _pick(value, "verdict", _VERDICT_KEYS)[0] is not None


def _verdict_canonical(value: Any) -> bool:
    if not isinstance(value, dict) or set(value) - {"verdict", "reason"} or "verdict" not in value:
        return False
    return value["verdict"] in (ACCEPT, REJECT)


def _verdict_value(value: Any) -> Verdict:
    if isinstance(value, list) and len(value) == 1:
        value = value[0]
    _, raw = _pick(value, "verdict", _VERDICT_KEYS)
    word = str(raw).strip().lower() if isinstance(raw, str | bool) else None
    if word in _ACCEPT_WORDS:
        accept = True
    elif word in _REJECT_WORDS:
        accept = False
    else:
        return Verdict(ok=False, reason=f"verdict is {_kind(raw)}, expected 'accept' or 'reject'")
    _, why = _pick(value, "reason", _WHY_KEYS)
    text = why.strip() if isinstance(why, str) else None
    return Verdict(ok=True, accept=accept, why=_cut(text) if text else None)


def _cut(text: str | None) -> str | None:
    return None if text is None else text[:MAX_DESCRIPTION_CHARS]
