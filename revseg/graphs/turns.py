"""Filling a turn record from what the policy generated."""

from __future__ import annotations

from revseg.policies.base import Generation
from revseg.trajectory import TurnRecord


def record_turn(turn: TurnRecord, generation: Generation, duration_s: float) -> TurnRecord:
    """Return ``turn`` with the response, tokens and log-probs of ``generation``."""
    return turn.model_copy(
        update={
            "response": generation.text,
            "token_ids": generation.token_ids,
            "logprobs": generation.logprobs,
            "logprobs_approximate": generation.logprobs_approximate,
            "duration_s": duration_s,
        }
    )
