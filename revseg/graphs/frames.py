"""Frames for the policy, re-read from the video reference held in state.

Turn 2 replays turn 1's frames as history, so the resized sampled frames are kept in
a small per-process cache instead of being decoded twice; the cache holds PIL images
of a few recent videos only, never anything that enters graph state.
"""

from __future__ import annotations

from collections.abc import Sequence
from functools import lru_cache
from typing import TYPE_CHECKING

from revseg.tools.frames import open_video, resize_frame

if TYPE_CHECKING:
    from PIL.Image import Image


@lru_cache(maxsize=4)
def _resized(path: str, backend: str, indices: tuple[int, ...], size: tuple[int, int]) -> tuple[Image, ...]:
    reader = open_video(path, backend=backend)
    try:
        unique = sorted(set(indices))
        decoded = dict(zip(unique, reader.read(unique), strict=True))
    finally:
        reader.close()
    return tuple(resize_frame(decoded[i], size) for i in indices)


def resized_frames(path: str, backend: str, indices: Sequence[int], size: tuple[int, int]) -> list[Image]:
    """Frames ``indices`` of the video at ``path``, each resized to ``size`` (width, height)."""
    return list(_resized(path, backend, tuple(indices), tuple(size)))
