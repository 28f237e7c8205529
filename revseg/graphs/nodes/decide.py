"""Node ``decide`` (look_again): parse a look turn's answer into the next operation.

The answer of an interpret, zoom or reselect turn either names keyframes (then
``ground``, or ``segment`` for "no target") or asks to ``zoom`` into a window of the
frames it saw. The budget is checked here, not trusted to the model: a zoom needs room
for itself and a grounding turn after it. After a rejected attempt, an answer that does
not parse, or a zoom with no room left, ends the run with the rejected attempt's masks.
"""

from __future__ import annotations

from typing import Any

from langgraph.runtime import Runtime

from revseg.graphs.looks import current_view, rejected_in_view, turns_left
from revseg.graphs.state import ChainContext, ChainState, chain_context
from revseg.policies.actions import parse_look_answer
from revseg.trajectory import Status, Target


async def decide(state: ChainState, runtime: Runtime[ChainContext]) -> dict[str, Any]:
    """Set ``action`` (and ``targets`` or ``zoom``) from the last turn's answer, or end with a reason."""
    settings = chain_context(runtime).settings
    turns = [dict(t) for t in state["turns"]]
    attempts = state.get("attempts", [])
    view = current_view(turns)
    last = turns[-1]
    number = len(turns)
    answer = parse_look_answer(last.get("response") or "", len(view), rejected_in_view(attempts, view))
    last.update(parse_ok=answer.ok, parse_reason=answer.reason, parsed=answer.to_dict())
    left = turns_left(turns, settings.max_turns)
    if not answer.ok:
        return _stop(turns, attempts, f"turn {number} ({last['name']}): {answer.reason}")
    if answer.action == "zoom":
        if left < 2:
            why = f"turn {number} asked to zoom, but the budget of {settings.max_turns} turns has no room for it"
            return _stop(turns, attempts, why)
        assert answer.window is not None
        return {"turns": turns, "action": "zoom", "zoom": list(answer.window)}
    if answer.no_target:
        return {
            "turns": turns,
            "action": "segment",
            "targets": [],
            "status": Status.NO_TARGET.value,
            "reason": "the model found no target",
        }
    objects = answer.objects[: settings.max_objects] if settings.max_objects else answer.objects
    targets = [
        Target(description=o.description, sample_idx=o.sample_idx, frame_index=view[o.sample_idx]).model_dump(
            mode="json"
        )
        for o in objects
    ]
    if left < len(targets):  # one grounding turn per target
        why = f"no turns left to ground the {len(targets)} target(s) of turn {number} (max {settings.max_turns})"
        return _stop(turns, attempts, why)
    return {"turns": turns, "action": "ground", "targets": targets, "zoom": None}


def _stop(turns: list[Any], attempts: list[Any], why: str) -> dict[str, Any]:
    """End the run: a failure before any attempt; after a rejected attempt, its masks stand."""
    if attempts:
        return {
            "turns": turns,
            "action": "end",
            "status": Status.OK.value,
            "reason": f"{why}; the rejected attempt's masks are kept",
        }
    return {"turns": turns, "action": "end", "status": Status.FAILED_SELECT_FRAMES.value, "reason": why}
