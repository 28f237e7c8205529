"""Bookkeeping of the look_again program: the current view, the turn budget, zoom windows.

The graph enforces the budget (``ChainSettings.max_turns``): a node that would start a
model turn past it ends the run instead, saying so, whatever the model asked for.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from revseg.tools.frames import sample_indices

LOOK_TURNS = ("interpret", "zoom")
"""Turns that show the model a view of the video, among which a keyframe is chosen."""


def current_view(turns: Sequence[Mapping[str, Any]]) -> list[int]:
    """Original frame indices of the last view shown (the last interpret or zoom turn's frames)."""
    for turn in reversed(turns):
        if turn["name"] in LOOK_TURNS:
            return list(turn["image_frames"])
    return []


def rejected_in_view(attempts: Sequence[Mapping[str, Any]], view: Sequence[int]) -> list[int]:
    """View indices of keyframes verify rejected while ``view`` was shown: a re-select may not pick them."""
    out: list[int] = []
    for attempt in attempts:
        if attempt.get("verdict") != "reject" or list(attempt.get("view") or []) != list(view):
            continue
        out.extend(t["sample_idx"] for t in attempt.get("targets", []) if t["sample_idx"] not in out)
    return sorted(out)


def turns_left(turns: Sequence[Mapping[str, Any]], max_turns: int) -> int:
    """Model turns the budget still allows."""
    return max(0, max_turns - len(turns))


def zoom_indices(view: Sequence[int], window: Sequence[int], n: int) -> list[int]:
    """The new view of a zoom: ``n`` frames spread from ``view[first]`` to ``view[last]``, repeats dropped.

    A window shorter than ``n`` frames gives each of its frames once.
    """
    low, high = view[window[0]], view[window[1]]
    return sorted({low + i for i in sample_indices(high - low + 1, n)})
