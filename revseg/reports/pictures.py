"""The frames a report shows: decoded once per video, encoded as JPEG, inlined or shared as files.

Split from :mod:`~revseg.reports.page` so the page module holds the page and this one the
pictures; both the one-run page and the index over many runs (:mod:`~revseg.reports.index`)
use :class:`FrameImages`.
"""

from __future__ import annotations

import base64
import hashlib
import io
import os
import re
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING
from urllib.parse import quote

from revseg.errors import OutputError, RevsegError
from revseg.tools.frames import FrameReader, open_video
from revseg.trajectory import Trajectory

if TYPE_CHECKING:
    import numpy as np

__all__ = ["EMBED_VIDEO_MAX_BYTES", "FrameImages", "Picture", "ReportOptions", "data_uri", "relative_href"]

EMBED_VIDEO_MAX_BYTES = 16 * 1024 * 1024


@dataclass(frozen=True)
class ReportOptions:
    """How pages are rendered; the defaults keep a 16-frame page around half a megabyte plus the video."""

    thumb_width: int = 256
    """Width of the sampled-frame thumbnails in pixels (shown at about 130 px, sharp on high-DPI screens)."""
    keyframe_long_edge: int = 1280
    """The keyframe is shown at full size up to this long edge, and downscaled beyond."""
    jpeg_quality: int = 85
    embed_video_max_bytes: int = EMBED_VIDEO_MAX_BYTES
    """Embed the overlay as a data URI up to this size; link it relatively beyond (0 always links)."""
    frame_backend: str = "auto"
    """Frame reader used to re-decode the sampled frames and keyframes (see ``revseg.tools.frames``)."""


@dataclass(frozen=True)
class Picture:
    """An encoded frame and the pixel size it was encoded at: inline (a data URI) or a shared JPEG file."""

    width: int
    height: int
    data_uri: str | None = None
    file: Path | None = None

    def src(self, page_dir: Path) -> str:
        """What an ``<img src>`` on a page in ``page_dir`` needs: the data URI, or a relative link to the file."""
        if self.data_uri is not None:
            return self.data_uri
        assert self.file is not None
        return relative_href(self.file, page_dir)


class FrameImages:
    """Encoded frames of one video, decoded on first use and reused across pages.

    Inline by default (JPEG data URIs, for a page that is one self-contained file). With
    ``files`` set, each frame is written once as ``files/<video key>/<index>-<kind>.jpg``
    and pages link to it: the index builder does this, so the rollouts of a group, which
    share a video and its sampled frames, share one set of files, a rebuild decodes
    nothing, and a page weighs kilobytes. The video is opened only when a frame is
    missing. When it cannot be opened, or no longer matches the record, :attr:`error`
    says why and lookups return nothing: the page is still written, without pictures.
    ``reader``, an open reader of the video (the agent's, after a run), is used instead
    of opening one; it stays the caller's to close.
    """

    def __init__(
        self,
        trajectory: Trajectory,
        options: ReportOptions | None = None,
        *,
        files: Path | None = None,
        reader: FrameReader | None = None,
    ):
        self.options = options or ReportOptions()
        self.video = trajectory.video
        self.path = trajectory.video.path
        self.error: str | None = None
        self._lent = reader
        self._reader: FrameReader | None = None
        self._opened = False
        self._cache: dict[tuple[int, str], Picture] = {}
        self._folder = files / _video_key(trajectory) if files is not None else None

    @property
    def shared_files(self) -> bool:
        """True when pictures are files that pages link to, rather than data URIs inside each page."""
        return self._folder is not None

    def matches(self, trajectory: Trajectory) -> bool:
        """True when this source serves ``trajectory``'s video (same path, same shape)."""
        return trajectory.video == self.video

    def thumbnails(self, indices: Iterable[int]) -> dict[int, Picture]:
        """Frames at ``indices`` scaled to the thumbnail width."""
        return self._pictures(indices, "thumb")

    def full(self, indices: Iterable[int]) -> dict[int, Picture]:
        """Frames at ``indices`` at full size (long edge capped by the options)."""
        return self._pictures(indices, "full")

    def close(self) -> None:
        """Release the decoder (unless it was lent) and drop cached pictures."""
        if self._reader is not None and self._reader is not self._lent:
            self._reader.close()
            self._reader = None
        self._cache.clear()

    def __enter__(self) -> FrameImages:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def _open(self) -> FrameReader | None:
        """Open the video once; on failure record why (pages say it) and serve nothing."""
        if self._opened:
            return self._reader
        self._opened = True
        try:
            reader = self._lent or open_video(self.path, backend=self.options.frame_backend)
        except RevsegError as exc:
            self.error = f"The video is not available here, so frames are not shown ({exc})."
            return None
        found, expected = reader.ref, self.video
        if (found.num_frames, found.width, found.height) != (expected.num_frames, expected.width, expected.height):
            if reader is not self._lent:
                reader.close()
            self.error = (
                f"The video at {self.path} no longer matches the record ({found.num_frames} frames of"
                f" {found.width}x{found.height}, recorded {expected.num_frames} of {expected.width}x{expected.height}),"
                " so frames are not shown."
            )
            return None
        self._reader = reader
        return reader

    def _pictures(self, indices: Iterable[int], kind: str) -> dict[int, Picture]:
        wanted = sorted(set(indices))
        for index in wanted:
            if (index, kind) not in self._cache and (stored := self._stored(index, kind)) is not None:
                self._cache[(index, kind)] = stored
        missing = [i for i in wanted if (i, kind) not in self._cache]
        reader = self._open() if missing else None
        if missing and reader is not None:
            try:
                frames = reader.read(missing)
            except RevsegError as exc:
                self.error = f"Frames could not be decoded ({exc})."
                frames = []
            for index, frame in zip(missing, frames, strict=False):
                self._cache[(index, kind)] = self._encode(index, frame, kind)
        return {i: self._cache[(i, kind)] for i in wanted if (i, kind) in self._cache}

    def _file(self, index: int, kind: str) -> Path | None:
        return self._folder / f"{index:06d}-{kind}.jpg" if self._folder is not None else None

    def _stored(self, index: int, kind: str) -> Picture | None:
        """A frame file written by an earlier page or build; its size is read from the JPEG header only."""
        file = self._file(index, kind)
        if file is None or not file.is_file():
            return None
        from PIL import Image, UnidentifiedImageError

        try:
            with Image.open(file) as image:
                return Picture(*image.size, file=file)
        except (OSError, UnidentifiedImageError):
            return None

    def _encode(self, index: int, frame: np.ndarray, kind: str) -> Picture:
        from PIL import Image

        image = Image.fromarray(frame)
        width, height = image.size
        if kind == "thumb":
            scale = min(1.0, self.options.thumb_width / width)
        else:
            scale = min(1.0, self.options.keyframe_long_edge / max(width, height))
        if scale < 1.0:
            size = (max(1, round(width * scale)), max(1, round(height * scale)))
            image = image.resize(size, Image.Resampling.LANCZOS)
        buffer = io.BytesIO()
        image.save(buffer, format="JPEG", quality=self.options.jpeg_quality)
        file = self._file(index, kind)
        if file is None:
            return Picture(*image.size, data_uri=data_uri(buffer.getvalue(), "image/jpeg"))
        try:
            file.parent.mkdir(parents=True, exist_ok=True)
            tmp = file.with_name(f".{file.name}.tmp")
            tmp.write_bytes(buffer.getvalue())
            tmp.replace(file)
        except OSError as exc:
            raise OutputError(f"cannot write frame image {file}: {exc.strerror or exc}") from exc
        return Picture(*image.size, file=file)


def _video_key(trajectory: Trajectory) -> str:
    """A folder name for one video's frame files: changes when the file at that path changes."""
    video = trajectory.video
    try:
        stat = Path(video.path).stat()
        stamp = f"{stat.st_size}:{stat.st_mtime_ns}"
    except OSError:
        stamp = "missing"
    identity = f"{video.path}|{video.num_frames}|{video.width}x{video.height}|{stamp}"
    stem = re.sub(r"[^A-Za-z0-9._-]", "_", Path(video.path).stem)[:40]
    return f"{stem}-{hashlib.sha256(identity.encode()).hexdigest()[:12]}"


def relative_href(target: Path, page_dir: Path) -> str:
    """A relative URL from the page to ``target`` (an absolute file URL across drives)."""
    try:
        rel = os.path.relpath(target.resolve(), page_dir)
    except ValueError:
        return target.resolve().as_uri()

    return quote(Path(rel).as_posix())


def data_uri(data: bytes, mime: str) -> str:
    return f"data:{mime};base64," + base64.b64encode(data).decode("ascii")
