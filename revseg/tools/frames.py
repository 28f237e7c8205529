"""Frame access: one abstraction for sampling, the keyframe and tracking.

(Interface first; implementation in progress.)
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Protocol, runtime_checkable

from revseg.trajectory import VideoRef

if TYPE_CHECKING:
    import numpy as np
    from PIL.Image import Image


@runtime_checkable
class FrameReader(Protocol):
    """Random and sequential access to a video's frames as RGB uint8 arrays of shape (H, W, 3)."""

    @property
    def ref(self) -> VideoRef:
        """Path, frame count, size, fps and backend name."""
        ...

    def read(self, indices: Sequence[int]) -> list[np.ndarray]:
        """Frames at ``indices`` (original indices, repeats allowed), in the order asked."""
        ...

    def iter_frames(self, start: int = 0, stop: int | None = None) -> Iterator[np.ndarray]:
        """Frames ``start`` .. ``stop - 1`` in order, decoded sequentially (bounded memory)."""
        ...

    def close(self) -> None:
        """Release the decoder."""
        ...


def open_video(path: str | Path, backend: str = "auto") -> FrameReader:
    """Open a video file or a folder of frames; raise VideoError naming the problem."""
    raise NotImplementedError


def sample_indices(num_frames: int, n: int) -> list[int]:
    """``round(linspace(0, T-1, n))``: n uniformly spaced frame indices, repeats when T < n."""
    raise NotImplementedError


def resize_frame(frame: np.ndarray, size: tuple[int, int]) -> Image:
    """Resize an RGB frame to (width, height) exactly (aspect not kept, as the paper does)."""
    raise NotImplementedError
