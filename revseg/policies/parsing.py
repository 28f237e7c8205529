"""Parsers for the chain's two answers: model text in, a typed result out, never an exception.

A model answer is data (STYLE.md 6): whatever a policy writes, these functions return a
frozen result with ``ok`` and, when not ok, a human-readable ``reason`` that goes into the
trajectory. They are lenient on syntax (real models write single-quoted pseudo-JSON, code
fences, prose around the answer, key variants, a missing close tag) and strict on validity
(an index out of range or an empty description fails the whole answer).

Each result also says whether the answer was ``strict``: written exactly in the format the
prompt asked for. The format reward (DESIGN.md 1.4) reads that flag, so a policy is paid
for the canonical format while the chain still runs on a sloppy one.

Text is decoded with ``json`` first and then ``ast.literal_eval`` (which evaluates
literals only, never code); nothing is ever ``eval``-ed.
"""

from __future__ import annotations

import ast
import json
import math
import re
import warnings
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

MAX_DESCRIPTION_CHARS = 1000
"""Descriptions longer than this are truncated: they are prompts for turn 2, not essays."""

MAX_OBJECTS = 64
"""More objects (or boxes) than this in one answer is degenerate output, not a multi-object query."""

MAX_COORDINATE = 1e6
"""Box coordinates beyond this magnitude are garbage under every convention we support."""

_MAX_SPANS = 64  # bracketed spans tried per answer: bounds the work on adversarial text
_SCAN_BUDGET = 200_000  # quote and bracket characters scanned per answer, over all spans
_MAX_LITERAL_CHARS = 50_000  # ast.literal_eval builds a syntax tree: keep it for answer-sized text
_MAX_SALVAGE_CHARS = 20_000  # regular-expression salvage reads only this much of the answer
_MISSING: Any = object()  # "nothing parsed", distinct from a parsed JSON null

_CANONICAL_FRAME_KEY = "frame_idx"
_CANONICAL_DESCRIPTION_KEY = "object description"
_CANONICAL_BOX_KEY = "bbox_2d"

# Key variants, compared after lower-casing and dropping spaces, "_" and "-"; first wins.
_FRAME_KEYS = ("frameidx", "frameindex", "keyframeidx", "keyframeindex", "keyframe", "frameid", "frame")
_DESCRIPTION_KEYS = ("objectdescription", "description", "objectdesc", "desc", "targetdescription", "object")
_BOX_KEYS = ("bbox2d", "bbox", "box2d", "box", "boundingbox")

# Whole answers that mean "the queried object is not in the video" (DESIGN.md 1.7).
_NO_TARGET_PHRASES = frozenset(
    {
        "none",
        "null",
        "nothing",
        "n/a",
        "no target",
        "no targets",
        "no target found",
        "no target object",
        "no object",
        "no objects",
        "no object found",
        "no such object",
        "no match",
        "no matching object",
        "not found",
        "target not found",
        "object not found",
        "not present",
        "target not present",
    }
)

_THINK_OPEN_RE = re.compile(r"<think>", re.I)
_THINK_CLOSE_RE = re.compile(r"</think>", re.I)
_ANSWER_OPEN_RE = re.compile(r"<answer>", re.I)
_ANSWER_CLOSE_RE = re.compile(r"</answer>", re.I)
_STRICT_LAYOUT_RE = re.compile(r"\s*<think>(.*?)</think>\s*<answer>(.*?)</answer>\s*", re.S)
_FENCE_RE = re.compile(r"```[A-Za-z0-9_+-]*[ \t]*\n?(.*?)(?:```|\Z)", re.S)
_WHOLE_FENCE_RE = re.compile(r"\s*```[A-Za-z0-9_+-]*[ \t]*\n?(.*?)```\s*", re.S)
_SCAN_RE = re.compile(r"[\[\]{}()\"'\\]")
_CLOSERS = {"[": "]", "{": "}", "(": ")"}
_INT_TEXT_RE = re.compile(r"[+-]?\d{1,12}")
_NO_TARGET_STRIP = " \t\r\n\"'`.,;:!?[](){}<>*_"

# Lenient salvage for turn-1 answers whose quoting is broken beyond json and literal_eval,
# e.g. {'frame_idx': 3, 'object description': 'the dog's tail'}.
_SALVAGE_FRAME_RE = re.compile(
    r"""(?:key[ _-]?)?frame(?:[ _-]?(?:idx|index|id))?\s*(?:["']\s*)?[:=]\s*(?:["']\s*)?([+-]?\d+(?:\.\d+)?)""",
    re.I,
)
_SALVAGE_DESCRIPTION_RE = re.compile(
    r"""(?:object[ _-]?)?desc(?:ription)?\s*(?:["']\s*)?[:=]\s*(["'])(.{0,2000}?)\1\s*(?=[,}\]]|\Z)""",
    re.I | re.S,
)


# --------------------------------------------------------------------------- results


@dataclass(frozen=True)
class KeyframeObject:
    """One object named by turn 1: a keyframe (index into the *sampled* frames) and its description."""

    sample_idx: int
    description: str

    def to_dict(self) -> dict[str, Any]:
        """JSON-serialisable form."""
        return {"sample_idx": self.sample_idx, "description": self.description}


@dataclass(frozen=True)
class KeyframeAnswer:
    """Turn 1, parsed.

    ``ok`` means the chain can go on: either ``objects`` is non-empty and every object is
    valid, or ``no_target`` is set (an empty list or an explicit "none"; ``objects`` is then
    empty). When not ok, ``objects`` is empty and ``reason`` says why. ``has_think`` and
    ``has_answer`` report the exact lower-case tag pairs; ``strict`` is true when the answer
    is exactly ``<think>...</think> <answer>[...]</answer>`` with nothing but whitespace
    around the blocks, and the answer block holds only (optionally inside one code fence)
    a JSON or Python-literal list (the prompt's own example is single-quoted) of objects
    with the canonical keys ``frame_idx`` (an int) and ``object description``, or ``[]``
    for no target. This is what the format reward pays for.
    """

    ok: bool
    objects: tuple[KeyframeObject, ...] = ()
    no_target: bool = False
    think: str | None = None
    has_think: bool = False
    has_answer: bool = False
    strict: bool = False
    reason: str | None = None

    def to_dict(self) -> dict[str, Any]:
        """JSON-serialisable form, stored as a turn's ``parsed`` field in the trajectory."""
        return {
            "ok": self.ok,
            "objects": [o.to_dict() for o in self.objects],
            "no_target": self.no_target,
            "think": self.think,
            "has_think": self.has_think,
            "has_answer": self.has_answer,
            "strict": self.strict,
            "reason": self.reason,
        }


@dataclass(frozen=True)
class RawBox:
    """A box exactly as the model wrote it (its own coordinate convention), plus its label if any."""

    coords: tuple[float, float, float, float]
    label: str | None = None

    def to_dict(self) -> dict[str, Any]:
        """JSON-serialisable form."""
        return {"coords": list(self.coords), "label": self.label}


@dataclass(frozen=True)
class BoxAnswer:
    """Turn 2, parsed.

    ``ok`` means at least one box and every box valid (four finite numbers of sane
    magnitude); corners are not reordered here, that is ``revseg.tools.boxes.rescale_box``'s
    job. ``strict`` is true when the whole answer (optionally inside one code fence and/or
    one ``<answer>`` block, after an optional think block) is a JSON or Python-literal list
    of ``{"bbox_2d": [x1, y1, x2, y2]}`` objects, Qwen-VL's own grounding format.
    """

    ok: bool
    boxes: tuple[RawBox, ...] = ()
    strict: bool = False
    reason: str | None = None

    @property
    def first(self) -> RawBox | None:
        """The box to use when the caller wants one: the first the model wrote."""
        return self.boxes[0] if self.boxes else None

    def to_dict(self) -> dict[str, Any]:
        """JSON-serialisable form, stored as a turn's ``parsed`` field in the trajectory."""
        return {
            "ok": self.ok,
            "boxes": [b.to_dict() for b in self.boxes],
            "strict": self.strict,
            "reason": self.reason,
        }


# --------------------------------------------------------------------------- turn 1


def parse_keyframe_answer(text: str, num_frames: int) -> KeyframeAnswer:
    """Parse turn 1's answer: which sampled frame shows each target, and how it looks.

    ``num_frames`` is the number of sampled frames the model saw; indices must fall in
    ``0 .. num_frames - 1``. Never raises on model text; raises ValueError only when
    ``num_frames`` itself is not positive (a caller bug).
    """
    if num_frames < 1:
        raise ValueError(f"num_frames must be at least 1, got {num_frames}")
    if not isinstance(text, str):
        return KeyframeAnswer(ok=False, reason=f"answer is not text (got {type(text).__name__})")

    think_span = _find_think(text)
    has_think = "<think>" in text and "</think>" in text[text.index("<think>") :]
    has_answer = "<answer>" in text and "</answer>" in text[text.index("<answer>") :]
    think = text[think_span[0] : think_span[1]].strip() if think_span and has_think else None

    def answer(**fields: Any) -> KeyframeAnswer:
        return KeyframeAnswer(think=think, has_think=has_think, has_answer=has_answer, **fields)

    body, tagged = _answer_body(text, think_span)
    if _is_no_target_text(body):
        return answer(ok=True, no_target=True)

    value, direct = _find_value(body, _looks_like_keyframes)
    if value is _MISSING:
        value = _salvage_keyframes(body)
        direct = False
    if value is _MISSING:
        where = "the <answer> block holds no JSON" if tagged else "no <answer> block and no JSON found"
        return answer(ok=False, reason=where)

    objects, no_target, canonical, reason = _validate_keyframes(value, num_frames)
    if reason is not None:
        return answer(ok=False, reason=reason)
    strict = canonical and direct and _strict_layout(text)
    return answer(ok=True, objects=objects, no_target=no_target, strict=strict)


def _strict_layout(text: str) -> bool:
    """Exactly one think block then one answer block, nothing but whitespace around them."""
    if text.count("<think>") != 1 or text.count("</think>") != 1:
        return False
    if text.count("<answer>") != 1 or text.count("</answer>") != 1:
        return False
    return _STRICT_LAYOUT_RE.fullmatch(text) is not None


def _looks_like_keyframes(value: Any) -> bool:
    """Shape test used to skip unrelated brackets in prose (e.g. "frames [3, 5, 7]", "{'note': 1}")."""
    if isinstance(value, dict):
        return _pick(value, _CANONICAL_FRAME_KEY, _FRAME_KEYS)[0] is not None
    return (
        isinstance(value, list | tuple)
        and len(value) > 0  # a stray "[]" in prose must not outrank a real answer after it
        and all(isinstance(v, dict) and _looks_like_keyframes(v) for v in value)
    )


def _validate_keyframes(value: Any, num_frames: int) -> tuple[tuple[KeyframeObject, ...], bool, bool, str | None]:
    """(objects, no_target, canonical, reason) for a decoded answer value."""
    if value is None or (isinstance(value, str) and _is_no_target_text(value)):
        return (), True, False, None
    if isinstance(value, dict):
        items, canonical = [value], False
    elif isinstance(value, list) or (isinstance(value, tuple) and value):
        items, canonical = list(value), isinstance(value, list)
    else:
        return (), False, False, f"answer is {_kind(value)}, expected a list of objects with frame_idx"
    if not items:  # "[]": the model says the target is not in the video
        return (), True, canonical, None
    if len(items) > MAX_OBJECTS:
        return (), False, False, f"too many objects ({len(items)} > {MAX_OBJECTS})"

    objects = []
    for i, item in enumerate(items):
        prefix = f"object {i}: " if len(items) > 1 else ""
        obj, item_canonical, reason = _keyframe_object(item, num_frames)
        if reason is not None:
            return (), False, False, prefix + reason
        assert obj is not None
        objects.append(obj)
        canonical = canonical and item_canonical
    return tuple(objects), False, canonical, None


def _keyframe_object(item: Any, num_frames: int) -> tuple[KeyframeObject | None, bool, str | None]:
    """(object, canonical, reason) for one entry of the answer list."""
    if not isinstance(item, dict):
        return None, False, f"expected an object with frame_idx and object description, got {_kind(item)}"
    frame_key, raw_idx = _pick(item, _CANONICAL_FRAME_KEY, _FRAME_KEYS)
    if frame_key is None:
        return None, False, "no frame_idx"
    desc_key, raw_desc = _pick(item, _CANONICAL_DESCRIPTION_KEY, _DESCRIPTION_KEYS)
    if desc_key is None:
        return None, False, "no object description"

    idx, reason = _coerce_index(raw_idx)
    if reason is not None:
        return None, False, reason
    assert idx is not None
    if not 0 <= idx < num_frames:
        return None, False, f"frame_idx {idx} out of range 0-{num_frames - 1}"
    if not isinstance(raw_desc, str):
        return None, False, f"object description must be a string, got {_kind(raw_desc)}"
    description = raw_desc.strip()[:MAX_DESCRIPTION_CHARS].strip()
    if not description:
        return None, False, "object description is empty"

    canonical = frame_key == _CANONICAL_FRAME_KEY and desc_key == _CANONICAL_DESCRIPTION_KEY and type(raw_idx) is int
    return KeyframeObject(sample_idx=idx, description=description), canonical, None


def _coerce_index(raw: Any) -> tuple[int | None, str | None]:
    """An integer frame index from an int, an integral float or a digit string; else a reason."""
    if isinstance(raw, bool):
        return None, f"frame_idx must be an integer, got {raw}"
    if isinstance(raw, int):
        return raw, None
    if isinstance(raw, float):
        if math.isfinite(raw) and raw.is_integer():
            return int(raw), None
        return None, f"frame_idx must be an integer, got {raw}"
    if isinstance(raw, str) and _INT_TEXT_RE.fullmatch(raw.strip()):
        return int(raw.strip()), None
    return None, f"frame_idx must be an integer, got {_short(raw)}"


def _salvage_keyframes(body: str) -> Any:
    """Objects recovered with regular expressions when the quoting is too broken to decode.

    The body is cut at each ``{`` so that each object's keys are read together. Returns
    a list of dicts in the canonical shape (validated like any other answer), or _MISSING.
    """
    body = body[:_MAX_SALVAGE_CHARS]
    chunks = body.split("{")[1:] if "{" in body else [body]
    found = []
    for chunk in chunks[: MAX_OBJECTS + 1]:
        frame = _SALVAGE_FRAME_RE.search(chunk)
        desc = _SALVAGE_DESCRIPTION_RE.search(chunk)
        if frame is None or desc is None:
            continue
        found.append({_CANONICAL_FRAME_KEY: frame.group(1), _CANONICAL_DESCRIPTION_KEY: desc.group(2)})
    return found if found else _MISSING


# --------------------------------------------------------------------------- turn 2


def parse_box_answer(text: str) -> BoxAnswer:
    """Parse turn 2's answer: one or more boxes in the model's own coordinates.

    Accepts Qwen-VL's ``[{"bbox_2d": [x1, y1, x2, y2], "label": "..."}]`` and its common
    variants (a single dict, key ``bbox``, a bare ``[x1, y1, x2, y2]``, a list of bare
    lists, code fences, prose, ``<answer>`` tags, single quotes). Never raises.
    """
    if not isinstance(text, str):
        return BoxAnswer(ok=False, reason=f"answer is not text (got {type(text).__name__})")
    body, tagged = _answer_body(text, _find_think(text))
    value, direct = _find_value(body, _looks_like_boxes)
    if value is _MISSING:
        where = "the <answer> block holds no box" if tagged else "no box found in the answer"
        return BoxAnswer(ok=False, reason=where)

    boxes, canonical, reason = _validate_boxes(value)
    if reason is not None:
        return BoxAnswer(ok=False, reason=reason)
    strict = canonical and direct and _strict_box_layout(text)
    return BoxAnswer(ok=True, boxes=boxes, strict=strict)


def _strict_box_layout(text: str) -> bool:
    """No tags at all, or exactly one <answer> block with only whitespace (and a think block) around it."""
    span = _find_think(text) if text.count("<think>") == 1 else None
    rest = text[: span[2]] + text[span[3] :] if span else text
    opens, closes = rest.count("<answer>"), rest.count("</answer>")
    if opens == closes == 0:
        return True  # the value was decoded from the whole remaining text, so nothing else is there
    if opens != 1 or closes != 1:
        return False
    return re.fullmatch(r"\s*<answer>.*</answer>\s*", rest, re.S) is not None


def _is_number(x: Any) -> bool:
    return isinstance(x, int | float) and not isinstance(x, bool)


def _is_bare_box(value: Any) -> bool:
    return isinstance(value, list | tuple) and len(value) == 4 and all(_is_number(v) for v in value)


def _looks_like_boxes(value: Any) -> bool:
    """Shape test used to skip unrelated brackets in prose (e.g. "(see above)", "{'note': 1}")."""
    if isinstance(value, dict):
        return _pick(value, _CANONICAL_BOX_KEY, _BOX_KEYS)[0] is not None
    if _is_bare_box(value):
        return True
    return (
        isinstance(value, list | tuple)
        and len(value) > 0
        and all(_is_bare_box(v) or (isinstance(v, dict) and _looks_like_boxes(v)) for v in value)
    )


def _validate_boxes(value: Any) -> tuple[tuple[RawBox, ...], bool, str | None]:
    """(boxes, canonical, reason) for a decoded answer value."""
    if isinstance(value, dict) or _is_bare_box(value):
        items, canonical = [value], False
    elif isinstance(value, list | tuple):
        items, canonical = list(value), isinstance(value, list)
    else:
        return (), False, f"answer is {_kind(value)}, expected a box [x1, y1, x2, y2]"
    if not items:
        return (), False, "the answer holds no box"
    if len(items) > MAX_OBJECTS:
        return (), False, f"too many boxes ({len(items)} > {MAX_OBJECTS})"

    boxes = []
    for i, item in enumerate(items):
        prefix = f"box {i}: " if len(items) > 1 else ""
        label: str | None = None
        if isinstance(item, dict):
            key, coords = _pick(item, _CANONICAL_BOX_KEY, _BOX_KEYS)
            if key is None:
                return (), False, prefix + "no bbox_2d"
            canonical = canonical and key == _CANONICAL_BOX_KEY
            raw_label = item.get("label")
            if isinstance(raw_label, str) and raw_label.strip():
                label = raw_label.strip()[:MAX_DESCRIPTION_CHARS]
        else:
            coords, canonical = item, False
        numbers, reason = _coerce_coords(coords)
        if reason is not None:
            return (), False, prefix + reason
        assert numbers is not None
        boxes.append(RawBox(coords=numbers, label=label))
    return tuple(boxes), canonical, None


def _coerce_coords(coords: Any) -> tuple[tuple[float, float, float, float] | None, str | None]:
    """Four finite, sane numbers, or the reason they are not."""
    if not isinstance(coords, list | tuple):
        return None, f"box must be a list of 4 numbers, got {_kind(coords)}"
    if len(coords) != 4:
        return None, f"box must have 4 coordinates, got {len(coords)}"
    out = []
    for j, c in enumerate(coords):
        if not _is_number(c):
            return None, f"coordinate {j} is not a number ({_short(c)})"
        try:
            f = float(c)
        except OverflowError:  # an int too large for a float
            return None, f"coordinate {j} is absurdly large"
        if not math.isfinite(f):
            return None, f"coordinate {j} is not finite ({f})"
        if abs(f) > MAX_COORDINATE:
            return None, f"coordinate {j} is absurdly large ({f:.3g})"
        out.append(f)
    return (out[0], out[1], out[2], out[3]), None


# --------------------------------------------------------------------------- shared


def _find_think(text: str) -> tuple[int, int, int, int] | None:
    """(content start, content end, block start, block end) of the first closed think block, or None.

    Two linear searches rather than one ``<think>(.*?)</think>`` regex, which is quadratic
    on text holding many unclosed ``<think>`` tags.
    """
    opened = _THINK_OPEN_RE.search(text)
    if opened is None:
        return None
    closed = _THINK_CLOSE_RE.search(text, opened.end())
    if closed is None:
        return None
    return opened.end(), closed.start(), opened.start(), closed.end()


def _answer_body(text: str, think: tuple[int, int, int, int] | None) -> tuple[str, bool]:
    """The text that should hold the answer, and whether an <answer> tag delimited it.

    Inside ``<answer>...</answer>`` when present (to the end of the text when the close tag
    is missing); otherwise the whole text without its think block.
    """
    search_from = think[3] if think else 0
    opened = _ANSWER_OPEN_RE.search(text, search_from)
    if opened is None and think is not None:
        opened = _ANSWER_OPEN_RE.search(text)  # an answer written before (or inside) the think block
    if opened is not None:
        closed = _ANSWER_CLOSE_RE.search(text, opened.end())
        return text[opened.end() : closed.start() if closed else len(text)], True
    if think is not None:
        return text[: think[2]] + "\n" + text[think[3] :], False
    return text, False


def _find_value(body: str, looks_right: Callable[[Any], bool]) -> tuple[Any, bool]:
    """Decode the answer value from ``body``: (value or _MISSING, decoded from the whole body).

    Tries, in order: the whole body; the first code fence; then every top-level bracketed
    span, keeping the first value whose shape ``looks_right`` (later dicts are gathered into
    a list with it, for answers written as several bare objects). A span that decodes but
    has the wrong shape is used only when nothing better is found, so its reason is reported.
    """
    stripped = body.strip()
    value = _decode(stripped)
    if value is not _MISSING:
        return value, True
    whole_fence = _WHOLE_FENCE_RE.fullmatch(body)
    if whole_fence is not None:
        value = _decode(whole_fence.group(1))
        if value is not _MISSING:
            return value, True
    fence = _FENCE_RE.search(body)
    if fence is not None:
        value = _decode(fence.group(1))
        if value is not _MISSING and looks_right(value):
            return value, False

    first_any: Any = _MISSING
    chosen: Any = _MISSING
    siblings: list[Any] = []
    for span in _top_level_spans(body):
        value = _decode(span)
        if value is _MISSING:
            continue
        if first_any is _MISSING:
            first_any = value
        if chosen is _MISSING:
            if looks_right(value):
                chosen = value
        elif isinstance(chosen, dict) and isinstance(value, dict) and looks_right(value):
            siblings.append(value)
    if chosen is not _MISSING:
        return ([chosen, *siblings] if siblings else chosen), False
    return first_any, False


def _decode(s: str) -> Any:
    """JSON, else a Python literal (single quotes, tuples, trailing commas), else _MISSING."""
    s = s.strip()
    if not s:
        return _MISSING
    try:
        return json.loads(s)
    except (ValueError, RecursionError):
        pass
    if len(s) > _MAX_LITERAL_CHARS:
        return _MISSING
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # invalid escape sequences in model text
            return ast.literal_eval(s)
    except (ValueError, TypeError, SyntaxError, MemoryError, RecursionError):
        return _MISSING


def _top_level_spans(text: str) -> Iterator[str]:
    """Balanced ``[...]``, ``{...}`` and ``(...)`` spans, outermost first.

    Quotes are honoured so that brackets inside strings do not count. An opener that never
    closes (truncated output) is skipped and scanning resumes just after it, so complete
    spans inside it are still found. At most _MAX_SPANS openers and _SCAN_BUDGET scanned
    characters in all, so adversarial text costs bounded time.
    """
    pos, budget = 0, [_SCAN_BUDGET]
    for _ in range(_MAX_SPANS):
        start = _next_opener(text, pos)
        if start < 0 or budget[0] <= 0:
            return
        end = _span_end(text, start, budget)
        if end is None:
            pos = start + 1
            continue
        yield text[start:end]
        pos = end


def _next_opener(text: str, pos: int) -> int:
    found = [i for i in (text.find(c, pos) for c in "[{(") if i >= 0]
    return min(found) if found else -1


def _span_end(text: str, start: int, budget: list[int]) -> int | None:
    """Index just past the bracket that closes the one at ``start``, or None; spends ``budget[0]``."""
    stack: list[str] = []
    quote: str | None = None
    skip_until = -1
    for m in _SCAN_RE.finditer(text, start):
        budget[0] -= 1
        if budget[0] <= 0:
            return None
        i, c = m.start(), m.group()
        if i < skip_until:
            continue
        if quote is not None:
            if c == "\\":
                skip_until = i + 2
            elif c == quote:
                quote = None
        elif c in "\"'":
            quote = c
        elif c in _CLOSERS:
            stack.append(_CLOSERS[c])
        elif c in ")]}":
            if not stack or c != stack[-1]:
                return None
            stack.pop()
            if not stack:
                return i + 1
    return None


def _pick(item: dict[Any, Any], canonical: str, aliases: tuple[str, ...]) -> tuple[str | None, Any]:
    """(key, value) for the canonical key, else the first alias present; (None, None) if none is."""
    if canonical in item:
        return canonical, item[canonical]
    normalised: dict[str, Any] = {}
    for key in item:
        norm = re.sub(r"[\s_\-]+", "", str(key).lower())
        normalised.setdefault(norm, key)
    for alias in aliases:
        if alias in normalised:
            key = normalised[alias]
            return str(key), item[key]
    return None, None


def _is_no_target_text(text: str) -> bool:
    """True when the whole answer is an explicit "none" / "no target" (DESIGN.md 1.7)."""
    if len(text) > 200:
        return False
    fence = _FENCE_RE.search(text)
    core = fence.group(1) if fence else text
    core = " ".join(core.strip(_NO_TARGET_STRIP).lower().split())
    return core in _NO_TARGET_PHRASES


def _kind(value: Any) -> str:
    """A short description of a value for reasons: its type, and the value when it is small."""
    if value is None:
        return "null"
    if isinstance(value, str | int | float):
        return f"{type(value).__name__} {_short(value)}"
    return type(value).__name__


def _short(value: Any, limit: int = 40) -> str:
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."
