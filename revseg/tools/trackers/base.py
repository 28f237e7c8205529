"""The Tracker contract: a box prompt on one frame in, masks for every frame out, streamed."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Protocol, runtime_checkable

from revseg.trajectory import BoxXYXY

if TYPE_CHECKING:
    import numpy as np

    from revseg.tools.frames import FrameReader


@dataclass(frozen=True)
class FrameMasks:
    """Masks of every tracked object on one frame: ``masks`` is (num_objects, H, W) bool at original size."""

    frame_index: int
    masks: np.ndarray


@runtime_checkable
class Tracker(Protocol):
    """Propagates box prompts from a keyframe through a whole video."""

    @property
    def spec(self) -> str:
        """The spec string this tracker was built from (recorded in trajectories)."""
        ...

    def track(
        self, video: FrameReader, keyframe_index: int, boxes: Sequence[BoxXYXY], *, progress: bool = False
    ) -> Iterator[FrameMasks]:
        """Yield masks for every frame of ``video`` exactly once, in any order.

        Boxes are x1, y1, x2, y2 in original-frame pixels on ``keyframe_index``;
        propagation runs forwards to the end and backwards to the start.
        """
        ...
