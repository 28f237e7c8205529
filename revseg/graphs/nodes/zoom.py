"""Node ``zoom`` (look_again): show the frames inside a window of the last view and ask again."""

from __future__ import annotations

from typing import Any

from langgraph.runtime import Runtime

from revseg.graphs.looks import current_view, zoom_indices
from revseg.graphs.state import ChainContext, ChainState, chain_context
from revseg.graphs.turns import ask_next_turn
from revseg.policies.prompts import get_look_again_prompts
from revseg.trajectory import TurnRecord


async def zoom(state: ChainState, runtime: Runtime[ChainContext]) -> dict[str, Any]:
    """Sample ``num_frames`` frames between the window's ends and continue the conversation with them."""
    ctx = chain_context(runtime)
    window = state.get("zoom") or [0, 0]
    view = current_view(state["turns"])
    indices = zoom_indices(view, window, ctx.settings.num_frames)
    size = ctx.settings.frame_size
    prompt = get_look_again_prompts(ctx.settings.prompt_set).render_zoom(
        state["query"], len(indices), window[0], window[1]
    )
    turn = TurnRecord(
        name="zoom", prompt=prompt, image_frames=indices, image_size=size, seen_size=ctx.policy.seen_size(*size)
    )
    return await ask_next_turn(ctx, state, turn, "zoom")
