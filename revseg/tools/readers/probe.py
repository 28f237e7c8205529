"""The shared PyAV probe: one demux pass per file that counts frames, maps timestamps to indices and
checks the last group of pictures decodes; every file backend must agree with it before it serves a file."""

from __future__ import annotations

import bisect
import logging
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any

import numpy as np

from revseg.errors import VideoError
from revseg.tools.readers.base import one_line
from revseg.tools.readers.libraries import BackendUnavailable, library
from revseg.trajectory import VideoRef

logger = logging.getLogger(__name__)


SEEKABLE_FORMATS = frozenset({"mov", "mp4", "matroska", "webm", "avi"})
"""Containers with an index that makes keyframe seeks exact. Others (MPEG-TS/PS, raw H.264,
...) are read by decoding from the start, and decord, whose seeks return wrong frames
on them, declines them."""

_FINGERPRINT_SIDE = 8
_FINGERPRINT_TOLERANCE = 4


@dataclass(frozen=True)
class StreamIndex:
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


def same_frame(a: tuple[int, ...], b: tuple[int, ...]) -> bool:
    return (
        len(a) == len(b) and max((abs(x - y) for x, y in zip(a, b, strict=True)), default=0) <= _FINGERPRINT_TOLERANCE
    )


def import_av() -> Any:
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


def upright_size(width: int, height: int, turns: int) -> tuple[int, int]:
    return (height, width) if turns % 2 else (width, height)


def open_container(path: Path) -> Any:
    """``av.open`` with every failure turned into a one-line VideoError."""
    av = import_av()
    try:
        container = av.open(str(path))
    except Exception as exc:  # PyAV raises FFmpegError, OSError, ValueError, ...
        hint = ""
        with path.open("rb") as head:
            if head.read(8)[4:8] == b"ftyp":
                hint = "; it starts like an MP4/MOV but its index cannot be read: truncated or damaged download?"
        raise VideoError(f"{path}: not a readable video ({one_line(exc)}){hint}") from exc
    if not container.streams.video:
        container.close()
        raise VideoError(f"{path}: the file has no video stream")
    return container


def probe_file(path: Path) -> StreamIndex:
    """Index the first video stream of ``path``; cached per (path, size, mtime)."""
    stat = path.stat()
    return probe_cached(str(path.resolve()), stat.st_size, stat.st_mtime_ns)


@lru_cache(maxsize=32)
def probe_cached(path_str: str, size: int, mtime_ns: int) -> StreamIndex:
    path = Path(path_str)
    container = open_container(path)
    try:
        return _index_stream(path, container)
    finally:
        container.close()


def _index_stream(path: Path, container: Any) -> StreamIndex:
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
    return StreamIndex(
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
        raise VideoError(f"{path}: corrupt video data after frame {len(stamps)} ({one_line(exc)})") from exc
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


def seek_decode(
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
        for index, frame in seek_decode(container, pts, pts_index, keys, keys[-1]):
            decoded.append(pts[index])
            last = frame
    except Exception as exc:  # decoder errors come as several PyAV types
        raise VideoError(
            f"{path}: file is truncated or corrupt: frames after {keys[-1] + len(decoded)} do not decode"
            f" ({one_line(exc)}); re-download or re-encode it"
        ) from exc
    if last is None:
        return None
    turns = quarter_turns(last)
    return _Tail(
        pts=sorted(set(decoded)),
        count=len(decoded),
        size=upright_size(last.width, last.height, turns),
        last_frame=fingerprint(upright(last.to_ndarray(format="rgb24"), turns)),
        quarter_turns=turns,
    )


def _count_by_decoding(path: Path) -> _Tail:
    """Fallback for streams without trustworthy seeking: decode everything and count."""
    container = open_container(path)
    count = 0
    last = None
    try:
        for frame in container.decode(container.streams.video[0]):
            last = frame
            count += 1
    except Exception as exc:  # decoder errors come as several PyAV types
        raise VideoError(f"{path}: corrupt video data after frame {count} ({one_line(exc)})") from exc
    finally:
        container.close()
    if last is None:
        raise VideoError(f"{path}: no frame of the video decodes")
    turns = quarter_turns(last)
    return _Tail(
        pts=[],
        count=count,
        size=upright_size(last.width, last.height, turns),
        last_frame=fingerprint(upright(last.to_ndarray(format="rgb24"), turns)),
        quarter_turns=turns,
    )


def file_ref(path: Path, index: StreamIndex, backend: str) -> VideoRef:
    return VideoRef(
        path=str(path),
        num_frames=index.num_frames,
        width=index.width,
        height=index.height,
        fps=index.fps,
        backend=backend,
    )


def check_file(path: Path, backend: str) -> Path:
    if path.is_dir():
        raise VideoError(f"{path}: the {backend} backend reads video files; use backend='folder' for frame folders")
    return path


_AGREED: set[tuple[str, str, int, int]] = set()


def agrees_with_probe(
    backend: str, file: Path, index: StreamIndex, count: int, read: Callable[[list[int]], np.ndarray]
) -> None:
    """Raise BackendUnavailable unless ``backend`` counts, sizes and seeks like the probe; once per file and process.

    ``count`` is the backend's frame count and ``read`` its batched random read (N, H, W, 3).
    Frame 0 is read first, then the last frame, so the last is reached by a seek: decord's
    seeks return a wrong frame in some streams, and the probe's fingerprint of the last
    frame catches that. Any failure to read here means the backend cannot serve the file.
    """
    stat = file.stat()
    identity = (backend, str(file.resolve()), stat.st_size, stat.st_mtime_ns)
    if identity in _AGREED:
        return
    if count != index.num_frames:
        raise BackendUnavailable(
            f"{file}: {backend} counts {count} frames but {index.num_frames} decode; use backend='pyav'"
        )
    try:
        first = read([0])
        last = read([count - 1])
    except Exception as exc:  # DECORDError, RuntimeError, IndexError, ... from the library
        raise BackendUnavailable(f"{file}: {backend} cannot read it ({one_line(exc)}); use backend='pyav'") from exc
    expected = (1, index.height, index.width, 3)
    if first.shape != expected or last.shape != expected:
        raise BackendUnavailable(
            f"{file}: {backend} decodes frames of shape {first.shape[1:]}, expected {expected[1:]}; use backend='pyav'"
        )
    if not same_frame(fingerprint(last[0]), index.last_frame):
        raise BackendUnavailable(
            f"{file}: {backend}'s seek to the last frame returns a different frame; use backend='pyav'"
        )
    _AGREED.add(identity)
