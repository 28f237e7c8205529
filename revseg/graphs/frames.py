"""Frames for the policy, re-read from the video reference held in state.

Turn 2 replays turn 1's frames as history, and queries in a batch often share a video,
so resized frames go through the run context's cache (owned by the agent, shared by its
runs, never in graph state) instead of being decoded again. Decoding blocks, so async
nodes read frames in a worker thread (:func:`aresized_frames`).
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

from revseg.graphs.conversation import look_messages
from revseg.graphs.images import turn_images
from revseg.graphs.state import ChainContext
from revseg.policies.base import Message

if TYPE_CHECKING:
    from PIL.Image import Image


def resized_frames(context: ChainContext, path: str, indices: Sequence[int], size: tuple[int, int]) -> list[Image]:
    """Frames ``indices`` of the video at ``path``, each resized to ``size`` (width, height); read-only."""
    return context.frame_cache.read(path, indices, size, backend=context.frame_backend)


async def aresized_frames(
    context: ChainContext, path: str, indices: Sequence[int], size: tuple[int, int]
) -> list[Image]:
    """:func:`resized_frames` in a worker thread, so decoding never blocks the event loop."""
    return await asyncio.to_thread(resized_frames, context, path, indices, size)


def history(context: ChainContext, path: str, turns: Sequence[Mapping[str, Any]]) -> list[Message]:
    """The look_again conversation so far, images re-read through the context's cache."""

    def read(indices: Sequence[int], size: tuple[int, int]) -> list[Image]:
        return resized_frames(context, path, indices, size)

    return look_messages(turns, [turn_images(turn, read) for turn in turns])


async def ahistory(context: ChainContext, path: str, turns: Sequence[Mapping[str, Any]]) -> list[Message]:
    """:func:`history` in a worker thread (decoding and drawing block)."""
    return await asyncio.to_thread(history, context, path, turns)
