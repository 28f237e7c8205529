"""Conditional edges: where a run goes after each node, failures going straight to the end."""

from __future__ import annotations

from langgraph.graph import END

from revseg.graphs.state import ChainState
from revseg.trajectory import Status


def after_interpret(state: ChainState) -> str:
    """A backend failure in turn 1 ends the run; otherwise parse the answer."""
    return END if state.get("status") == Status.POLICY_ERROR.value else "select_frames"


def after_select_frames(state: ChainState) -> str:
    """Unparseable turn 1 stops after one turn; no target skips grounding (empty masks)."""
    status = state.get("status")
    if status == Status.FAILED_SELECT_FRAMES.value:
        return END
    if status == Status.NO_TARGET.value:
        return "segment"
    return "ground"


def after_ground(state: ChainState) -> str:
    """Unparseable or unusable boxes stop with no masks."""
    return END if state.get("status") in {Status.FAILED_GROUND.value, Status.POLICY_ERROR.value} else "segment"
