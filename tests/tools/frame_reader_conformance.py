"""The conformance suite every frame-reader backend must pass.

A backend joins by being listed in a parametrize list: subclass
:class:`FrameReaderConformance` in a test module and provide three fixtures,

- ``backend``: the name in ``revseg.tools.frames.FRAME_READERS`` (or ``"auto"``),
- ``video_path``: a clip the backend can read,
- ``reference``: that clip's frames decoded independently and sequentially
  (:func:`reference_frames`), the ground truth that random access must reproduce.

The suite pins down what the chain relies on: the frame count is what decodes, random
reads after seeks (forwards and backwards) return exactly the sequentially decoded
frame, repeats and order are honoured, streaming matches, and bad indices fail with a
VideoError naming the path. ``max_abs_diff`` is the allowed per-pixel difference from the
reference; decord and PyAV both decode with ffmpeg and agree exactly (0), a backend with
its own colour conversion may set a small tolerance.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from fractions import Fraction
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import pytest

from revseg.errors import VideoError
from revseg.tools.frames import FRAME_EXTENSIONS, FrameReader, natural_key, open_video


def synthetic_frame(index: int, width: int, height: int) -> np.ndarray:
    """A frame that differs visibly from its neighbours: gradients, a moving bar, a per-frame tint."""
    y, x = np.mgrid[0:height, 0:width]
    frame = np.stack(
        [x * 255 // max(width - 1, 1), y * 255 // max(height - 1, 1), np.full_like(x, (index * 37) % 256)], axis=-1
    ).astype(np.uint8)
    bar = (index * 7) % height
    frame[bar : bar + max(height // 8, 2)] = 255
    return frame


def write_clip(
    path: Path,
    num_frames: int,
    width: int,
    height: int,
    codec: str = "libx264",
    *,
    fps: int = 25,
    gop: int = 10,
    options: dict[str, str] | None = None,
) -> Path:
    """Encode ``num_frames`` synthetic frames with PyAV; the container follows the file suffix."""
    import av

    with av.open(str(path), "w") as container:
        stream: Any = container.add_stream(codec, rate=Fraction(fps))
        stream.width, stream.height, stream.pix_fmt = width, height, "yuv420p"
        stream.codec_context.gop_size = gop
        if options:
            stream.options = options
        for index in range(num_frames):
            frame = av.VideoFrame.from_ndarray(synthetic_frame(index, width, height), format="rgb24")
            for packet in stream.encode(frame):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)
    return path


def write_frame_folder(folder: Path, frames: list[np.ndarray], suffix: str = ".png", start: int = 0) -> Path:
    """Save frames as ``00000.png``-style files (JPEG at quality 95 for ``.jpg``)."""
    from PIL import Image

    folder.mkdir(parents=True, exist_ok=True)
    for offset, frame in enumerate(frames):
        Image.fromarray(frame).save(folder / f"{start + offset:05d}{suffix}", quality=95)
    return folder


def reference_frames(path: Path) -> list[np.ndarray]:
    """Decode a clip sequentially without revseg: PyAV for files, PIL for frame folders."""
    if path.is_dir():
        from PIL import Image

        files = sorted(
            (p for p in path.iterdir() if p.suffix.lower() in FRAME_EXTENSIONS), key=lambda p: natural_key(p.name)
        )
        return [np.asarray(Image.open(p).convert("RGB")) for p in files]
    import av

    with av.open(str(path)) as container:
        return [frame.to_ndarray(format="rgb24") for frame in container.decode(video=0)]


def _max_diff(a: np.ndarray, b: np.ndarray) -> int:
    assert a.shape == b.shape, f"shape {a.shape} != {b.shape}"
    return int(np.abs(a.astype(np.int16) - b.astype(np.int16)).max())


class FrameReaderConformance:
    """Tests every backend must pass; needs fixtures ``backend``, ``video_path`` and ``reference``."""

    max_abs_diff: ClassVar[int] = 0

    @pytest.fixture
    def reader(self, video_path: Path, backend: str) -> Iterator[FrameReader]:
        reader = open_video(video_path, backend=backend)
        yield reader
        reader.close()

    def assert_same(self, got: np.ndarray, want: np.ndarray, index: int) -> None:
        diff = _max_diff(got, want)
        assert diff <= self.max_abs_diff, f"frame {index}: max abs difference {diff} > {self.max_abs_diff}"

    def test_a_closed_reader_refuses_to_read_and_names_the_video(self, reader: FrameReader) -> None:
        reader.close()
        reader.close()  # closing twice is harmless
        message = re.escape(reader.ref.path) + ": frame reader is closed"
        with pytest.raises(ValueError, match=message):
            reader.read([0])
        with pytest.raises(ValueError, match=message):
            next(iter(reader.iter_frames(0, 1)))

    def test_ref_describes_what_decodes(self, reader: FrameReader, reference: list[np.ndarray], backend: str) -> None:
        ref = reader.ref
        assert ref.num_frames == len(reference)
        assert (ref.height, ref.width) == reference[0].shape[:2]
        assert backend == "auto" or ref.backend == backend
        assert ref.fps is None or ref.fps > 0

    def test_frames_are_rgb_uint8(self, reader: FrameReader) -> None:
        (frame,) = reader.read([0])
        assert frame.dtype == np.uint8
        assert frame.shape == (reader.ref.height, reader.ref.width, 3)
        assert frame.flags.writeable  # callers (trackers' preprocessing) may work in place

    def test_random_reads_match_sequential_decode(self, reader: FrameReader, reference: list[np.ndarray]) -> None:
        rng = np.random.default_rng(0)
        last = len(reference) - 1
        indices = [int(i) for i in rng.integers(0, len(reference), size=10)] + [last, 0, last]
        frames = reader.read(indices)
        assert len(frames) == len(indices)
        for index, frame in zip(indices, frames, strict=True):
            self.assert_same(frame, reference[index], index)

    def test_backward_seeks_are_frame_accurate(self, reader: FrameReader, reference: list[np.ndarray]) -> None:
        indices = sorted({len(reference) - 1, len(reference) // 2, len(reference) // 3, 1 % len(reference), 0})
        for index in reversed(indices):  # one read per index: every read after the first seeks backwards
            (frame,) = reader.read([index])
            self.assert_same(frame, reference[index], index)

    def test_read_keeps_the_order_asked(self, reader: FrameReader, reference: list[np.ndarray]) -> None:
        indices = list(range(len(reference)))[::-1][:6]
        for index, frame in zip(indices, reader.read(indices), strict=True):
            self.assert_same(frame, reference[index], index)

    def test_repeated_indices_are_independent_copies(self, reader: FrameReader) -> None:
        first, second = reader.read([0, 0])
        assert np.array_equal(first, second)
        assert not np.shares_memory(first, second)

    def test_empty_read_returns_nothing(self, reader: FrameReader) -> None:
        assert reader.read([]) == []

    def test_iter_frames_matches_sequential_decode(self, reader: FrameReader, reference: list[np.ndarray]) -> None:
        count = 0
        for index, frame in enumerate(reader.iter_frames()):
            self.assert_same(frame, reference[index], index)
            count += 1
        assert count == len(reference)

    def test_iter_frames_subrange(self, reader: FrameReader, reference: list[np.ndarray]) -> None:
        start, stop = len(reference) // 2, len(reference)
        frames = list(reader.iter_frames(start, stop))
        assert len(frames) == stop - start
        for offset, frame in enumerate(frames):
            self.assert_same(frame, reference[start + offset], start + offset)
        assert list(reader.iter_frames(start, start)) == []

    def test_a_reader_left_mid_stream_still_reads_exactly(
        self, reader: FrameReader, reference: list[np.ndarray]
    ) -> None:
        # One run lends one reader to the tracker, then the overlay, then the report (ResizedFrameCache.borrow);
        # a tracker that fails stops streaming half way.
        stream = reader.iter_frames()
        self.assert_same(next(stream), reference[0], 0)
        wanted = [len(reference) - 1, 0, len(reference) // 2]
        for index, frame in zip(wanted, reader.read(wanted), strict=True):
            self.assert_same(frame, reference[index], index)
        last = len(reference) - 1
        self.assert_same(next(iter(reader.iter_frames(last))), reference[last], last)

    def test_out_of_range_index_names_the_path(self, reader: FrameReader) -> None:
        for bad in (reader.ref.num_frames, -1):
            with pytest.raises(VideoError, match="out of range") as info:
                reader.read([0, bad])
            assert Path(reader.ref.path).name in str(info.value)

    def test_bad_range_raises_video_error(self, reader: FrameReader) -> None:
        with pytest.raises(VideoError):
            list(reader.iter_frames(0, reader.ref.num_frames + 1))
        with pytest.raises(VideoError):
            list(reader.iter_frames(1, 0))

    def test_read_after_close_raises(self, video_path: Path, backend: str) -> None:
        reader = open_video(video_path, backend=backend)
        reader.close()
        reader.close()  # idempotent
        with pytest.raises(ValueError, match="closed"):
            reader.read([0])
