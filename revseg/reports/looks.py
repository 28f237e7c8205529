"""The look_again program on the report page: its extra turns and a timeline of what each looked at.

Kept apart from :mod:`revseg.reports.page` so the paper's page stays as it was: a
paper trajectory has no zoom, verify or reselect turn, and its page gets no timeline.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

from revseg.trajectory import Target, Trajectory, TurnRecord

LOOK_AGAIN_TURNS = frozenset({"zoom", "verify", "reselect"})
TITLES = {
    "interpret": "interpret and pick a keyframe",
    "ground": "ground the target",
    "zoom": "zoom: look again inside a window",
    "verify": "verify the tracked mask",
    "reselect": "re-select a keyframe after a rejection",
}
_THINK_RE = re.compile(r"<think>(.*?)</think>", re.S | re.I)
_ANSWER_RE = re.compile(r"<answer>(.*?)</answer>", re.S | re.I)

Thumbs = Callable[[Iterable[int]], dict[int, Any]]
"""frame indices -> {index: Picture}, as ``FrameImages.thumbnails``."""


def looked_at(t: Trajectory) -> list[int]:
    """Every frame a look_again turn showed (for thumbnails), in first-seen order."""
    return list(dict.fromkeys(i for turn in t.turns if turn.name in LOOK_AGAIN_TURNS for i in turn.image_frames))


def turn_reasoning(turn: TurnRecord) -> tuple[str | None, str | None]:
    """A turn's reasoning and answer: the parser's split when it ran, else the ``<think>``/``<answer>`` tags."""
    response = turn.response or ""
    think = (turn.parsed or {}).get("think")
    if think is None:
        match = _THINK_RE.search(response)
        think = match.group(1) if match else None
    answer = _ANSWER_RE.search(response)
    return (think.strip() if isinstance(think, str) else None), (answer.group(1).strip() if answer else None)


def look_turn_view(turn: TurnRecord, thumbs: dict[int, Any], page_dir: Path) -> dict[str, Any]:
    """What a zoom, verify or reselect card shows: reasoning, the decision, and the frames the turn saw."""
    think, answer = turn_reasoning(turn)
    return {
        "think": think,
        "answer": answer,
        "decision": decision_text(turn),
        "frames": _frames(turn.image_frames, thumbs, page_dir),
        "overlay": turn.overlay,
    }


def timeline_view(t: Trajectory, thumbs: dict[int, Any], page_dir: Path) -> list[dict[str, Any]]:
    """One entry per look_again step after turn 1: zooms, verdicts, re-selections, with the frames each saw.

    Empty for a paper trajectory, so its page is unchanged.
    """
    if not any(turn.name in LOOK_AGAIN_TURNS for turn in t.turns):
        return []
    out = []
    for number, turn in enumerate(t.turns, start=1):
        if turn.name == "ground":
            continue
        out.append(
            {
                "number": number,
                "kind": turn.name,
                "decision": decision_text(turn),
                "verdict": (turn.parsed or {}).get("verdict") if turn.name == "verify" else None,
                "frames": _frames(turn.image_frames, thumbs, page_dir),
            }
        )
    return out


def decision_text(turn: TurnRecord) -> str:
    """The parsed outcome of a turn in a few words ("zoom into 3-6", "reject: drifts", "keyframe #4")."""
    parsed = turn.parsed or {}
    if not turn.parse_ok:
        return f"did not parse: {turn.parse_reason}" if turn.parse_reason else "no answer"
    if turn.name == "verify":
        verdict = parsed.get("verdict") or "?"
        return f"{verdict}: {parsed['why']}" if parsed.get("why") else str(verdict)
    if parsed.get("action") == "zoom" and parsed.get("window"):
        first, last = parsed["window"]
        return f"zoom into frames {first}-{last} of the view"
    if parsed.get("no_target"):
        return "no target"
    keyframes = [f"#{o['sample_idx']}" for o in parsed.get("objects", [])]
    return ("keyframe " + ", ".join(keyframes)) if keyframes else "parsed"


def attempt_target(t: Trajectory, turn: TurnRecord) -> Target | None:
    """The target a ground turn boxed: from its attempt when it was rejected, else from the final targets."""
    number = turn.target if turn.target is not None else 0
    targets = t.targets
    if turn.attempt is not None and turn.attempt < len(t.attempts):
        targets = t.attempts[turn.attempt].targets
    return targets[number] if number < len(targets) else None


def attempt_keyframes(t: Trajectory) -> list[int]:
    """Keyframes of every attempt (rejected ones included), for full-size pictures."""
    return [target.frame_index for attempt in t.attempts for target in attempt.targets]


def _frames(indices: list[int], thumbs: dict[int, Any], page_dir: Path) -> list[dict[str, Any]]:
    return [{"frame_index": i, "src": thumbs[i].src(page_dir) if i in thumbs else None} for i in indices]
