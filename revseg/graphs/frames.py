"""Frames for the policy, re-read from the video reference held in state.

Turn 2 replays turn 1's frames as history, so resized frames go through the run
context's cache instead of being decoded twice. The cache lives in the context (owned
by the agent), never in graph state. Decoding blocks, so async nodes read frames in a
worker thread (:func:`aresized_frames`).
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from typing import TYPE_CHECKING

from revseg.graphs.state import ChainContext
from revseg.tools.frames import open_video, read_resized

if TYPE_CHECKING:
    from PIL.Image import Image


def resized_frames(context: ChainContext, path: str, indices: Sequence[int], size: tuple[int, int]) -> list[Image]:
    """Frames ``indices`` of the video at ``path``, each resized to ``size`` (width, height)."""
    reader = open_video(path, backend=context.frame_backend)
    try:
        with context.frame_cache_lock:
            return read_resized(reader, indices, size, context.frame_cache)
    finally:
        reader.close()


async def aresized_frames(
    context: ChainContext, path: str, indices: Sequence[int], size: tuple[int, int]
) -> list[Image]:
    """:func:`resized_frames` in a worker thread, so decoding never blocks the event loop."""
    return await asyncio.to_thread(resized_frames, context, path, indices, size)
