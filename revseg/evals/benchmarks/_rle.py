"""Ground truth stored as COCO RLE in ``mask_dict.json`` (MeViS, ReVOS): one shared reader.

Both releases (MeViS ``<split>/mask_dict.json``, ReVOS ``mask_dict.json``) map each
annotation id (a string key) to a list with one entry per frame of the video, in the order
of the video's ``frames`` list: a COCO RLE (``{"size": [H, W], "counts": ...}``) or null
when the object is absent. An expression's ground truth is the union of its ``anno_id``
masks on each frame, exactly as the public evaluation scripts build it.
"""

from __future__ import annotations

import threading
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from revseg.errors import DatasetError
from revseg.evals.base import load_json


class MaskDict:
    """A ``mask_dict.json`` loaded once, on first use (it can be large), shared by threads."""

    def __init__(self, path: Path, what: str = "mask dict") -> None:
        self.path = path
        self.what = what
        self._data: dict[str, Any] | None = None
        self._lock = threading.Lock()

    @property
    def data(self) -> dict[str, Any]:
        """The parsed mapping (loaded on first access)."""
        if self._data is None:
            with self._lock:
                if self._data is None:
                    data = load_json(self.path, self.what)
                    if not isinstance(data, dict):
                        raise DatasetError(f"{self.path}: expected a mapping from annotation id to per-frame RLE")
                    self._data = data
        return self._data

    def tracks(self, anno_ids: Sequence[Any], num_frames: int, where: str) -> list[list[Any]]:
        """The per-frame RLE lists of several annotation ids, checked for presence and length."""
        tracks = []
        for anno_id in anno_ids:
            track = self.data.get(str(anno_id))
            if not isinstance(track, list):
                raise DatasetError(f"{where}: annotation id {anno_id!r} is not in {self.path.name}")
            if len(track) != num_frames:
                raise DatasetError(
                    f"{where}: annotation id {anno_id!r} has {len(track)} frames in {self.path.name}, "
                    f"the video lists {num_frames}"
                )
            tracks.append(track)
        return tracks


def rle_size(rle: Any) -> tuple[int, int] | None:
    """(height, width) of an RLE entry (a dict, or a list of dicts), or None for null."""
    if isinstance(rle, list):
        sizes = [rle_size(r) for r in rle]
        return next((s for s in sizes if s is not None), None)
    if isinstance(rle, dict) and isinstance(rle.get("size"), list | tuple) and len(rle["size"]) == 2:
        return int(rle["size"][0]), int(rle["size"][1])
    return None


def decode_entry(rle: Any, shape: tuple[int, int], where: str) -> np.ndarray:
    """One frame's mask from an RLE entry: null is empty, a list of RLEs is their union."""
    from revseg.tools.masks import decode_rle

    if rle is None or (isinstance(rle, list) and not rle):
        return np.zeros(shape, dtype=bool)
    if isinstance(rle, list):
        out = np.zeros(shape, dtype=bool)
        for part in rle:
            out |= decode_entry(part, shape, where)
        return out
    if not isinstance(rle, dict) or "counts" not in rle:
        raise DatasetError(f"{where}: malformed RLE entry {str(rle)[:60]!r}")
    try:
        mask = decode_rle(rle)
    except (KeyError, TypeError, ValueError) as exc:
        raise DatasetError(f"{where}: undecodable RLE ({exc})") from exc
    if mask.shape != shape:
        raise DatasetError(f"{where}: RLE of size {mask.shape} on a video of size {shape}")
    return mask


def union_masks(tracks: Sequence[Sequence[Any]], num_frames: int, shape: tuple[int, int], where: str) -> np.ndarray:
    """(T, H, W) bool: per frame, the union of every track's mask."""
    masks = np.zeros((num_frames, *shape), dtype=bool)
    for track in tracks:
        for index, rle in enumerate(track):
            if rle is not None:
                masks[index] |= decode_entry(rle, shape, f"{where}, frame {index}")
    return masks


def first_size(tracks: Sequence[Sequence[Any]]) -> tuple[int, int] | None:
    """(height, width) of the first non-null RLE in any track."""
    for track in tracks:
        for rle in track:
            size = rle_size(rle)
            if size is not None:
                return size
    return None


def image_shape(path: Path, where: str) -> tuple[int, int]:
    """(height, width) of an image file from its header."""
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(path) as image:
            width, height = image.size
    except (OSError, UnidentifiedImageError) as exc:
        raise DatasetError(f"{where}: cannot read {path} to learn the frame size ({exc})") from exc
    return height, width
