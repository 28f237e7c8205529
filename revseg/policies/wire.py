"""Our messages as the role/content-block dicts chat APIs and chat templates read.

Backends differ only in how an image becomes a block (a PIL image for a transformers
template, a data URL for chat completions, base64 for langchain); the walk over messages
and parts is this one.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

from revseg.policies.base import ImagePart, Message, TextPart

ImageBlock = Callable[[ImagePart], dict[str, Any]]


def content_blocks(message: Message, image_block: ImageBlock) -> list[dict[str, Any]]:
    """A message's parts in order: images through ``image_block``, text as ``{"type": "text"}``."""
    blocks: list[dict[str, Any]] = []
    for part in message.parts:
        if isinstance(part, ImagePart):
            blocks.append(image_block(part))
        elif isinstance(part, TextPart):
            blocks.append({"type": "text", "text": part.text})
    return blocks


def wire_messages(messages: Sequence[Message], image_block: ImageBlock) -> list[dict[str, Any]]:
    """``{"role", "content"}`` dicts: assistant history as plain text, other turns as content blocks."""
    return [
        {"role": "assistant", "content": m.text}
        if m.role == "assistant"
        else {"role": m.role, "content": content_blocks(m, image_block)}
        for m in messages
    ]
