"""Asking the policy for a turn, and filling the turn record from what it generated."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from time import perf_counter
from typing import Any

from revseg.errors import PolicyError
from revseg.graphs.conversation import user_message
from revseg.graphs.frames import ahistory, resized_frames
from revseg.graphs.images import turn_images
from revseg.graphs.state import ChainContext, ChainState
from revseg.policies.base import Generation, Message, Policy
from revseg.settings import SamplingParams
from revseg.trajectory import Status, TurnRecord


def record_turn(turn: TurnRecord, generation: Generation, duration_s: float) -> TurnRecord:
    """Return ``turn`` with the response, tokens and log-probs of ``generation``."""
    return turn.model_copy(
        update={
            "response": generation.text,
            "token_ids": generation.token_ids,
            "logprobs": generation.logprobs,
            "logprobs_approximate": generation.logprobs_approximate,
            "token_source": generation.token_source,
            "exchange": generation.exchange,
            "duration_s": duration_s,
        }
    )


async def ask_policy(policy: Policy, messages: Sequence[Message], sampling: SamplingParams) -> Generation:
    """The policy's answer without blocking the event loop.

    ``agenerate`` when the policy has it; a policy written with only ``generate`` still
    works, its calls running in a worker thread.
    """
    agenerate = getattr(policy, "agenerate", None)
    if agenerate is not None:
        return await agenerate(messages, sampling)
    return await asyncio.to_thread(policy.generate, messages, sampling)


async def ask_next_turn(ctx: ChainContext, state: ChainState, turn: TurnRecord, stage: str) -> dict[str, Any]:
    """Ask ``turn`` as the next message of the look_again conversation; the state update recording it.

    The history is every recorded turn with its images (:func:`revseg.graphs.frames.history`),
    and the new turn's images are built the way training rebuilds them
    (:func:`revseg.graphs.images.turn_images`). A backend failure ends the run as ``policy_error``.
    """
    path = state["video_path"]
    messages = await ahistory(ctx, path, state["turns"])

    def read(indices: Sequence[int], size: tuple[int, int]) -> list[Any]:
        return resized_frames(ctx, path, indices, size)

    images = await asyncio.to_thread(turn_images, turn.model_dump(mode="json"), read)
    start = perf_counter()
    try:
        generation = await ask_policy(ctx.policy, [*messages, user_message(images, turn.prompt)], ctx.sampling)
    except PolicyError as exc:
        turn.duration_s = perf_counter() - start
        return {
            "turns": [*state["turns"], turn.model_dump(mode="json")],
            "action": "end",
            "status": Status.POLICY_ERROR.value,
            "reason": str(exc),
            "timings": {stage: turn.duration_s},
        }
    turn = record_turn(turn, generation, perf_counter() - start)
    return {"turns": [*state["turns"], turn.model_dump(mode="json")], "timings": {stage: turn.duration_s}}
