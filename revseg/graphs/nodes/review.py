"""Nodes ``review_keyframe`` and ``review_box``: a person accepts or corrects the model's choice.

Only in graphs built with ``build_graph(review=True)`` (and a checkpointer). Each node
pauses the run with LangGraph's ``interrupt()``, showing the proposal; the run goes on
when it is resumed with ``Command(resume=DECISION)``:

- ``True`` (or ``{}`` through ``ReVSegAgent.resume``) accepts the proposal; LangGraph reads
  ``Command(resume={})`` as "no resume values", so send ``True`` to a bare graph;
- ``{"frame_index": k}`` at the keyframe review moves the first target's keyframe to
  original frame ``k`` before turn 2 boxes it;
- ``{"box": [x1, y1, x2, y2]}`` at the box review replaces the first target's box (original
  pixels), optionally with ``"frame_index"`` when the box is drawn on another frame;
- ``"target": i`` picks another target; a list of such decisions corrects several.

A decision that does not apply (a frame outside the video, a box with no area) pauses
again with the reason in the request's ``error``. ``interrupt()`` re-runs its node from
the start on resume, so these nodes do nothing else: no model call or decoding is
repeated. Every decision is kept in ``reviews``, so a trajectory tells human corrections
apart from the policy's own answers.
"""

from __future__ import annotations

import math
import numbers
from collections.abc import Mapping
from typing import Any, Literal

from langgraph.runtime import Runtime
from langgraph.types import interrupt

from revseg.errors import InputError
from revseg.graphs.state import ChainContext, ChainState, video_ref
from revseg.tools.boxes import clip_box, is_degenerate
from revseg.trajectory import VideoRef

Stage = Literal["keyframe", "box"]
_KEYS: dict[Stage, frozenset[str]] = {
    "keyframe": frozenset({"target", "frame_index"}),
    "box": frozenset({"target", "frame_index", "box"}),
}


async def review_keyframe(state: ChainState, runtime: Runtime[ChainContext]) -> dict[str, Any]:
    """Pause after select_frames; accept or move each target's keyframe before turn 2."""
    return _review("keyframe", state)


async def review_box(state: ChainState, runtime: Runtime[ChainContext]) -> dict[str, Any]:
    """Pause after ground; accept or replace each target's box before the tracker runs."""
    return _review("box", state)


def review_request(stage: Stage, state: Mapping[str, Any]) -> dict[str, Any]:
    """What the person is shown: the query, the video and the proposed targets (JSON values)."""
    video = state["video"]
    return {
        "stage": stage,
        "query": state["query"],
        "video_path": state["video_path"],
        "num_frames": video["num_frames"],
        "frame_size": [video["width"], video["height"]],
        "sampled_indices": list(state["sampled_indices"]),
        "targets": [
            {k: t.get(k) for k in ("description", "sample_idx", "frame_index", "box", "label")}
            for t in state["targets"]
        ],
        "resume_with": (
            "true to accept, or {'frame_index': K}"
            if stage == "keyframe"
            else "true to accept, or {'box': [x1, y1, x2, y2]} in original pixels"
        ),
    }


def apply_decision(
    stage: Stage, state: Mapping[str, Any], decision: Any
) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    """Targets after ``decision``, and the review record; InputError names what is wrong with it."""
    targets = [dict(t) for t in state["targets"]]
    items = _decision_items(stage, decision)
    video = video_ref(state)
    changes = []
    for item in items:
        number = item.get("target", 0)
        if not isinstance(number, int) or not 0 <= number < len(targets):
            raise InputError(f"review decision names target {number!r}; this run has {len(targets)} target(s)")
        target = targets[number]
        before = {k: target.get(k) for k in ("frame_index", "box")}
        if "frame_index" in item:
            target["frame_index"] = _frame_index(item["frame_index"], video)
        if "box" in item:
            target["box"] = list(_box(item["box"], video))
        elif stage == "box" and "frame_index" in item:
            raise InputError("a new frame_index at the box review needs the box drawn on that frame ('box')")
        changes.append({"target": number, "before": before, "after": {k: target.get(k) for k in before}})
    record = {"stage": stage, "accepted": not changes, "changes": changes}
    return targets, record


def _review(stage: Stage, state: ChainState) -> dict[str, Any]:
    request = review_request(stage, state)
    while True:  # a decision that does not apply asks again, saying why (LangGraph's validation pattern)
        decision = interrupt(request)
        try:
            targets, record = apply_decision(stage, state, decision)
        except InputError as exc:
            request = {**request, "error": str(exc)}
            continue
        return {"targets": targets, "reviews": [*state.get("reviews", []), record]}


def _decision_items(stage: Stage, decision: Any) -> list[dict[str, Any]]:
    if decision is None or decision is True or decision == {}:
        return []
    items = decision if isinstance(decision, list) else [decision]
    for item in items:
        if not isinstance(item, dict):
            raise InputError(f"review decision must be a dict (or a list of dicts), got {type(item).__name__}")
        unknown = set(item) - _KEYS[stage]
        if unknown:
            raise InputError(
                f"review decision at the {stage} review has unknown key(s) {', '.join(sorted(unknown))}; "
                f"allowed: {', '.join(sorted(_KEYS[stage]))}"
            )
    return [item for item in items if item]


def _frame_index(value: Any, video: VideoRef) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value < video.num_frames:
        raise InputError(f"review frame_index {value!r} is not a frame of {video.path} (0..{video.num_frames - 1})")
    return value


def _box(value: Any, video: VideoRef) -> tuple[float, float, float, float]:
    if (
        not isinstance(value, list | tuple)
        or len(value) != 4
        or not all(isinstance(v, numbers.Real) and not isinstance(v, bool) and math.isfinite(v) for v in value)
    ):
        raise InputError(f"review box {value!r} is not four numbers x1, y1, x2, y2")
    box = clip_box([float(v) for v in value], (video.width, video.height))
    if is_degenerate(box):
        raise InputError(f"review box {value!r} has no area inside the {video.width}x{video.height} frame")
    return box
