"""The two-turn conversation, built the same way for inference, replay and training.

Turn 1: the sampled frames, then prompt P1. Turn 2 continues the same conversation:
turn 1's answer as assistant history (with its generated token ids when known), then the
keyframe and prompt P2 (DESIGN.md 1.2).
Rebuilding a recorded trajectory's inputs goes through these functions too, so what a
trainer sees is exactly what the policy saw.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

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
