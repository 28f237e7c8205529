"""Asking the policy for a turn, and filling the turn record from what it generated."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence

from revseg.policies.base import Generation, Message, Policy
from revseg.settings import SamplingParams
from revseg.trajectory import TurnRecord


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
