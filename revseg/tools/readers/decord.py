"""``decord``: decord's ``VideoReader`` for random access, checked against the shared probe."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any, ClassVar

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
from revseg.tools.readers.pyav import PyAVReader


class DecordReader(BaseReader):
    """decord's ``VideoReader`` for random access (``read``), with bounded memory.

    decord has known faults: frame counts that disagree with what decodes, hangs on
    damaged files, seeks that return the wrong frame in containers without an index
    (MPEG-PS), a size bug that fails some frame sizes (48x96), no AV1. So the file is
    first validated by the shared PyAV probe, and decord must agree with it: a seekable
    container, the same frame count, and a random read of the last frame (after frame 0)
    that matches the probe's fingerprint. Otherwise decord declines (BackendUnavailable).
    The agreement check runs once per file and process.

    decord's ``VideoReader`` decodes ahead on a thread of its own, to the end of the video,
    and keeps every decoded frame until it is taken or the reader is dropped: one
    ``get_batch([1500])`` on a 3,000-frame 480p video grew the process by 1.3 GB within
    three seconds, and a whole-video pass through ``next`` held most of the video while a
    tracker consumed it (+1.1 GB). So each ``read`` opens a reader, takes its frames and
    drops it (about 10 ms more a call), and whole ranges (``iter_frames``) stream through
    PyAV, which decodes the same pixels on every file decord accepts. Because PyAV then
    serves random reads as fast (``benchmarks/bench_frames.py``), ``auto`` no longer picks
    decord; it stays for callers who ask for it, and ``reads_exactly(path, "decord")``
    still tells whether sam2's own mp4 loader (which uses decord) may read a file.
    """

    backend: ClassVar[str] = "decord"

    def __init__(self, path: str | Path) -> None:
        file = check_file(Path(path), self.backend)
        self._decord = library("decord")
        index = probe_file(file)
        if not index.seekable:
            raise BackendUnavailable(
                f"{file}: decord's random access is unreliable for {index.format} streams; use backend='pyav'"
            )
        if index.quarter_turns:
            raise BackendUnavailable(
                f"{file}: decord ignores the display rotation ({index.quarter_turns * 90} degrees), so its frames"
                " would not be upright (and are malformed for quarter turns); use backend='pyav'"
            )
        try:
            probe_reader = self._open(file)
        except Exception as exc:  # decord raises DECORDError, RuntimeError, ...
            raise BackendUnavailable(f"{file}: decord cannot read it ({one_line(exc)}); use backend='pyav'") from exc
        super().__init__(file_ref(file, index, self.backend))
        self._streamer: PyAVReader | None = None
        # The check's reader is local: it is dropped, with whatever it decoded ahead, when __init__ returns.
        count = len(probe_reader)
        agrees_with_probe(self.backend, file, index, count, lambda at: probe_reader.get_batch(at).asnumpy())

    def _open(self, file: str | Path) -> Any:
        return self._decord.VideoReader(str(file), ctx=self._decord.cpu(0))

    def _read_sorted(self, indices: list[int]) -> dict[int, np.ndarray]:
        try:
            reader = self._open(self._ref.path)
            try:
                batch = reader.get_batch(indices).asnumpy()
            finally:
                del reader  # stops its decode-ahead thread and frees what it held
        except Exception as exc:  # decord raises DECORDError, RuntimeError, ...
            raise VideoError(f"{self._ref.path}: decord cannot decode frames {indices[:8]} ({one_line(exc)})") from exc
        return {index: batch[k] for k, index in enumerate(indices)}

    def _iter_range(self, start: int, stop: int) -> Iterator[np.ndarray]:
        """Stream through PyAV (see the class docstring: decord's own streaming holds the video)."""
        if self._streamer is None:
            self._streamer = PyAVReader(self._ref.path)
        return self._streamer._iter_range(start, stop)
