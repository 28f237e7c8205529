"""Node ``reselect`` (look_again): after a rejection, ask for a different keyframe of the same view."""

from __future__ import annotations

from typing import Any

from langgraph.runtime import Runtime

from revseg.graphs.looks import current_view, rejected_in_view
from revseg.graphs.state import ChainContext, ChainState, chain_context
from revseg.graphs.turns import ask_next_turn
from revseg.policies.prompts import get_look_again_prompts
from revseg.trajectory import TurnRecord


async def reselect(state: ChainState, runtime: Runtime[ChainContext]) -> dict[str, Any]:
    """A text-only turn: the rejection's reason and the excluded keyframes; ``decide`` parses the answer."""
    ctx = chain_context(runtime)
    attempts = state.get("attempts", [])
    view = current_view(state["turns"])
    why = (attempts[-1].get("why") if attempts else None) or ""
    prompt = get_look_again_prompts(ctx.settings.prompt_set).render_reselect(why, rejected_in_view(attempts, view))
    turn = TurnRecord(
        name="reselect", prompt=prompt, image_frames=[], image_size=ctx.settings.frame_size, attempt=len(attempts)
    )
    return await ask_next_turn(ctx, state, turn, "reselect")
