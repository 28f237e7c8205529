"""The frame-reader contract and the logic every backend shares (index checks, order, repeats)."""

from __future__ import annotations

import operator
import re
from collections.abc import Iterator, Sequence
from typing import ClassVar, Protocol, runtime_checkable

import numpy as np

from revseg.errors import VideoError
from revseg.trajectory import VideoRef

FRAME_EXTENSIONS = (".jpg", ".jpeg", ".png")
"""File suffixes a frame folder may hold (case-insensitive); anything else is ignored."""


@runtime_checkable
class FrameReader(Protocol):
    """Random and sequential access to a video's frames as RGB uint8 arrays of shape (H, W, 3).

    What a file reader promises, whatever the backend (the conformance suite in
    ``tests/tools/frame_reader_conformance.py`` checks it):

    - ``ref.num_frames`` is the number of frames that actually decode, not what the
      container header claims. Headers over-report (edit lists that trim frames, a wrong
      ``nb_frames``, a stream cut at a packet boundary); when they do the reader serves the
      frames that exist and logs a warning naming both counts.
    - A file whose data ends *inside* a frame (a download cut short: the classic truncated
      mp4) or whose last frames fail to decode raises :class:`~revseg.errors.VideoError`.
      We do not serve the decodable prefix of a damaged file: masks must cover the real
      video, and a silently shorter video misaligns every score computed downstream. An
      mp4 cut before its ``moov`` index cannot be opened at all and raises the same way.
    - Frame i is the i-th frame in presentation order. Containers whose seeks cannot be
      trusted (MPEG-TS/PS, raw H.264: see :data:`SEEKABLE_FORMATS`) are decoded from the
      start on every read, slower but never off by a frame.
    - Frame i is the i-th frame in presentation order even when the frame rate varies:
      indices come from timestamps, never from ``time * fps``.
    - Frames are RGB uint8 arrays of shape (H, W, 3), upright: a file's display rotation
      (the display matrix phones write for portrait video) is applied, as players, ffmpeg
      and torchcodec do, and ``ref.width``/``ref.height`` are the upright size. So the
      policy sees the video as people do, and masks line up with what a player shows. decord
      ignores the rotation (and returns malformed frames for 90-degree turns), so it
      declines rotated files. Frame folders are served as stored, without EXIF orientation:
      benchmark folders carry none, and sam2 reads such folders itself without applying it.
    """

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


def one_line(exc: BaseException) -> str:
    """A library error as one short line: decord adds a timestamp, source line and C++ stack trace, PyAV the errno."""
    strerror = getattr(exc, "strerror", None)
    text = strerror if isinstance(strerror, str) and strerror else str(exc).strip()
    text = text.splitlines()[0] if text else type(exc).__name__
    return re.sub(r"^\[[\d:]+\] \S+:\d+: ", "", text)[:200]


# --- shared reader logic ---------------------------------------------------------------


class BaseReader:
    """Index validation, ordering and repeats, shared by every backend.

    A backend implements ``_read_sorted`` (unique indices in increasing order, one pass)
    and ``_iter_range``; this class turns them into the protocol's ``read`` and
    ``iter_frames`` with the same checks and error messages everywhere.
    """

    backend: ClassVar[str] = "base"

    def __init__(self, ref: VideoRef) -> None:
        self._ref = ref
        self._closed = False

    @property
    def ref(self) -> VideoRef:
        """Path, frame count, size, fps and backend name."""
        return self._ref

    def read(self, indices: Sequence[int]) -> list[np.ndarray]:
        """Frames at ``indices`` in the order asked; each unique frame is decoded once.

        Repeated indices get independent copies, so a caller may modify one without
        changing the other. Raises VideoError naming the path for an index out of range.
        """
        self._check_open()
        wanted = [self._check_index(i) for i in indices]
        unique = sorted(set(wanted))
        decoded = self._read_sorted(unique) if unique else {}
        out: list[np.ndarray] = []
        served: set[int] = set()
        for index in wanted:
            frame = decoded[index]
            out.append(frame.copy() if index in served else frame)
            served.add(index)
        return out

    def iter_frames(self, start: int = 0, stop: int | None = None) -> Iterator[np.ndarray]:
        """Frames ``start`` .. ``stop - 1`` in order; only a few frames are held at a time."""
        self._check_open()
        total = self._ref.num_frames
        stop = total if stop is None else operator.index(stop)
        start = operator.index(start)
        if not 0 <= start <= stop <= total:
            raise VideoError(f"{self._ref.path}: frame range [{start}, {stop}) is outside 0..{total}")
        if start == stop:
            return iter(())
        return self._iter_range(start, stop)

    def close(self) -> None:
        """Release the decoder; further reads raise ValueError."""
        self._closed = True

    def __enter__(self) -> BaseReader:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def _check_open(self) -> None:
        if self._closed:
            raise ValueError(f"{self._ref.path}: frame reader is closed")

    def _check_index(self, index: int) -> int:
        value = operator.index(index)
        if not 0 <= value < self._ref.num_frames:
            raise VideoError(
                f"{self._ref.path}: frame index {value} out of range (video has {self._ref.num_frames} frames,"
                f" valid 0..{self._ref.num_frames - 1})"
            )
        return value

    def _read_sorted(self, indices: list[int]) -> dict[int, np.ndarray]:
        raise NotImplementedError

    def _iter_range(self, start: int, stop: int) -> Iterator[np.ndarray]:
        raise NotImplementedError
