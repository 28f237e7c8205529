"""Node ``select_frames``: parse turn 1 and map the chosen keyframe back to the video."""

from __future__ import annotations

from typing import Any

from langgraph.runtime import Runtime

from revseg.graphs.state import ChainContext, ChainState, chain_context
from revseg.policies.parsing import parse_keyframe_answer
from revseg.trajectory import Status, Target


async def select_frames(state: ChainState, runtime: Runtime[ChainContext]) -> dict[str, Any]:
    """Turn the turn-1 answer into targets, or end the run with a typed status.

    ``frame_idx`` indexes the sampled frames (0..n-1); the target records both that and
    the original frame index. An empty answer list means "no target" (DESIGN.md 1.7).
    """
    indices = state["sampled_indices"]
    turns = [dict(t) for t in state["turns"]]
    answer = parse_keyframe_answer(turns[0].get("response") or "", len(indices))
    turns[0].update(parse_ok=answer.ok, parse_reason=answer.reason, parsed=answer.to_dict())
    if not answer.ok:
        return {"turns": turns, "status": Status.FAILED_SELECT_FRAMES.value, "reason": f"turn 1: {answer.reason}"}
    if answer.no_target:
        return {"turns": turns, "status": Status.NO_TARGET.value, "reason": "the model found no target"}
    objects = answer.objects
    limit = chain_context(runtime).settings.max_objects
    if limit is not None:
        objects = objects[:limit]
    targets = [
        Target(description=o.description, sample_idx=o.sample_idx, frame_index=indices[o.sample_idx]).model_dump(
            mode="json"
        )
        for o in objects
    ]
    return {"turns": turns, "targets": targets}
