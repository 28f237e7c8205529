"""``pyav``: PyAV decoding, seeking to the keyframe before a target and decoding forward."""

from __future__ import annotations

import bisect
from collections.abc import Iterator
from pathlib import Path
from typing import Any, ClassVar

import numpy as np

from revseg.errors import VideoError
from revseg.tools.readers.base import BaseReader, one_line
from revseg.tools.readers.probe import check_file, file_ref, open_container, probe_file, seek_decode, upright


class PyAVReader(BaseReader):
    """PyAV decoding: seek to the keyframe before a target, decode forward, map pts to indices.

    ``read`` decodes the sorted unique targets in one pass, seeking forward only when a
    keyframe lies between the current position and the next target. Streams without
    trustworthy seeking (see :data:`SEEKABLE_FORMATS`) are decoded from the start on
    every call. Every call opens its own container, so a running ``iter_frames`` and a
    ``read`` never disturb each other.
    """

    backend: ClassVar[str] = "pyav"

    def __init__(self, path: str | Path) -> None:
        file = check_file(Path(path), self.backend)
        self._index = probe_file(file)
        self._pts_index = {p: i for i, p in enumerate(self._index.pts or ())}
        super().__init__(file_ref(file, self._index, self.backend))

    def _keyframe_before(self, index: int) -> int:
        keys = self._index.keyframes
        return keys[bisect.bisect_right(keys, index) - 1]

    def _decode_from(self, container: Any, start: int) -> Iterator[tuple[int, Any]]:
        """(index, frame) from ``start`` on: seeking when the stream allows it, else counting from a fresh container."""
        if self._index.pts is None:
            for count, frame in enumerate(container.decode(container.streams.video[0])):
                if count >= start:
                    yield count, frame
            return
        yield from seek_decode(container, self._index.pts, self._pts_index, self._index.keyframes, start)

    def _read_sorted(self, indices: list[int]) -> dict[int, np.ndarray]:
        out: dict[int, np.ndarray] = {}
        container = open_container(Path(self._ref.path))
        try:
            pending = 0
            while pending < len(indices):
                progressed = False
                for index, frame in self._decode_from(container, indices[pending]):
                    if index < indices[pending]:
                        continue
                    if index > indices[pending]:
                        break  # the target never came out of the decoder
                    out[index] = upright(frame.to_ndarray(format="rgb24"), self._index.quarter_turns)
                    pending += 1
                    progressed = True
                    if pending == len(indices) or self._keyframe_before(indices[pending]) > index:
                        break  # done, or seeking to a later keyframe beats decoding on
                if not progressed or not self._index.seekable:
                    break  # a counting pass cannot restart on a used container
        except VideoError:
            raise
        except Exception as exc:  # decoder errors come as several PyAV types
            raise VideoError(f"{self._ref.path}: cannot decode frames {indices[:8]} ({one_line(exc)})") from exc
        finally:
            container.close()
        missing = [i for i in indices if i not in out]
        if missing:
            raise VideoError(f"{self._ref.path}: frame {missing[0]} did not decode (corrupt stream?)")
        return out

    def _iter_range(self, start: int, stop: int) -> Iterator[np.ndarray]:
        container = open_container(Path(self._ref.path))
        expected = start
        try:
            for index, frame in self._decode_from(container, start):
                if index != expected:
                    break
                yield upright(frame.to_ndarray(format="rgb24"), self._index.quarter_turns)
                expected += 1
                if expected == stop:
                    return
        except VideoError:
            raise
        except Exception as exc:  # decoder errors come as several PyAV types
            raise VideoError(f"{self._ref.path}: cannot decode frame {expected} ({one_line(exc)})") from exc
        finally:
            container.close()
        raise VideoError(f"{self._ref.path}: frame {expected} did not decode (corrupt stream?)")
