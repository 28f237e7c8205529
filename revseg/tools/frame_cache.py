"""Resized frames shared by every run of an agent: one thread-safe, bounded cache per process."""

from __future__ import annotations

import contextlib
import operator
import threading
from collections import OrderedDict
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from revseg.provenance import video_stat
from revseg.trajectory import VideoRef

if TYPE_CHECKING:
    from PIL.Image import Image

from revseg.tools.frames import open_video, resize_frame
from revseg.tools.readers.base import FrameReader


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
    probe, turn-1 frames and keyframe open it once, and :meth:`borrow` lends that reader to
    the steps that stream the video (tracker, overlay, report). Returned images are the cached
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
        """The video's reference (frames, size, fps, backend, file bytes and time), opening it only the first time."""
        path, identity = _file_identity(path)
        key: _VideoKey = (path, backend, identity)
        with self._lock:
            ref = self._refs.get(key)
        if ref is not None:
            return ref
        with self._video_lock(path, backend):
            ref = self._reader(key).ref
            stat = video_stat(path)  # what a rebuild checks the video against (revseg.provenance)
            if stat is not None:
                ref = ref.model_copy(update={"file_bytes": stat[0], "modified_ns": stat[1]})
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

    @contextlib.contextmanager
    def borrow(self, path: str | Path, backend: str = "auto") -> Iterator[FrameReader]:
        """The video's open reader, the caller's alone until the block ends, then pooled again.

        For the steps that stream a whole video or read it at full size (the tracker, the
        overlay, the report), so that one run opens its video once. Readers are not
        thread-safe: while one is lent, other callers on the same video open their own, and
        when a lent reader comes back to find another pooled it is closed.
        """
        path, identity = _file_identity(path)
        key: _VideoKey = (path, backend, identity)
        with self._video_lock(path, backend):
            with self._lock:
                reader = self._readers.pop(key, None)
            if reader is None:
                reader = open_video(path, backend=backend)
        try:
            yield reader
        finally:
            with self._video_lock(path, backend):
                self._keep(key, reader)

    def _reader(self, key: _VideoKey) -> FrameReader:
        """The open reader of a video (opening it when needed); the caller holds the video's lock."""
        with self._lock:
            reader = self._readers.get(key)
            if reader is not None:
                self._readers.move_to_end(key)
                return reader
        reader = open_video(key[0], backend=key[1])
        self._keep(key, reader)
        return reader

    def _keep(self, key: _VideoKey, reader: FrameReader) -> None:
        """Pool ``reader`` as its video's open reader, closing it instead when one is pooled already.

        The caller holds the video's lock. The least recently used videos beyond
        ``max_open`` that no thread is reading now are closed.
        """
        with self._lock:
            spare = reader if key in self._readers else None
            if spare is None:
                self._readers[key] = reader
            idle = [k for k in self._readers if k != key][: max(0, len(self._readers) - self.max_open)]
        if spare is not None:
            spare.close()
        for old in idle:
            lock = self._video_lock(old[0], old[1])
            if lock.acquire(blocking=False):
                try:
                    with self._lock:
                        stale = self._readers.pop(old, None)
                    if stale is not None:
                        stale.close()
                finally:
                    lock.release()

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
