"""Conditional edges: where a run goes after each node, failures going straight to the end.

The program (``ChainSettings.program``) comes from the run context: the paper's chain and
the look_again program share one compiled graph and part at turn 1. The look_again nodes
write the operation they chose into ``action``, budget already enforced; edges only follow it.
"""

from __future__ import annotations

from langgraph.graph import END
from langgraph.runtime import Runtime

from revseg.graphs.looks import turns_left
from revseg.graphs.state import ChainContext, ChainState, chain_context
from revseg.trajectory import Status


def after_interpret(state: ChainState, runtime: Runtime[ChainContext]) -> str:
    """A backend failure in turn 1 ends the run; otherwise parse the answer (``decide`` for look_again)."""
    if state.get("status") == Status.POLICY_ERROR.value:
        return END
    return "decide" if chain_context(runtime).settings.program == "look_again" else "select_frames"


def after_select_frames(state: ChainState) -> str:
    """Unparseable turn 1 stops after one turn; no target skips grounding (empty masks)."""
    status = state.get("status")
    if status == Status.FAILED_SELECT_FRAMES.value:
        return END
    if status == Status.NO_TARGET.value:
        return "segment"
    return "ground"


def after_ground(state: ChainState) -> str:
    """Unparseable or unusable boxes stop with no masks (look_again: with a rejected attempt's, ``action`` end)."""
    if state.get("status") in {Status.FAILED_GROUND.value, Status.POLICY_ERROR.value} or state.get("action") == "end":
        return END
    return "segment"


def after_decide(state: ChainState) -> str:
    """look_again: follow the operation ``decide`` chose (zoom, ground, segment), or end."""
    action = state.get("action")
    return action if action in ("zoom", "ground", "segment") else END


def after_ask(state: ChainState) -> str:
    """look_again: a zoom or re-select answer is parsed by ``decide``; a backend failure ends the run."""
    return END if state.get("status") == Status.POLICY_ERROR.value else "decide"


def after_segment(state: ChainState, runtime: Runtime[ChainContext]) -> str:
    """look_again: verify tracked masks while the budget allows; the paper's chain ends here."""
    ctx = chain_context(runtime)
    if ctx.settings.program != "look_again" or ctx.tracker is None or state.get("status") != Status.OK.value:
        return END
    if not state.get("outputs", {}).get("masks_json"):
        return END
    return "verify" if turns_left(state.get("turns", []), ctx.settings.max_turns) >= 1 else END


def after_verify(state: ChainState) -> str:
    """look_again: a rejection with budget left re-selects; anything else ends the run."""
    return "reselect" if state.get("action") == "reselect" else END
