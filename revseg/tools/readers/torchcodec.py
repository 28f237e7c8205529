"""``torchcodec``: torchcodec's ``VideoDecoder`` in exact seek mode, checked against the shared probe."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import ClassVar

import numpy as np

from revseg.errors import VideoError
from revseg.tools.readers.base import BaseReader, one_line
from revseg.tools.readers.libraries import BackendUnavailable, library
from revseg.tools.readers.probe import (
    agrees_with_probe,
    check_file,
    file_ref,
    probe_file,
)

_TORCHCODEC_CHUNK = 16
"""Frames per ``get_frames_in_range`` while streaming."""


class TorchCodecReader(BaseReader):
    """torchcodec's ``VideoDecoder`` (exact seek mode): batched random access and streaming.

    Like decord it must agree with the shared PyAV probe before it serves a file (same
    count, same upright size, the same last frame after a random seek), so a file it
    would read differently is left to PyAV. torchcodec applies the display rotation
    itself, as every revseg reader does. One decoding thread, like the other backends.
    """

    backend: ClassVar[str] = "torchcodec"

    def __init__(self, path: str | Path) -> None:
        file = check_file(Path(path), self.backend)
        index = probe_file(file)  # first, so a broken file fails the same way whether torchcodec loads or not
        decoder_class = library("torchcodec")
        if not index.seekable:
            raise BackendUnavailable(
                f"{file}: torchcodec's seeks are not checked for {index.format} streams; use backend='pyav'"
            )
        try:
            self._decoder = decoder_class(str(file), seek_mode="exact", dimension_order="NHWC", num_ffmpeg_threads=1)
        except Exception as exc:  # torchcodec raises RuntimeError/ValueError for files it cannot open
            reason = one_line(exc)
            raise BackendUnavailable(f"{file}: torchcodec cannot read it ({reason}); use backend='pyav'") from exc
        super().__init__(file_ref(file, index, self.backend))
        count = self._decoder.metadata.num_frames
        agrees_with_probe(self.backend, file, index, count, lambda at: self._decoder.get_frames_at(at).data.numpy())

    def _frames_at(self, indices: list[int]) -> np.ndarray:
        try:
            return np.asarray(self._decoder.get_frames_at(indices).data.numpy())
        except Exception as exc:  # torchcodec raises RuntimeError, IndexError, ...
            raise VideoError(
                f"{self._ref.path}: torchcodec cannot decode frames {indices[:8]} ({one_line(exc)})"
            ) from exc

    def _read_sorted(self, indices: list[int]) -> dict[int, np.ndarray]:
        batch = self._frames_at(indices)
        return {index: batch[k] for k, index in enumerate(indices)}

    def _iter_range(self, start: int, stop: int) -> Iterator[np.ndarray]:
        for chunk_start in range(start, stop, _TORCHCODEC_CHUNK):
            chunk_stop = min(chunk_start + _TORCHCODEC_CHUNK, stop)
            try:
                batch = self._decoder.get_frames_in_range(chunk_start, chunk_stop).data.numpy()
            except Exception as exc:  # torchcodec raises RuntimeError, IndexError, ...
                raise VideoError(
                    f"{self._ref.path}: torchcodec cannot decode frames {chunk_start}..{chunk_stop - 1}"
                    f" ({one_line(exc)})"
                ) from exc
            yield from batch

    def close(self) -> None:
        """Drop torchcodec's decoder (it holds the demuxer and decoder)."""
        if not self._closed:
            del self._decoder
        super().close()
