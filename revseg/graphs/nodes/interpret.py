"""Node ``interpret``: turn 1, the policy reasons over the sampled frames."""

from __future__ import annotations

from time import perf_counter
from typing import Any

from langgraph.runtime import Runtime

from revseg.errors import PolicyError
from revseg.graphs.conversation import interpret_messages
from revseg.graphs.frames import aresized_frames
from revseg.graphs.state import ChainContext, ChainState, chain_context
from revseg.graphs.turns import ask_policy, record_turn
from revseg.policies.prompts import get_prompt_set
from revseg.trajectory import Status, TurnRecord


async def interpret(state: ChainState, runtime: Runtime[ChainContext]) -> dict[str, Any]:
    """Ask the policy for a keyframe and a description of the target (prompt P1)."""
    ctx = chain_context(runtime)
    size = ctx.settings.frame_size
    frames = await aresized_frames(ctx, state["video_path"], state["sampled_indices"], size)
    prompt = get_prompt_set(ctx.settings.prompt_set).render_interpret(
        state["query"], len(frames), ctx.settings.fps_label
    )
    turn = TurnRecord(
        name="interpret",
        prompt=prompt,
        image_frames=list(state["sampled_indices"]),
        image_size=size,
        seen_size=ctx.policy.seen_size(*size),
    )
    start = perf_counter()
    try:
        generation = await ask_policy(ctx.policy, interpret_messages(frames, prompt), ctx.sampling)
    except PolicyError as exc:
        turn.duration_s = perf_counter() - start
        return {
            "turns": [turn.model_dump(mode="json")],
            "status": Status.POLICY_ERROR.value,
            "reason": str(exc),
            "timings": {"interpret": turn.duration_s},
        }
    turn = record_turn(turn, generation, perf_counter() - start)
    return {"turns": [turn.model_dump(mode="json")], "timings": {"interpret": turn.duration_s}}
