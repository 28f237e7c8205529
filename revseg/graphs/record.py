"""Turning a finished graph state into the trajectory record."""

from __future__ import annotations

from typing import Any

from revseg.graphs.state import ChainContext
from revseg.trajectory import Attempt, Status, Target, Trajectory, TurnRecord, VideoRef


def trajectory_from_state(state: dict[str, Any], context: ChainContext, **ids: Any) -> Trajectory:
    """Assemble the versioned record from the final state and the run context.

    ``ids`` are optional identifiers (``run_id``, ``group_id``, ``query_id``) set by the caller.
    """
    tracker = context.tracker.spec if context.tracker is not None else "none"
    return Trajectory(
        query=state["query"],
        video=VideoRef.model_validate(state["video"]),
        policy=context.policy.info,
        tracker=tracker,
        sampling=context.sampling,
        settings=context.settings,
        sampled_indices=state.get("sampled_indices", []),
        targets=[Target.model_validate(t) for t in state.get("targets", [])],
        turns=[TurnRecord.model_validate(t) for t in state.get("turns", [])],
        status=Status(state.get("status", Status.OK.value)),
        reason=state.get("reason"),
        outputs=dict(state.get("outputs", {})),
        timings=dict(state.get("timings", {})),
        reviews=list(state.get("reviews", [])),
        attempts=[Attempt.model_validate(a) for a in state.get("attempts", [])],
        **{k: v for k, v in ids.items() if v is not None},
    )
