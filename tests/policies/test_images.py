"""Images on the wire: the fast PNG writer is lossless and the encoding cache keys on pixels."""

from __future__ import annotations

import base64
import io

import numpy as np
import pytest
from PIL import Image

from revseg.policies.images import EncodedImageCache, encode_png, image_base64


@pytest.mark.parametrize(
    ("mode", "shape"), [("RGB", (37, 53, 3)), ("L", (20, 7)), ("RGBA", (5, 9, 4)), ("RGB", (1, 1, 3))]
)
def test_png_round_trips_every_pixel(mode: str, shape: tuple[int, ...]) -> None:
    pixels = np.random.default_rng(0).integers(0, 256, shape, dtype=np.uint8)
    decoded = Image.open(io.BytesIO(encode_png(Image.fromarray(pixels, mode))))
    assert decoded.mode == mode and np.array_equal(np.asarray(decoded), pixels)


def test_other_modes_are_sent_as_rgb() -> None:
    palette = Image.fromarray(np.arange(64, dtype=np.uint8).reshape(8, 8)).convert("P")
    decoded = Image.open(io.BytesIO(encode_png(palette)))
    assert decoded.mode == "RGB" and np.array_equal(np.asarray(decoded), np.asarray(palette.convert("RGB")))


def test_cache_hits_equal_pixels_in_other_objects_and_stays_within_its_budget() -> None:
    frames = [Image.new("RGB", (64, 64), (i, 0, 0)) for i in range(4)]
    cache = EncodedImageCache()
    first = cache.base64(frames[0])
    assert cache.base64(frames[0].copy()) == first == image_base64(frames[0])
    assert (cache.hits, cache.misses) == (1, 1)
    assert cache.base64(frames[0], "jpeg")[1] == "image/jpeg" and cache.misses == 2  # the format is part of the key
    small = EncodedImageCache(max_bytes=len(first[0]) * 2)
    for frame in frames:
        small.base64(frame)
    small.base64(frames[0])
    assert small.misses == 5  # frame 0 was evicted
    assert base64.b64decode(first[0])[:8] == b"\x89PNG\r\n\x1a\n"


def test_an_image_seen_before_is_found_without_hashing_again(monkeypatch: pytest.MonkeyPatch) -> None:
    import gc

    from revseg.policies import images

    frame = Image.fromarray(np.random.default_rng(1).integers(0, 256, (30, 40, 3), dtype=np.uint8))
    hashed: list[int] = []
    real = images.hashlib.blake2b

    def counting(data: bytes, **kwargs: int) -> object:
        hashed.append(len(data))
        return real(data, **kwargs)

    monkeypatch.setattr(images.hashlib, "blake2b", counting)
    cache = EncodedImageCache()
    first = cache.base64(frame)
    assert cache.base64(frame) == first and len(hashed) == 1  # same object: no second digest
    assert cache.base64(frame.copy()) == first and len(hashed) == 2  # equal pixels, new object: hashed, still a hit
    assert (cache.hits, cache.misses) == (2, 1)
    del frame
    gc.collect()
    assert len(cache._digests) == 0  # dead images leave no identity entries behind


def test_concurrent_requests_for_the_same_pixels_encode_them_once(monkeypatch: pytest.MonkeyPatch) -> None:
    import threading
    from concurrent.futures import ThreadPoolExecutor

    from revseg.policies import images

    frame = Image.fromarray(np.random.default_rng(2).integers(0, 256, (64, 64, 3), dtype=np.uint8))
    started, release = threading.Event(), threading.Event()
    encodes: list[int] = []
    real = images.image_base64

    def slow(image: Image.Image, image_format: str = "png") -> tuple[str, str]:
        encodes.append(1)
        started.set()
        release.wait(5)
        return real(image, image_format)

    monkeypatch.setattr(images, "image_base64", slow)
    cache = EncodedImageCache()
    with ThreadPoolExecutor(6) as pool:
        futures = [pool.submit(cache.base64, frame) for _ in range(6)]
        assert started.wait(5)
        release.set()
        results = {f.result() for f in futures}
    assert len(encodes) == 1 and len(results) == 1 and (cache.hits, cache.misses) == (5, 1)
