"""Bookkeeping of the look_again program: the current view, the turn budget, zoom windows.

The graph enforces the budget (``ChainSettings.max_turns``): a node that would start a
model turn past it ends the run instead, saying so, whatever the model asked for.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from revseg.tools.frames import sample_indices
from revseg.trajectory import Status

LOOK_TURNS = ("interpret", "zoom")
"""Turns that show the model a view of the video, among which a keyframe is chosen."""


def current_view(turns: Sequence[Mapping[str, Any]]) -> list[int]:
    """Original frame indices of the last view shown (the last interpret or zoom turn's frames)."""
    for turn in reversed(turns):
        if turn["name"] in LOOK_TURNS:
            return list(turn["image_frames"])
    return []


def rejected_in_view(attempts: Sequence[Mapping[str, Any]], view: Sequence[int]) -> list[int]:
    """Indices into ``view`` of every keyframe verify rejected: a re-select may not pick them again.

    Compared by original frame, so a frame rejected before a zoom stays excluded in the zoomed view.
    """
    rejected = {t["frame_index"] for a in attempts if a.get("verdict") == "reject" for t in a.get("targets", [])}
    return [i for i, frame in enumerate(view) if frame in rejected]


def turns_left(turns: Sequence[Mapping[str, Any]], max_turns: int) -> int:
    """Model turns the budget still allows."""
    return max(0, max_turns - len(turns))


def zoom_indices(view: Sequence[int], window: Sequence[int], n: int) -> list[int]:
    """The new view of a zoom: ``n`` frames spread from ``view[first]`` to ``view[last]``, repeats dropped.

    A window shorter than ``n`` frames gives each of its frames once.
    """
    low, high = view[window[0]], view[window[1]]
    return sorted({low + i for i in sample_indices(high - low + 1, n)})


def after_rejection(state: Mapping[str, Any], update: dict[str, Any]) -> dict[str, Any]:
    """A re-grounding that failed to give a box, after a rejected attempt: that attempt's masks stand.

    The run ends ``ok`` with the rejected attempt's targets (its masks are still the
    outputs) and a reason saying what failed; a backend failure stays ``policy_error``.
    """
    attempts = state.get("attempts") or []
    if not attempts or update.get("status") != Status.FAILED_GROUND.value:
        return update
    reason = f"{update.get('reason')}; the rejected attempt's masks are kept"
    return {
        **update,
        "status": Status.OK.value,
        "reason": reason,
        "targets": attempts[-1]["targets"],
        "action": "end",
    }
