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
  and finds the FFmpeg libraries it loads at run time (4 to 8; PyAV's bundled copy does
  not count); otherwise it declines and ``auto`` moves on.

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

Both file backends share one PyAV demux pass (:func:`_probe_file`, cached per file) that
counts frames, maps presentation timestamps to indices and verifies the last group of
pictures decodes; the decord backend then only has to agree with it. A new backend is a
class taking the path, registered with one line in :data:`FRAME_READERS` (and, for files,
in :data:`FILE_BACKENDS` to join ``auto``).
"""

from __future__ import annotations

import bisect
import logging
import operator
import re
import threading
from collections import OrderedDict
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar, Protocol, runtime_checkable

import numpy as np

from revseg.errors import SpecError, VideoError
from revseg.tools.video_libraries import BackendUnavailable, library
from revseg.trajectory import VideoRef

if TYPE_CHECKING:
    from PIL.Image import Image

logger = logging.getLogger(__name__)

FRAME_EXTENSIONS = (".jpg", ".jpeg", ".png")
"""File suffixes a frame folder may hold (case-insensitive); anything else is ignored."""


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


def _one_line(exc: BaseException) -> str:
    """A library error as one short line: decord adds a timestamp, source line and C++ stack trace, PyAV the errno."""
    strerror = getattr(exc, "strerror", None)
    text = strerror if isinstance(strerror, str) and strerror else str(exc).strip()
    text = text.splitlines()[0] if text else type(exc).__name__
    return re.sub(r"^\[[\d:]+\] \S+:\d+: ", "", text)[:200]


# --- shared reader logic ---------------------------------------------------------------


class _BaseReader:
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

    def __enter__(self) -> _BaseReader:
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


# --- folder of frames ------------------------------------------------------------------


def natural_key(name: str) -> tuple[tuple[int, int | str], ...]:
    """Sort key that orders ``2.jpg`` before ``10.jpg``: digit runs compare as numbers."""
    parts = re.split(r"(\d+)", name)
    return tuple((0, int(p)) if p.isdigit() else (1, p.lower()) for p in parts if p)


class FolderReader(_BaseReader):
    """A folder of JPEG/PNG frames, the way benchmarks ship videos.

    Files are sorted naturally by name (hidden files such as macOS ``._00000.jpg`` are
    skipped); every frame must have the same size, checked from the image headers at
    open so a bad folder fails before any model runs. ``frame_names`` are the file
    stems, so outputs can be named like the source frames.
    """

    backend: ClassVar[str] = "folder"

    def __init__(self, path: str | Path) -> None:
        from PIL import Image, UnidentifiedImageError

        folder = Path(path)
        if not folder.is_dir():
            raise VideoError(f"{folder}: the folder backend reads a folder of frames, not a file")
        files = sorted(
            (p for p in folder.iterdir() if p.suffix.lower() in FRAME_EXTENSIONS and not p.name.startswith(".")),
            key=lambda p: natural_key(p.name),
        )
        if not files:
            subfolders = sum(1 for p in folder.iterdir() if p.is_dir())
            hint = f"; it holds {subfolders} subfolders: pass one video's folder" if subfolders else ""
            raise VideoError(f"{folder}: no frames in folder (expected {', '.join(FRAME_EXTENSIONS)} files){hint}")
        size: tuple[int, int] | None = None
        for file in files:
            try:
                with Image.open(file) as image:
                    file_size = image.size
            except (OSError, UnidentifiedImageError) as exc:
                raise VideoError(f"{file}: not a readable image ({_one_line(exc)})") from exc
            if size is None:
                size = file_size
            elif file_size != size:
                raise VideoError(
                    f"{file}: frame size {file_size[0]}x{file_size[1]} differs from {size[0]}x{size[1]}"
                    f" of {files[0].name}; all frames of a video must have one size"
                )
        assert size is not None
        self._files = files
        super().__init__(
            VideoRef(
                path=str(folder), num_frames=len(files), width=size[0], height=size[1], fps=None, backend=self.backend
            )
        )

    @property
    def frame_names(self) -> list[str]:
        """File stems in frame order (``00000`` for ``00000.jpg``)."""
        return [p.stem for p in self._files]

    def _load(self, index: int) -> np.ndarray:
        from PIL import Image, UnidentifiedImageError

        file = self._files[index]
        try:
            with Image.open(file) as image:
                frame = np.array(image.convert("RGB"))  # writable, like the decoders' frames
        except (OSError, UnidentifiedImageError) as exc:
            raise VideoError(f"{file}: cannot decode frame {index} ({_one_line(exc)})") from exc
        if frame.shape[:2] != (self._ref.height, self._ref.width):
            raise VideoError(f"{file}: decoded size {frame.shape[1]}x{frame.shape[0]} differs from its header")
        return frame

    def _read_sorted(self, indices: list[int]) -> dict[int, np.ndarray]:
        return {i: self._load(i) for i in indices}

    def _iter_range(self, start: int, stop: int) -> Iterator[np.ndarray]:
        for index in range(start, stop):
            yield self._load(index)


# --- the shared PyAV probe -------------------------------------------------------------

SEEKABLE_FORMATS = frozenset({"mov", "mp4", "matroska", "webm", "avi"})
"""Containers with an index that makes keyframe seeks exact. Others (MPEG-TS/PS, raw H.264,
...) are read by decoding from the start, and decord, whose seeks return wrong frames
on them, declines them."""

_FINGERPRINT_SIDE = 8
_FINGERPRINT_TOLERANCE = 4


@dataclass(frozen=True)
class _StreamIndex:
    """What one probe learnt about a file's first video stream.

    ``pts`` holds the presentation timestamp of frame i at position i (display order);
    ``keyframes`` the indices where decoding may start. ``pts`` is None when seeking
    cannot be trusted (no timestamps, or a container without an index): then readers
    decode from the start and count. ``last_frame`` is a coarse fingerprint of the last
    frame (upright), which other backends' random access must reproduce.
    ``quarter_turns`` is the display rotation (counter-clockwise, in 90-degree steps)
    that readers apply; ``width`` and ``height`` are the upright size.
    """

    num_frames: int
    width: int
    height: int
    fps: float | None
    declared: int
    format: str
    pts: tuple[int, ...] | None
    keyframes: tuple[int, ...]
    last_frame: tuple[int, ...]
    quarter_turns: int = 0

    @property
    def seekable(self) -> bool:
        """True when frames are addressed by pts and keyframe seeks are exact."""
        return self.pts is not None


def fingerprint(frame: np.ndarray) -> tuple[int, ...]:
    """An 8x8 box-filtered thumbnail of an RGB frame: tells frames apart, ignores 1-LSB decoder noise."""
    from PIL import Image as PILImage

    thumb = PILImage.fromarray(np.ascontiguousarray(frame)).resize(
        (_FINGERPRINT_SIDE, _FINGERPRINT_SIDE), PILImage.Resampling.BOX
    )
    return tuple(int(v) for v in np.asarray(thumb).ravel())


def _same_frame(a: tuple[int, ...], b: tuple[int, ...]) -> bool:
    return (
        len(a) == len(b) and max((abs(x - y) for x, y in zip(a, b, strict=True)), default=0) <= _FINGERPRINT_TOLERANCE
    )


def _import_av() -> Any:
    return library("pyav")


def quarter_turns(frame: Any) -> int:
    """A decoded PyAV frame's display rotation as counter-clockwise quarter turns, 0..3.

    PyAV reads the display matrix (an MP4 ``tkhd`` matrix, as phones write for portrait
    video) into ``frame.rotation`` in degrees counter-clockwise, the convention
    torchcodec and ffmpeg's autorotate follow; older PyAV without it reads as 0.
    """
    degrees = float(getattr(frame, "rotation", 0) or 0)
    return round(degrees / 90) % 4


def upright(frame: np.ndarray, turns: int) -> np.ndarray:
    """Rotate an (H, W, C) frame counter-clockwise by ``turns`` quarter turns (a writable copy when turned)."""
    return np.ascontiguousarray(np.rot90(frame, turns)) if turns % 4 else frame


def _upright_size(width: int, height: int, turns: int) -> tuple[int, int]:
    return (height, width) if turns % 2 else (width, height)


def _open_container(path: Path) -> Any:
    """``av.open`` with every failure turned into a one-line VideoError."""
    av = _import_av()
    try:
        container = av.open(str(path))
    except Exception as exc:  # PyAV raises FFmpegError, OSError, ValueError, ...
        hint = ""
        with path.open("rb") as head:
            if head.read(8)[4:8] == b"ftyp":
                hint = "; it starts like an MP4/MOV but its index cannot be read: truncated or damaged download?"
        raise VideoError(f"{path}: not a readable video ({_one_line(exc)}){hint}") from exc
    if not container.streams.video:
        container.close()
        raise VideoError(f"{path}: the file has no video stream")
    return container


def _probe_file(path: Path) -> _StreamIndex:
    """Index the first video stream of ``path``; cached per (path, size, mtime)."""
    stat = path.stat()
    return _probe_cached(str(path.resolve()), stat.st_size, stat.st_mtime_ns)


@lru_cache(maxsize=32)
def _probe_cached(path_str: str, size: int, mtime_ns: int) -> _StreamIndex:
    path = Path(path_str)
    container = _open_container(path)
    try:
        return _index_stream(path, container)
    finally:
        container.close()


def _index_stream(path: Path, container: Any) -> _StreamIndex:
    """Demux every packet (no decoding), then decode the last group of pictures to verify it.

    The demux pass gives the frame count and the pts -> index map that makes seeking
    frame-accurate; a packet flagged corrupt means the file ends inside a frame
    (truncated). Decoding the last GOP proves the count: frames the container lists but
    the decoder never produces are dropped from the index. Streams whose seeks cannot be
    trusted are counted by decoding them whole instead.
    """
    stream = container.streams.video[0]
    declared = int(stream.frames or 0)
    format_name = str(container.format.name)
    stamps, key_stamps = _demux_stamps(path, container, declared)
    tail = None
    seekable = bool(SEEKABLE_FORMATS & set(format_name.split(",")))
    if seekable and None not in stamps and len(set(stamps)) == len(stamps):
        pts = sorted(s for s in stamps if s is not None)
        position = {p: i for i, p in enumerate(pts)}
        keys = sorted({position[s] for s in key_stamps if s is not None} | {0})
        tail = _decode_tail(path, container, pts, keys)
    if tail is not None:
        pts = pts[: keys[-1]] + tail.pts
        num_frames, index_pts, index_keys = len(pts), tuple(pts), tuple(keys)
    else:
        tail = _count_by_decoding(path)
        num_frames, index_pts, index_keys = tail.count, None, (0,)
    if declared and num_frames != declared:
        logger.warning(
            "%s: container lists %d frames but %d decode; serving the %d that decode",
            path,
            declared,
            num_frames,
            num_frames,
        )
    rate = stream.average_rate or stream.guessed_rate
    return _StreamIndex(
        num_frames=num_frames,
        width=tail.size[0],
        height=tail.size[1],
        fps=float(rate) if rate else None,
        declared=declared,
        format=format_name,
        pts=index_pts,
        keyframes=index_keys,
        last_frame=tail.last_frame,
        quarter_turns=tail.quarter_turns,
    )


def _demux_stamps(path: Path, container: Any, declared: int) -> tuple[list[int | None], list[int | None]]:
    """Timestamps of every frame packet and of the keyframe packets, in file order."""
    stamps: list[int | None] = []
    key_stamps: list[int | None] = []
    try:
        for packet in container.demux(container.streams.video[0]):
            if packet.size == 0 or packet.is_discard:
                continue
            if packet.is_corrupt:
                raise VideoError(
                    f"{path}: file is truncated or corrupt: its data ends inside frame {len(stamps)}"
                    f" (container lists {declared or 'an unknown number of'} frames); re-download or re-encode it"
                )
            stamp = packet.pts if packet.pts is not None else packet.dts
            stamps.append(stamp)
            if packet.is_keyframe:
                key_stamps.append(stamp)
    except VideoError:
        raise
    except Exception as exc:  # demuxer errors come as several PyAV types
        raise VideoError(f"{path}: corrupt video data after frame {len(stamps)} ({_one_line(exc)})") from exc
    if not stamps:
        raise VideoError(f"{path}: the video stream has no frames")
    return stamps, key_stamps


@dataclass(frozen=True)
class _Tail:
    """What decoding the end of a stream showed: pts that decoded (or a count), size, last frame."""

    pts: list[int]
    count: int
    size: tuple[int, int]
    last_frame: tuple[int, ...]
    quarter_turns: int = 0


def _seek_decode(
    container: Any, pts: Sequence[int], pts_index: dict[int, int], keyframes: Sequence[int], start: int
) -> Iterator[tuple[int, Any]]:
    """Yield (index, frame) for frames ``start`` onwards, seeking to the keyframe before ``start``.

    A seek that lands after the wanted keyframe (demuxers may snap to the next one) is
    retried from the keyframe before, then from the first frame: slower, never wrong.
    Frames before ``start`` (and open-GOP leading frames) are skipped.
    """
    stream = container.streams.video[0]
    position = bisect.bisect_right(keyframes, start) - 1
    for key in dict.fromkeys((keyframes[position], keyframes[max(position - 1, 0)], 0)):
        container.seek(pts[key], stream=stream, backward=True, any_frame=False)
        first = True
        for frame in container.decode(stream):
            index = pts_index.get(frame.pts) if frame.pts is not None else None
            if index is None:
                continue
            if first and index > key:
                break  # landed too late: retry from further back
            first = False
            if index >= start:
                yield index, frame
        else:
            return


def _decode_tail(path: Path, container: Any, pts: list[int], keys: list[int]) -> _Tail | None:
    """Decode from the last keyframe to the end; None when the decoder's timestamps do not match the packets.

    Decoder errors here mean a damaged tail: VideoError.
    """
    pts_index = {p: i for i, p in enumerate(pts)}
    decoded: list[int] = []
    last = None
    try:
        for index, frame in _seek_decode(container, pts, pts_index, keys, keys[-1]):
            decoded.append(pts[index])
            last = frame
    except Exception as exc:  # decoder errors come as several PyAV types
        raise VideoError(
            f"{path}: file is truncated or corrupt: frames after {keys[-1] + len(decoded)} do not decode"
            f" ({_one_line(exc)}); re-download or re-encode it"
        ) from exc
    if last is None:
        return None
    turns = quarter_turns(last)
    return _Tail(
        pts=sorted(set(decoded)),
        count=len(decoded),
        size=_upright_size(last.width, last.height, turns),
        last_frame=fingerprint(upright(last.to_ndarray(format="rgb24"), turns)),
        quarter_turns=turns,
    )


def _count_by_decoding(path: Path) -> _Tail:
    """Fallback for streams without trustworthy seeking: decode everything and count."""
    container = _open_container(path)
    count = 0
    last = None
    try:
        for frame in container.decode(container.streams.video[0]):
            last = frame
            count += 1
    except Exception as exc:  # decoder errors come as several PyAV types
        raise VideoError(f"{path}: corrupt video data after frame {count} ({_one_line(exc)})") from exc
    finally:
        container.close()
    if last is None:
        raise VideoError(f"{path}: no frame of the video decodes")
    turns = quarter_turns(last)
    return _Tail(
        pts=[],
        count=count,
        size=_upright_size(last.width, last.height, turns),
        last_frame=fingerprint(upright(last.to_ndarray(format="rgb24"), turns)),
        quarter_turns=turns,
    )


def _file_ref(path: Path, index: _StreamIndex, backend: str) -> VideoRef:
    return VideoRef(
        path=str(path),
        num_frames=index.num_frames,
        width=index.width,
        height=index.height,
        fps=index.fps,
        backend=backend,
    )


def _check_file(path: Path, backend: str) -> Path:
    if path.is_dir():
        raise VideoError(f"{path}: the {backend} backend reads video files; use backend='folder' for frame folders")
    return path


# --- PyAV ------------------------------------------------------------------------------


class PyAVReader(_BaseReader):
    """PyAV decoding: seek to the keyframe before a target, decode forward, map pts to indices.

    ``read`` decodes the sorted unique targets in one pass, seeking forward only when a
    keyframe lies between the current position and the next target. Streams without
    trustworthy seeking (see :data:`SEEKABLE_FORMATS`) are decoded from the start on
    every call. Every call opens its own container, so a running ``iter_frames`` and a
    ``read`` never disturb each other.
    """

    backend: ClassVar[str] = "pyav"

    def __init__(self, path: str | Path) -> None:
        file = _check_file(Path(path), self.backend)
        self._index = _probe_file(file)
        self._pts_index = {p: i for i, p in enumerate(self._index.pts or ())}
        super().__init__(_file_ref(file, self._index, self.backend))

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
        yield from _seek_decode(container, self._index.pts, self._pts_index, self._index.keyframes, start)

    def _read_sorted(self, indices: list[int]) -> dict[int, np.ndarray]:
        out: dict[int, np.ndarray] = {}
        container = _open_container(Path(self._ref.path))
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
            raise VideoError(f"{self._ref.path}: cannot decode frames {indices[:8]} ({_one_line(exc)})") from exc
        finally:
            container.close()
        missing = [i for i in indices if i not in out]
        if missing:
            raise VideoError(f"{self._ref.path}: frame {missing[0]} did not decode (corrupt stream?)")
        return out

    def _iter_range(self, start: int, stop: int) -> Iterator[np.ndarray]:
        container = _open_container(Path(self._ref.path))
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
            raise VideoError(f"{self._ref.path}: cannot decode frame {expected} ({_one_line(exc)})") from exc
        finally:
            container.close()
        raise VideoError(f"{self._ref.path}: frame {expected} did not decode (corrupt stream?)")


# --- decord ----------------------------------------------------------------------------


class DecordReader(_BaseReader):
    """decord's ``VideoReader``: fast ``get_batch`` random access.

    decord has known faults: frame counts that disagree with what decodes, hangs on
    damaged files, seeks that return the wrong frame in containers without an index
    (MPEG-PS), a size bug that fails some frame sizes (48x96), no AV1. So the file is
    first validated by the shared PyAV probe, and decord must agree with it: a seekable
    container, the same frame count, and a random read of the last frame (after frame 0)
    that matches the probe's fingerprint. Otherwise decord declines (BackendUnavailable)
    and ``auto`` moves on to PyAV. The agreement check runs once per file and process.
    Whole ranges (``iter_frames``) stream through PyAV, in bounded memory (see ``_iter_range``).
    """

    backend: ClassVar[str] = "decord"

    def __init__(self, path: str | Path) -> None:
        file = _check_file(Path(path), self.backend)
        decord = library("decord")
        index = _probe_file(file)
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
            self._vr = decord.VideoReader(str(file), ctx=decord.cpu(0))
        except Exception as exc:  # decord raises DECORDError, RuntimeError, ...
            raise BackendUnavailable(f"{file}: decord cannot read it ({_one_line(exc)}); use backend='pyav'") from exc
        super().__init__(_file_ref(file, index, self.backend))
        self._streamer: PyAVReader | None = None
        stat = file.stat()
        _decord_agrees(self, index, (str(file.resolve()), stat.st_size, stat.st_mtime_ns))

    def _batch(self, indices: list[int]) -> np.ndarray:
        try:
            return self._vr.get_batch(indices).asnumpy()
        except Exception as exc:  # decord raises DECORDError, RuntimeError, ...
            raise VideoError(f"{self._ref.path}: decord cannot decode frames {indices[:8]} ({_one_line(exc)})") from exc

    def _read_sorted(self, indices: list[int]) -> dict[int, np.ndarray]:
        batch = self._batch(indices)
        return {index: batch[k] for k, index in enumerate(indices)}

    def _iter_range(self, start: int, stop: int) -> Iterator[np.ndarray]:
        """Stream through PyAV's decoder, which decodes the same pixels on every file decord accepts.

        Not through decord: its ``VideoReader`` decodes ahead on a thread of its own, to the
        end of the video, and holds every frame until it is taken. When the consumer is
        slower than the decoder (a tracker at 30 ms a frame) a whole-video pass holds most
        of the video: +1.2 GB for 1,500 frames at 480p, measured through ``next`` with one
        or all threads; ``get_batch`` keeps what it decoded until the reader is dropped.
        PyAV decodes only what is asked for, at 0.5-0.8x decord's streaming speed. decord
        keeps what it is good at: random access (``read``) for sampling and keyframes.
        """
        if self._streamer is None:
            self._streamer = PyAVReader(self._ref.path)
        return self._streamer._iter_range(start, stop)

    def close(self) -> None:
        """Drop decord's reader (it holds the demuxer and decoder)."""
        if not self._closed:
            del self._vr
        super().close()


_DECORD_AGREED: set[tuple[str, int, int]] = set()


def _decord_agrees(reader: DecordReader, index: _StreamIndex, identity: tuple[str, int, int]) -> None:
    """Raise BackendUnavailable unless decord counts, sizes and seeks like the probe (checked once per file)."""
    if identity in _DECORD_AGREED:
        return
    path = reader.ref.path
    count = len(reader._vr)
    if count != index.num_frames:
        raise BackendUnavailable(
            f"{path}: decord counts {count} frames but {index.num_frames} decode; use backend='pyav'"
        )
    try:
        first = reader._vr.get_batch([0]).asnumpy()
        last = reader._vr.get_batch([count - 1]).asnumpy()
    except Exception as exc:  # decord raises DECORDError, RuntimeError, ...
        raise BackendUnavailable(f"{path}: decord cannot read it ({_one_line(exc)}); use backend='pyav'") from exc
    if first.shape != (1, index.height, index.width, 3) or last.shape != first.shape:
        raise BackendUnavailable(
            f"{path}: decord decodes frames of shape {first.shape[1:]}, expected"
            f" {(index.height, index.width, 3)}; use backend='pyav'"
        )
    if not _same_frame(fingerprint(last[0]), index.last_frame):
        raise BackendUnavailable(
            f"{path}: decord's seek to the last frame returns a different frame; use backend='pyav'"
        )
    _DECORD_AGREED.add(identity)


# --- torchcodec ------------------------------------------------------------------------

_TORCHCODEC_CHUNK = 16
"""Frames per ``get_frames_in_range`` while streaming."""


class TorchCodecReader(_BaseReader):
    """torchcodec's ``VideoDecoder`` (exact seek mode): batched random access and streaming.

    Like decord it must agree with the shared PyAV probe before it serves a file (same
    count, same upright size, the same last frame after a random seek), so a file it
    would read differently is left to PyAV. torchcodec applies the display rotation
    itself, as every revseg reader does. One decoding thread, like the other backends.
    """

    backend: ClassVar[str] = "torchcodec"

    def __init__(self, path: str | Path) -> None:
        file = _check_file(Path(path), self.backend)
        index = _probe_file(file)  # first, so a broken file fails the same way whether torchcodec loads or not
        decoder_class = library("torchcodec")
        if not index.seekable:
            raise BackendUnavailable(
                f"{file}: torchcodec's seeks are not checked for {index.format} streams; use backend='pyav'"
            )
        try:
            self._decoder = decoder_class(str(file), seek_mode="exact", dimension_order="NHWC", num_ffmpeg_threads=1)
        except Exception as exc:  # torchcodec raises RuntimeError/ValueError for files it cannot open
            reason = _one_line(exc)
            raise BackendUnavailable(f"{file}: torchcodec cannot read it ({reason}); use backend='pyav'") from exc
        super().__init__(_file_ref(file, index, self.backend))
        stat = file.stat()
        _torchcodec_agrees(self, index, (str(file.resolve()), stat.st_size, stat.st_mtime_ns))

    def _frames_at(self, indices: list[int]) -> np.ndarray:
        try:
            return np.asarray(self._decoder.get_frames_at(indices).data.numpy())
        except Exception as exc:  # torchcodec raises RuntimeError, IndexError, ...
            raise VideoError(
                f"{self._ref.path}: torchcodec cannot decode frames {indices[:8]} ({_one_line(exc)})"
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
                    f" ({_one_line(exc)})"
                ) from exc
            yield from batch

    def close(self) -> None:
        """Drop torchcodec's decoder (it holds the demuxer and decoder)."""
        if not self._closed:
            del self._decoder
        super().close()


_TORCHCODEC_AGREED: set[tuple[str, int, int]] = set()


def _torchcodec_agrees(reader: TorchCodecReader, index: _StreamIndex, identity: tuple[str, int, int]) -> None:
    """Raise BackendUnavailable unless torchcodec counts, sizes and seeks like the probe (checked once per file)."""
    if identity in _TORCHCODEC_AGREED:
        return
    path = reader.ref.path
    count = reader._decoder.metadata.num_frames
    if count != index.num_frames:
        raise BackendUnavailable(
            f"{path}: torchcodec counts {count} frames but {index.num_frames} decode; use backend='pyav'"
        )
    first = reader._frames_at([0])
    last = reader._frames_at([count - 1])
    if first.shape != (1, index.height, index.width, 3) or last.shape != first.shape:
        raise BackendUnavailable(
            f"{path}: torchcodec decodes frames of shape {first.shape[1:]}, expected"
            f" {(index.height, index.width, 3)}; use backend='pyav'"
        )
    if not _same_frame(fingerprint(last[0]), index.last_frame):
        raise BackendUnavailable(
            f"{path}: torchcodec's seek to the last frame returns a different frame; use backend='pyav'"
        )
    _TORCHCODEC_AGREED.add(identity)


# --- registry and entry points ---------------------------------------------------------

FRAME_READERS: dict[str, Callable[[Path], FrameReader]] = {
    "folder": FolderReader,
    "decord": DecordReader,
    "pyav": PyAVReader,
    "torchcodec": TorchCodecReader,
}
"""Backend name -> factory taking the path. A new backend is one class plus one line here."""

FILE_BACKENDS: tuple[str, ...] = ("torchcodec", "decord", "pyav")
"""Order in which ``auto`` tries backends for video files (a folder always uses ``folder``).

Chosen by measurement (``benchmarks/bench_frames.py``, results in ``benchmarks/RESULTS.md``).
All three return bit-identical frames on the test clips (seeks in both directions,
rotated and variable-frame-rate clips included). Ranked by a chain run's decoding work,
opening and sampling 16 frames cold and then one whole pass for tracking, on a 10-minute
480p video: torchcodec 4.0 s (0.29 s + 3.7 s), decord 6.7 s (0.57 s + 6.2 s), PyAV 21.7 s
(0.28 s + 21.4 s: as fast to sample, but its per-frame RGB conversion is slow; 11-21 s
across runs on the shared machine, always last). torchcodec is used where it is
installed and finds FFmpeg's libraries (it brings torch with it, about 3 s to import,
which the chain loads for its models anyway); decord where it agrees with the probe;
PyAV reads everything else.
"""


def open_video(path: str | Path, backend: str = "auto") -> FrameReader:
    """Open a video file or a folder of frames; raise VideoError naming the problem.

    ``backend`` is a key of :data:`FRAME_READERS` or ``auto``: ``folder`` for a folder,
    otherwise the first of :data:`FILE_BACKENDS` that can read the file (in measured
    order: torchcodec, decord, PyAV). Errors are one line naming the
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
        raise VideoError(f"{path}: the {name} frame reader failed ({type(exc).__name__}: {_one_line(exc)})") from exc


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


class ResizedFrameCache:
    """Resized frames shared by every run of an agent, so no frame is decoded or resized twice.

    Turn 2 replays turn 1's frames, and a batch's queries often share a video (a group of
    rollouts, a benchmark's expressions), so one cache serves them all. Keys are (path,
    file identity, backend, frame index, size); the file identity (size and mtime) means
    a rewritten video is never served stale. At most ``max_frames`` images and
    ``max_bytes`` of pixels are kept, least recently used first out.

    Thread-safe: :meth:`read` decodes outside the cache's lock, one decoder per video at a
    time, so concurrent runs on different videos decode in parallel and concurrent runs on
    the same video wait for one decode instead of repeating it. The ``max_open`` most
    recently used videos stay open (opening one costs 15-20 ms of probing), so a run's
    probe, turn-1 frames and keyframe open it once. Returned images are the cached
    objects, shared by every caller: treat them as read-only (equal objects then also let
    a policy reuse an image's encoding).
    """

    def __init__(self, max_frames: int = 8192, max_bytes: int = 1024 * 2**20, max_open: int = 16) -> None:
        if max_frames < 1 or max_open < 1:
            raise ValueError(f"max_frames and max_open must be at least 1, got {max_frames} and {max_open}")
        self.max_frames = max_frames
        self.max_bytes = max_bytes
        self.max_open = max_open
        self._items: OrderedDict[_FrameKey, Image] = OrderedDict()
        self._bytes = 0
        self._refs: OrderedDict[_VideoKey, VideoRef] = OrderedDict()
        self._readers: OrderedDict[_VideoKey, FrameReader] = OrderedDict()
        self._lock = threading.Lock()
        self._video_locks: dict[tuple[str, str], threading.Lock] = {}
        self.hits = 0
        self.misses = 0

    def __len__(self) -> int:
        return len(self._items)

    def probe(self, path: str | Path, backend: str = "auto") -> VideoRef:
        """The video's reference (frame count, size, fps, backend), opening it only the first time."""
        path, identity = _file_identity(path)
        key: _VideoKey = (path, backend, identity)
        with self._lock:
            ref = self._refs.get(key)
        if ref is not None:
            return ref
        with self._video_lock(path, backend):
            ref = self._reader(key).ref
        with self._lock:
            self._refs[key] = ref
            while len(self._refs) > _MAX_REFS:
                self._refs.popitem(last=False)
        return ref

    def read(
        self, path: str | Path, indices: Sequence[int], size: tuple[int, int], backend: str = "auto"
    ) -> list[Image]:
        """Frames ``indices`` of the video at ``path`` resized to ``size``; opens the video only on a miss."""
        path, identity = _file_identity(path)
        size = (operator.index(size[0]), operator.index(size[1]))
        keys = [(path, identity, backend, operator.index(i), size) for i in indices]
        found = self._lookup(keys)
        fresh: dict[_FrameKey, Image] = {}
        if len(found) < len(set(keys)):
            with self._video_lock(path, backend):
                found = self._lookup(keys)  # another run may have decoded them while we waited
                missing = sorted({key[3] for key in keys if key not in found})
                if missing:
                    decoded = self._reader((path, backend, identity)).read(missing)
                    fresh = {
                        (path, identity, backend, i, size): resize_frame(f, size)
                        for i, f in zip(missing, decoded, strict=True)
                    }
                    self._store(fresh)
                    found.update(fresh)
        with self._lock:  # each asked frame counts once: a miss when this call decoded it, else a hit
            self.misses += len(fresh)
            self.hits += sum(1 for key in keys if key not in fresh)
        return [found[key] for key in keys]

    def get(self, reader: FrameReader, indices: Sequence[int], size: tuple[int, int]) -> list[Image]:
        """Frames ``indices`` of an open ``reader`` resized to ``size``; decodes only the ones not cached."""
        ref = reader.ref
        size = (operator.index(size[0]), operator.index(size[1]))
        keys: list[_FrameKey] = [(ref.path, None, ref.backend, operator.index(i), size) for i in indices]
        found = self._lookup(keys)
        missing = sorted({key[3] for key in keys if key not in found})
        fresh: dict[_FrameKey, Image] = {}
        if missing:
            fresh = {
                (ref.path, None, ref.backend, i, size): resize_frame(f, size)
                for i, f in zip(missing, reader.read(missing), strict=True)
            }
            self._store(fresh)
            found.update(fresh)
        with self._lock:
            self.misses += len(fresh)
            self.hits += sum(1 for key in keys if key not in fresh)
        return [found[key] for key in keys]

    def clear(self) -> None:
        """Forget every cached frame and video reference, and close the open videos."""
        with self._lock:
            self._items.clear()
            self._refs.clear()
            self._bytes = 0
            readers, self._readers = list(self._readers.values()), OrderedDict()
        for reader in readers:
            reader.close()

    close = clear

    def _reader(self, key: _VideoKey) -> FrameReader:
        """The open reader of a video (opening it when needed); the caller holds the video's lock."""
        with self._lock:
            reader = self._readers.get(key)
            if reader is not None:
                self._readers.move_to_end(key)
                return reader
        reader = open_video(key[0], backend=key[1])
        with self._lock:
            self._readers[key] = reader
            idle = [k for k in self._readers if k != key][: max(0, len(self._readers) - self.max_open)]
        for old in idle:  # close least recently used videos that no thread is reading now
            lock = self._video_lock(old[0], old[1])
            if lock.acquire(blocking=False):
                try:
                    with self._lock:
                        stale = self._readers.pop(old, None)
                    if stale is not None:
                        stale.close()
                finally:
                    lock.release()
        return reader

    def _lookup(self, keys: Sequence[_FrameKey]) -> dict[_FrameKey, Image]:
        found: dict[_FrameKey, Image] = {}
        with self._lock:
            for key in keys:
                image = self._items.get(key)
                if image is not None:
                    self._items.move_to_end(key)
                    found[key] = image
        return found

    def _store(self, fresh: dict[_FrameKey, Image]) -> None:
        with self._lock:
            for key, image in fresh.items():
                if key not in self._items:
                    self._bytes += _image_bytes(image)
                self._items[key] = image
            while self._items and (len(self._items) > self.max_frames or self._bytes > self.max_bytes):
                _, image = self._items.popitem(last=False)
                self._bytes -= _image_bytes(image)

    def _video_lock(self, path: str, backend: str) -> threading.Lock:
        with self._lock:
            return self._video_locks.setdefault((path, backend), threading.Lock())


_MAX_REFS = 1024
_VideoKey = tuple[str, str, tuple[int, int] | None]  # path, backend, file identity
_FrameKey = tuple[str, tuple[int, int] | None, str, int, tuple[int, int]]


def _file_identity(path: str | Path) -> tuple[str, tuple[int, int] | None]:
    """The path as given and (size, mtime in ns) of the file or frame folder; None when it cannot be read."""
    file = Path(path).expanduser()
    text = str(file)
    try:
        stat = file.stat()
    except OSError:
        return text, None  # open_video reports the problem
    return text, (stat.st_size, stat.st_mtime_ns)


def _image_bytes(image: Image) -> int:
    return image.width * image.height * len(image.getbands())


def read_resized(
    reader: FrameReader, indices: Sequence[int], size: tuple[int, int], cache: ResizedFrameCache | None = None
) -> list[Image]:
    """Frames ``indices`` of ``reader`` resized to ``size`` (width, height), through ``cache`` when given.

    Without a cache every returned image is its own object, repeats included; with one
    they are the cache's shared, read-only objects.
    """
    if cache is not None:
        return cache.get(reader, indices, size)
    wanted = [operator.index(i) for i in indices]
    unique = sorted(set(wanted))
    resized = {i: resize_frame(f, size) for i, f in zip(unique, reader.read(unique), strict=True)}
    out: list[Image] = []
    served: set[int] = set()
    for index in wanted:
        out.append(resized[index].copy() if index in served else resized[index])
        served.add(index)
    return out
