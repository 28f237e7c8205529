"""The chain's conversations, built the same way for inference, replay and training.

Turn 1: the sampled frames, then prompt P1. Turn 2 continues the same conversation:
turn 1's answer as assistant history (with its generated token ids when known), then the
keyframe and prompt P2 (DESIGN.md 1.2).
Rebuilding a recorded trajectory's inputs goes through these functions too, so what a
trainer sees is exactly what the policy saw.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

from revseg.policies.base import ImagePart, Message, TextPart

if TYPE_CHECKING:
    from PIL.Image import Image


def interpret_messages(frames: Sequence[Image], prompt: str) -> list[Message]:
    """Turn 1: one user message with every sampled frame followed by the prompt."""
    return [Message(role="user", parts=(*(ImagePart(f) for f in frames), TextPart(prompt)))]


def ground_messages(
    frames: Sequence[Image],
    interpret_prompt: str,
    interpret_answer: str,
    keyframe: Image,
    ground_prompt: str,
    interpret_ids: Sequence[int] | None = None,
) -> list[Message]:
    """Turn 2: turn 1 as history, then the keyframe at high resolution and the grounding prompt.

    ``interpret_ids`` are the token ids turn 1 generated, when the policy reported them:
    the history then carries them, and a backend that tokenises feeds them instead of
    re-tokenising ``interpret_answer`` (the context training scores turn 2 in).
    """
    return [
        *interpret_messages(frames, interpret_prompt),
        Message.assistant(interpret_answer, interpret_ids),
        Message(role="user", parts=(ImagePart(keyframe), TextPart(ground_prompt))),
    ]


def user_message(images: Sequence[Image], prompt: str) -> Message:
    """One user turn: its images, then its prompt (images first, as in Qwen-VL's examples)."""
    return Message(role="user", parts=(*(ImagePart(i) for i in images), TextPart(prompt)))


def look_messages(turns: Sequence[Mapping[str, Any]], images: Sequence[Sequence[Image]]) -> list[Message]:
    """The look_again program's single conversation so far: every recorded turn, in order.

    Each turn is its user message (``images[i]``, then its prompt) followed by the model's
    answer, carrying its generated token ids when known, exactly as
    :func:`ground_messages` carries turn 1's. Unlike the paper's chain, where each target's
    turn 2 branches from turn 1, every look_again turn continues the one before it, so a
    rollout is one sequence for training.
    """
    out: list[Message] = []
    for turn, pictures in zip(turns, images, strict=True):
        out.append(user_message(pictures, turn["prompt"]))
        if turn.get("response") is not None:
            out.append(Message.assistant(turn["response"], turn.get("token_ids")))
    return out
