"""Masks on disk: DAVIS-style palette PNGs per frame plus COCO RLE in one ``masks.json``.

The tracker streams masks frame by frame, backwards from the keyframe then forwards, so
:class:`MaskWriter` accepts frames in any order, writes each PNG at once (nothing
full-size is held) and appends each frame's RLE to a hidden scratch file beside it,
keeping only its offset, until :meth:`MaskWriter.close` writes ``masks.json`` in frame
order. RLE is small for real objects (1-2 KB a frame) but not for noisy masks (50 KB
a 480p frame from a random test model), and a long video has many frames: memory must
not follow the video's length. Frames never given (a failed run, a no-target query) are written
as empty masks, so a run always leaves exactly one PNG per frame: benchmark scorers
that look for every frame find it.

``masks.json`` schema (``version`` 1)::

    {"version": 1, "num_frames": T, "height": H, "width": W, "objects": K,
     "frame_names": ["00000", ...], "missing": [frame indices filled with empty masks at close],
     "frames": [{"frame_index": t, "union": RLE, "objects": [RLE] * K}, ...]}

with RLE the COCO compressed form ``{"size": [H, W], "counts": str}`` that
``pycocotools.mask.decode`` reads.
"""

from __future__ import annotations

import json
import operator
import os
from collections.abc import Iterable, Iterator, Sequence
from functools import lru_cache
from pathlib import Path
from typing import Any, BinaryIO, Protocol

import numpy as np

from revseg.errors import OutputError

MASKS_JSON = "masks.json"
MASKS_JSON_VERSION = 1
MAX_OBJECTS = 255
"""A palette PNG pixel holds one byte: object ids 1..255."""


def davis_palette() -> list[int]:
    """The 256-colour palette of DAVIS (and PASCAL VOC) annotation PNGs, flat [r, g, b, r, g, b, ...].

    Colour i spreads the bits of i over the high bits of red, green and blue: 0 is
    black, 1 dark red, 2 dark green, 3 olive, ... It matches the palette of the DAVIS
    2017 result PNGs, so our masks look like every other method's in DAVIS tools.
    """
    return list(_palette())


@lru_cache(maxsize=1)
def _palette() -> tuple[int, ...]:
    flat: list[int] = []
    for index in range(256):
        rgb = [0, 0, 0]
        value = index
        for bit in range(8):
            for channel in range(3):
                rgb[channel] |= ((value >> channel) & 1) << (7 - bit)
            value >>= 3
        flat.extend(rgb)
    return tuple(flat)


def encode_rle(mask: np.ndarray) -> dict[str, Any]:
    """COCO compressed RLE of a (H, W) binary mask, with ``counts`` as str so it is JSON-serialisable."""
    from pycocotools import mask as mask_utils

    if mask.ndim != 2:
        raise ValueError(f"expected a (H, W) mask, got shape {mask.shape}")
    rle = mask_utils.encode(np.asfortranarray(mask.astype(np.uint8, copy=False)))
    return {"size": [int(rle["size"][0]), int(rle["size"][1])], "counts": rle["counts"].decode("ascii")}


def decode_rle(rle: dict[str, Any]) -> np.ndarray:
    """The (H, W) bool mask of a COCO RLE: compressed (``counts`` str or bytes) or uncompressed (a list)."""
    from pycocotools import mask as mask_utils

    height, width = (int(v) for v in rle["size"])
    counts = rle["counts"]
    if isinstance(counts, list):
        compressed = mask_utils.frPyObjects({"size": [height, width], "counts": counts}, height, width)
    else:
        compressed = {"size": [height, width], "counts": counts.encode("ascii") if isinstance(counts, str) else counts}
    return np.asarray(mask_utils.decode(compressed), dtype=bool)


@lru_cache(maxsize=8)
def _empty_rle(height: int, width: int) -> tuple[tuple[str, Any], ...]:
    return tuple(encode_rle(np.zeros((height, width), dtype=bool)).items())


def empty_rle(height: int, width: int) -> dict[str, Any]:
    """RLE of an all-background (H, W) mask (cached: failure paths write thousands)."""
    rle = dict(_empty_rle(height, width))
    rle["size"] = list(rle["size"])
    return rle


def label_map(masks: np.ndarray) -> np.ndarray:
    """(K, H, W) bool masks -> (H, W) uint8 with pixel value = object id 1..K, 0 = background.

    Where objects overlap the later object id wins, as in DAVIS annotations, which hold
    one id per pixel.
    """
    labels = np.zeros(masks.shape[1:], dtype=np.uint8)
    for number, mask in enumerate(masks, start=1):
        labels[mask] = number
    return labels


def _stem(name: str) -> str:
    """``00000.jpg`` -> ``00000``; other dots stay (``frame.0001`` is a stem already)."""
    path = Path(name)
    return path.stem if path.suffix.lower() in (".jpg", ".jpeg", ".png") else path.name


class _HasFrameMasks(Protocol):
    """What a tracker yields (``revseg.tools.trackers.base.FrameMasks``), structurally."""

    @property
    def frame_index(self) -> int: ...

    @property
    def masks(self) -> np.ndarray: ...


class MaskWriter:
    """Writes per-frame masks as palette PNGs as they arrive and the RLE index at close.

    ``size`` is (width, height) like everywhere in revseg; masks come as (K, H, W) bool.
    ``num_objects`` fixes K up front (0 for a no-target run); without it K is taken from
    the first frame written. PNGs are named after ``frame_names`` (the source frames'
    stems) or ``00000.png`` ... when not given. Use it as a context manager, or call
    :meth:`close`, which fills frames never written with empty masks and returns the
    ``masks.json`` path.
    """

    def __init__(
        self,
        out_dir: str | Path,
        num_frames: int,
        size: tuple[int, int],
        frame_names: Sequence[str] | None = None,
        *,
        num_objects: int | None = None,
    ) -> None:
        self.out_dir = Path(out_dir)
        self.num_frames = operator.index(num_frames)
        self.width, self.height = (operator.index(v) for v in size)
        if self.num_frames < 1 or self.width < 1 or self.height < 1:
            raise ValueError(f"MaskWriter needs at least one frame of positive size, got {num_frames} x {size}")
        names = [f"{i:05d}" for i in range(self.num_frames)] if frame_names is None else [_stem(n) for n in frame_names]
        if len(names) != self.num_frames or len(set(names)) != len(names):
            raise ValueError(f"frame_names must hold {self.num_frames} distinct names, got {len(names)}")
        if num_objects is not None and not 0 <= num_objects <= MAX_OBJECTS:
            raise ValueError(f"num_objects must be within 0..{MAX_OBJECTS}, got {num_objects}")
        self.frame_names = names
        self.num_objects = num_objects
        self._spans: list[tuple[int, int] | None] = [None] * self.num_frames  # (offset, length) in the scratch file
        self._scratch: BinaryIO | None = None
        self._missing: list[int] = []
        self._json_path: Path | None = None
        try:
            self.out_dir.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise OutputError(f"cannot create mask folder {self.out_dir}: {exc.strerror or exc}") from exc

    @property
    def json_path(self) -> Path:
        """Where ``masks.json`` is (or will be) written."""
        return self.out_dir / MASKS_JSON

    def png_path(self, frame_index: int) -> Path:
        """The PNG of one frame."""
        return self.out_dir / f"{self.frame_names[frame_index]}.png"

    @property
    def written(self) -> int:
        """How many frames have masks so far."""
        return sum(span is not None for span in self._spans)

    def write(self, frame_index: int, masks: np.ndarray) -> None:
        """Write one frame's (K, H, W) bool masks: its PNG now, its RLE into memory.

        Each frame may be written once; frames may come in any order.
        """
        if self._json_path is not None:
            raise ValueError(f"MaskWriter for {self.out_dir} is closed")
        index = operator.index(frame_index)
        if not 0 <= index < self.num_frames:
            raise ValueError(f"frame index {index} out of range 0..{self.num_frames - 1}")
        if self._spans[index] is not None:
            raise ValueError(f"frame {index} was already written to {self.out_dir}")
        masks = np.asarray(masks)
        if masks.ndim == 2:
            masks = masks[None]
        if masks.ndim != 3 or masks.shape[1:] != (self.height, self.width):
            raise ValueError(
                f"frame {index}: masks must have shape (K, {self.height}, {self.width}), got {tuple(masks.shape)}"
            )
        if self.num_objects is None:
            if masks.shape[0] > MAX_OBJECTS:
                raise ValueError(f"at most {MAX_OBJECTS} objects fit a palette PNG, got {masks.shape[0]}")
            self.num_objects = int(masks.shape[0])
        elif masks.shape[0] != self.num_objects:
            raise ValueError(f"frame {index}: expected {self.num_objects} object masks, got {masks.shape[0]}")
        masks = masks.astype(bool, copy=False)
        self._save_png(index, label_map(masks))
        union = encode_rle(np.any(masks, axis=0))
        self._store(index, {"frame_index": index, "union": union, "objects": [encode_rle(m) for m in masks]})

    def write_all(self, frames: Iterable[_HasFrameMasks]) -> None:
        """Write everything a tracker yields (objects with ``frame_index`` and ``masks``)."""
        for item in frames:
            self.write(item.frame_index, item.masks)

    def write_empty(self) -> None:
        """Give every frame not yet written empty masks: the output of a no-target query."""
        for index in range(self.num_frames):
            if self._spans[index] is None:
                self._write_blank(index)

    def close(self) -> Path:
        """Fill unwritten frames with empty masks, write ``masks.json`` atomically, return its path.

        Frames filled here are listed under ``"missing"``, so a scorer can count them.
        Closing twice returns the same path.
        """
        if self._json_path is not None:
            return self._json_path
        for index in range(self.num_frames):
            if self._spans[index] is None:
                self._missing.append(index)
                self._save_png(index, np.zeros((self.height, self.width), dtype=np.uint8))
        header = {
            "version": MASKS_JSON_VERSION,
            "num_frames": self.num_frames,
            "height": self.height,
            "width": self.width,
            "objects": self.num_objects or 0,
            "frame_names": self.frame_names,
            "missing": self._missing,
        }
        path = self.json_path
        tmp = path.with_name(f".{path.name}.tmp")
        try:
            with tmp.open("wb") as out:
                # the same bytes as json.dumps of the whole record, written one frame at a time
                out.write(json.dumps(header, separators=(",", ":"))[:-1].encode() + b',"frames":[')
                for index in range(self.num_frames):
                    out.write((b"," if index else b"") + self._entry_bytes(index))
                out.write(b"]}")
            tmp.replace(path)
        except OSError as exc:
            raise OutputError(f"cannot write {path.name} in {self.out_dir}: {exc.strerror or exc}") from exc
        finally:
            self._drop_scratch()
        self._json_path = path
        return path

    def __enter__(self) -> MaskWriter:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def _write_blank(self, index: int) -> None:
        self._save_png(index, np.zeros((self.height, self.width), dtype=np.uint8))
        self._store(index, self._blank_entry(index))

    def _blank_entry(self, index: int) -> dict[str, Any]:
        empty = empty_rle(self.height, self.width)
        return {"frame_index": index, "union": empty, "objects": [empty] * (self.num_objects or 0)}

    @property
    def _scratch_path(self) -> Path:
        return self.out_dir / f".{MASKS_JSON}.parts"

    def _store(self, index: int, entry: dict[str, Any]) -> None:
        """Append one frame's JSON entry to the scratch file and remember where it is."""
        data = json.dumps(entry, separators=(",", ":")).encode()
        try:
            if self._scratch is None:
                self._scratch = self._scratch_path.open("w+b")
            self._scratch.seek(0, os.SEEK_END)
            offset = self._scratch.tell()
            self._scratch.write(data)
        except OSError as exc:
            raise OutputError(f"cannot write mask data in {self.out_dir}: {exc.strerror or exc}") from exc
        self._spans[index] = (offset, len(data))

    def _entry_bytes(self, index: int) -> bytes:
        """A frame's JSON entry: from the scratch file, or an empty one for a frame never given."""
        span = self._spans[index]
        if span is None:
            return json.dumps(self._blank_entry(index), separators=(",", ":")).encode()
        assert self._scratch is not None
        self._scratch.seek(span[0])
        return self._scratch.read(span[1])

    def _drop_scratch(self) -> None:
        if self._scratch is not None:
            self._scratch.close()
            self._scratch = None
        self._scratch_path.unlink(missing_ok=True)

    def _save_png(self, index: int, labels: np.ndarray) -> None:
        from PIL import Image

        image = Image.fromarray(labels)
        image.putpalette(_palette())
        path = self.png_path(index)
        try:
            image.save(path, optimize=False)
        except OSError as exc:
            raise OutputError(f"cannot write mask {path.name} in {self.out_dir}: {exc.strerror or exc}") from exc


class MaskSequence:
    """Masks read back from ``masks.json``: decoded one frame at a time, on demand.

    ``seq[t]`` and ``seq.union(t)`` give frame t's (H, W) bool union mask,
    ``seq.object_masks(t)`` its (K, H, W) per-object masks; ``seq.objects`` is K, as in
    the JSON. Only RLE strings stay in memory.
    """

    def __init__(self, record: dict[str, Any], path: Path) -> None:
        self.path = path
        self.num_frames = int(record["num_frames"])
        self.height = int(record["height"])
        self.width = int(record["width"])
        self.objects = int(record["objects"])
        self.frame_names: list[str] = list(record.get("frame_names") or [f"{i:05d}" for i in range(self.num_frames)])
        self.missing: list[int] = list(record.get("missing", []))
        self._frames: list[dict[str, Any]] = sorted(record["frames"], key=lambda f: int(f["frame_index"]))
        if [int(f["frame_index"]) for f in self._frames] != list(range(self.num_frames)):
            raise OutputError(f"{path}: frames do not cover 0..{self.num_frames - 1} exactly once")

    def __len__(self) -> int:
        return self.num_frames

    def __getitem__(self, frame_index: int) -> np.ndarray:
        return self.union(frame_index)

    def __iter__(self) -> Iterator[np.ndarray]:
        for index in range(self.num_frames):
            yield self.union(index)

    def _entry(self, frame_index: int) -> dict[str, Any]:
        index = operator.index(frame_index)
        if not 0 <= index < self.num_frames:
            raise IndexError(f"{self.path}: frame {index} out of range 0..{self.num_frames - 1}")
        return self._frames[index]

    def union(self, frame_index: int) -> np.ndarray:
        """The (H, W) bool union of every object's mask on one frame."""
        return decode_rle(self._entry(frame_index)["union"])

    @property
    def num_objects(self) -> int:
        """K, the number of tracked objects (the same as ``objects``)."""
        return self.objects

    def object_masks(self, frame_index: int) -> np.ndarray:
        """The (K, H, W) bool per-object masks on one frame (K may be 0)."""
        rles = self._entry(frame_index)["objects"]
        if not rles:
            return np.zeros((0, self.height, self.width), dtype=bool)
        return np.stack([decode_rle(rle) for rle in rles])


def read_masks_json(path: str | Path) -> MaskSequence:
    """Open a ``masks.json`` (or the folder holding it) written by :class:`MaskWriter`."""
    file = Path(path)
    if file.is_dir():
        file = file / MASKS_JSON
    try:
        record = json.loads(file.read_text())
    except (OSError, json.JSONDecodeError) as exc:
        raise OutputError(f"cannot read masks file {file}: {getattr(exc, 'strerror', None) or exc}") from exc
    if not isinstance(record, dict) or record.get("version") != MASKS_JSON_VERSION:
        found = record.get("version") if isinstance(record, dict) else None
        raise OutputError(f"{file}: not a masks.json of version {MASKS_JSON_VERSION} (found version {found!r})")
    try:
        return MaskSequence(record, file)
    except (KeyError, TypeError, ValueError) as exc:
        raise OutputError(f"{file}: malformed masks.json ({type(exc).__name__}: {exc})") from exc
