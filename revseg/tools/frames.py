"""Frame access: one abstraction for sampling, the keyframe and tracking.

Every step of the chain reads frames through a :class:`FrameReader`: the sampler picks
16 indices, the policy sees them resized, the tracker streams the whole video and the
renderer streams it again. Readers come from :func:`open_video`, which picks a backend
from the plain dict :data:`FRAME_READERS`:

- ``folder``: a folder of JPEG/PNG frames (``JPEGImages/<video>/00000.jpg``), sorted
  naturally by the number in the file name.
- ``decord``: decord's ``VideoReader`` (``get_batch`` random access).
- ``pyav``: PyAV, seeking to the keyframe before a target and decoding forward.
- ``torchcodec``: torchcodec's ``VideoDecoder`` in exact seek mode, where it is installed
  and finds FFmpeg's shared libraries (4 to 9, on the system: PyAV's bundled copy does not
  count). torchcodec 0.17 imports without them and fails only at its first decoder, so
  :mod:`revseg.tools.readers.libraries` checks once per process; without them torchcodec
  declines and ``auto`` moves on.

The contract every reader keeps is written on :class:`FrameReader`; the backends live in
``revseg/tools/readers/``, one module each. Every file backend agrees with one shared PyAV
demux pass (``readers/probe.py``, cached per file) that counts frames, maps presentation
timestamps to indices and verifies the last group of pictures decodes. A new backend is a
class taking the path, registered with one line in :data:`FRAME_READERS` (and, for files,
in :data:`FILE_BACKENDS` to join ``auto``).
"""

from __future__ import annotations

import logging
import operator
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from revseg.errors import SpecError, VideoError

if TYPE_CHECKING:
    from PIL.Image import Image

from revseg.tools.readers.base import FRAME_EXTENSIONS, FrameReader, one_line
from revseg.tools.readers.decord import DecordReader
from revseg.tools.readers.folder import FolderReader, natural_key
from revseg.tools.readers.libraries import BackendUnavailable
from revseg.tools.readers.pyav import PyAVReader
from revseg.tools.readers.torchcodec import TorchCodecReader

__all__ = [
    "FILE_BACKENDS",
    "FRAME_EXTENSIONS",
    "FRAME_READERS",
    "BackendUnavailable",
    "FrameReader",
    "frame_names",
    "natural_key",
    "open_video",
    "reads_exactly",
    "resize_frame",
    "sample_indices",
    "stream_frames",
]

logger = logging.getLogger(__name__)

# --- registry and entry points ---------------------------------------------------------

FRAME_READERS: dict[str, Callable[[Path], FrameReader]] = {
    "folder": FolderReader,
    "decord": DecordReader,
    "pyav": PyAVReader,
    "torchcodec": TorchCodecReader,
}
"""Backend name -> factory taking the path. A new backend is one class plus one line here."""

FILE_BACKENDS: tuple[str, ...] = ("torchcodec", "pyav")
"""Order in which ``auto`` tries backends for video files (a folder always uses ``folder``).

Chosen by measurement (``benchmarks/bench_frames.py``, results in ``benchmarks/RESULTS.md``).
All backends return bit-identical frames on the test clips (seeks in both directions,
rotated and variable-frame-rate clips included). torchcodec decodes a 10-minute 480p
video in 3.7 s against PyAV's 11-21 s and holds 16 frames at a time; it is used where it
is installed and finds FFmpeg's shared libraries. PyAV reads everything else. decord is
not in the list: its decoder runs ahead on a thread to the end of the video and holds
what it decoded (1.3 GB after one read in the middle of a 3,000-frame 480p video), so its
reader re-opens per read and streams through PyAV, which leaves it no faster than PyAV.
"""


def open_video(path: str | Path, backend: str = "auto") -> FrameReader:
    """Open a video file or a folder of frames; raise VideoError naming the problem.

    ``backend`` is a key of :data:`FRAME_READERS` or ``auto``: ``folder`` for a folder,
    otherwise the first of :data:`FILE_BACKENDS` that can read the file (in measured
    order: torchcodec, PyAV). Errors are one line naming the
    path: missing, empty, not a video, truncated, mixed frame sizes. An unknown backend
    name raises SpecError.
    """
    file = Path(path).expanduser()
    if backend != "auto" and backend not in FRAME_READERS:
        raise SpecError(f"unknown frame reader '{backend}'; choose one of auto, {', '.join(FRAME_READERS)}")
    if not file.exists():
        raise VideoError(f"{file}: no such file or folder")
    if file.is_file() and file.stat().st_size == 0:
        raise VideoError(f"{file}: file is empty (0 bytes)")
    if backend != "auto":
        return _build(backend, file)
    if file.is_dir():
        return _build("folder", file)
    declined: list[str] = []
    for name in FILE_BACKENDS:
        try:
            return _build(name, file)
        except BackendUnavailable as exc:
            logger.info("frame reader %s declined %s: %s", name, file, exc)
            declined.append(str(exc))
    raise VideoError(f"{file}: no frame reader can read it: {'; '.join(declined)}")


def reads_exactly(path: str | Path, backend: str) -> bool:
    """True when ``backend`` opens ``path`` and so agrees with the probe (frame-accurate, upright), else False.

    For code that hands a file to a library decoding it on its own (sam2 reads mp4 with
    decord): it may only do so where revseg's reader for that library accepts the file.
    """
    try:
        open_video(path, backend).close()
    except VideoError:
        return False
    return True


def _build(name: str, path: Path) -> FrameReader:
    """Call a backend factory; anything it raises that is not a VideoError becomes one."""
    try:
        return FRAME_READERS[name](path)
    except VideoError:
        raise
    except Exception as exc:  # a backend bug must still surface as one line naming the file
        reason = f"{type(exc).__name__}: {one_line(exc)}"
        raise VideoError(f"{path}: the {name} frame reader failed ({reason})") from exc


def frame_names(reader: FrameReader) -> list[str]:
    """Names for per-frame outputs: the source file stems for frame folders, else ``00000``, ``00001``, ...

    Masks written under these names line up with the benchmark's own frame files.
    """
    names = getattr(reader, "frame_names", None)
    if isinstance(names, list) and len(names) == reader.ref.num_frames:
        return [str(n) for n in names]
    return [f"{i:05d}" for i in range(reader.ref.num_frames)]


def stream_frames(
    reader: FrameReader, start: int = 0, stop: int | None = None, *, progress: bool = False, desc: str | None = None
) -> Iterator[np.ndarray]:
    """``reader.iter_frames(start, stop)``, with a tqdm bar when ``progress`` is true.

    Kept outside the protocol so every backend gets the bar for free; tqdm is imported
    only when asked for.
    """
    frames = reader.iter_frames(start, stop)
    if not progress:
        return frames
    from tqdm.auto import tqdm

    end = reader.ref.num_frames if stop is None else stop
    return iter(tqdm(frames, total=end - start, desc=desc or Path(reader.ref.path).name, unit="frame"))


def sample_indices(num_frames: int, n: int) -> list[int]:
    """``round(linspace(0, T-1, n))``: n uniformly spaced frame indices, repeats when T < n.

    Rounding is numpy's half-to-even (``linspace(0, 3, 3)`` = 0, 1.5, 3 gives 0, 2, 3),
    so a replay on another machine picks the same frames. The first and last frames are
    always included (for n > 1); T == 1 gives ``[0] * n``. ValueError for n < 1 or T < 1.
    """
    num_frames, n = operator.index(num_frames), operator.index(n)
    if num_frames < 1:
        raise ValueError(f"cannot sample from a video with {num_frames} frames")
    if n < 1:
        raise ValueError(f"number of frames to sample must be at least 1, got {n}")
    return [int(i) for i in np.round(np.linspace(0, num_frames - 1, n))]


def resize_frame(frame: np.ndarray, size: tuple[int, int]) -> Image:
    """Resize an RGB frame to (width, height) exactly (aspect not kept, as the paper does).

    Bicubic, as the paper squashes every frame to 448x448 (turn 1) and the keyframe to
    840x840 (turn 2) regardless of the video's aspect ratio.
    """
    from PIL import Image as PILImage

    width, height = (operator.index(v) for v in size)
    if width < 1 or height < 1:
        raise ValueError(f"resize size must be positive (width, height), got {size}")
    if frame.ndim != 3 or frame.shape[2] != 3 or frame.dtype != np.uint8:
        raise ValueError(f"expected an RGB uint8 frame of shape (H, W, 3), got {frame.dtype} {frame.shape}")
    image = PILImage.fromarray(np.ascontiguousarray(frame))
    if image.size == (width, height):
        return image
    return image.resize((width, height), PILImage.Resampling.BICUBIC)
