"""Images on the wire: the bytes and MIME type every network backend sends.

Frames go out as PNG, which keeps the pixels the graph resized exactly (a trainer later
rebuilds the same inputs). Pillow's PNG writer spends 20-40 ms on a 448x448 frame holding
the GIL, which caps a process at a few queries a second; :func:`encode_png` writes the
same lossless PNG (the "Up" row filter, fast zlib) in about 5 ms, most of it in zlib and
numpy, which release the GIL. :class:`EncodedImageCache` keeps encodings by content, so
turn 2 does not encode turn 1's frames again, nor do the queries that share a video.
"""

from __future__ import annotations

import base64
import functools
import hashlib
import io
import struct
import threading
import weakref
import zlib
from collections import OrderedDict
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from PIL.Image import Image

_PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
_COLOUR_TYPES = {"L": (0, 1), "RGB": (2, 3), "RGBA": (6, 4)}  # PIL mode -> (PNG colour type, channels)
_FILTER_UP = 2
JPEG_QUALITY = 95  # when a backend is told to send JPEG (smaller requests; lossy, so rebuilds differ)


def encode_png(image: Image, level: int = 1) -> bytes:
    """A lossless 8-bit PNG of ``image`` (L, RGB or RGBA; other modes are converted to RGB)."""
    import numpy as np

    if image.mode not in _COLOUR_TYPES:
        image = image.convert("RGB")
    colour_type, channels = _COLOUR_TYPES[image.mode]
    width, height = image.size
    rows = np.asarray(image, dtype=np.uint8).reshape(height, width * channels)
    scanlines = np.empty((height, width * channels + 1), dtype=np.uint8)
    scanlines[:, 0] = _FILTER_UP
    scanlines[:, 1:] = rows
    scanlines[1:, 1:] -= rows[:-1]  # "Up": each byte minus the one above it, modulo 256
    header = struct.pack(">IIBBBBB", width, height, 8, colour_type, 0, 0, 0)
    return b"".join(
        (
            _PNG_SIGNATURE,
            _chunk(b"IHDR", header),
            _chunk(b"IDAT", zlib.compress(scanlines.tobytes(), level)),
            _chunk(b"IEND", b""),
        )
    )


def wire_encoding(image_format: str = "png") -> str:
    """How :func:`image_base64` encodes for ``image_format``, as trajectories record it: ``png`` or ``jpeg:95``."""
    return f"jpeg:{JPEG_QUALITY}" if image_format.lower() in {"jpg", "jpeg"} else "png"


def image_base64(image: Image, image_format: str = "png") -> tuple[str, str]:
    """Return ``(base64 data, mime type)``; PNG (lossless) unless ``image_format`` is jpeg."""
    if image_format.lower() in {"jpg", "jpeg"}:
        buffer = io.BytesIO()
        image.convert("RGB").save(buffer, format="JPEG", quality=JPEG_QUALITY)
        return base64.b64encode(buffer.getvalue()).decode("ascii"), "image/jpeg"
    return base64.b64encode(encode_png(image)).decode("ascii"), "image/png"


class EncodedImageCache:
    """A content-addressed LRU of ``image_base64`` results, bounded in bytes; thread-safe.

    Keys are a digest of the pixels (plus mode, size and format), so equal frames hit
    whatever object holds them. Hashing a frame costs about a millisecond, so an image
    object seen before (the graph's frame cache hands every run the same objects) is
    found by identity first, without hashing; such images must not be edited in place.
    ``max_bytes=0`` turns caching off.
    """

    def __init__(self, max_bytes: int = 128 * 2**20) -> None:
        self.max_bytes = max_bytes
        self.hits = 0
        self.misses = 0
        self._items: OrderedDict[tuple[object, ...], tuple[str, str]] = OrderedDict()
        self._bytes = 0
        self._digests: dict[int, tuple[weakref.ref[Image], tuple[object, ...]]] = {}
        self._pending: dict[tuple[object, ...], threading.Event] = {}
        self._lock = threading.RLock()  # re-entrant: a weakref callback may fire while it is held

    def base64(self, image: Image, image_format: str = "png") -> tuple[str, str]:
        """``image_base64(image, image_format)``, from the cache when these pixels were encoded before.

        When another thread is encoding the same pixels right now, waits for its result
        instead of encoding them twice (a batch's queries start on the same frames at once).
        """
        if self.max_bytes <= 0:
            return image_base64(image, image_format)
        key = self._key(image, image_format.lower())
        while True:
            with self._lock:
                found = self._items.get(key)
                if found is not None:
                    self._items.move_to_end(key)
                    self.hits += 1
                    return found
                pending = self._pending.get(key)
                if pending is None:
                    pending = self._pending[key] = threading.Event()
                    break
            pending.wait()  # then look again: evicted already, or the encoder failed, means encode it here
        try:
            encoded = image_base64(image, image_format)
            with self._lock:
                self.misses += 1
                self._items[key] = encoded
                self._bytes += len(encoded[0])
                while self._bytes > self.max_bytes and len(self._items) > 1:
                    _, (data, _) = self._items.popitem(last=False)
                    self._bytes -= len(data)
        finally:
            with self._lock:
                del self._pending[key]
            pending.set()
        return encoded

    def _key(self, image: Image, image_format: str) -> tuple[object, ...]:
        """The content key of ``image``: remembered per live object, computed once."""
        with self._lock:
            known = self._digests.get(id(image))
        if known is not None and known[0]() is image and known[1][0] == image_format:
            return known[1]
        digest = hashlib.blake2b(image.tobytes(), digest_size=16).digest()
        key = (image_format, image.mode, image.size, digest)
        ident = id(image)
        try:
            ref = weakref.ref(image, functools.partial(self._forget, ident))
        except TypeError:  # not weak-referenceable: hash it every time
            return key
        with self._lock:
            self._digests[ident] = (ref, key)
        return key

    def _forget(self, ident: int, _: object = None) -> None:
        with self._lock:
            known = self._digests.get(ident)
            if known is not None and known[0]() is None:
                del self._digests[ident]


def _chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))
