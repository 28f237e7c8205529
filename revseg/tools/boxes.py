"""Box geometry: from the model's coordinates to original-frame pixels, and the measures rewards need.

Boxes are ``(x1, y1, x2, y2)`` in pixels with the origin at the top-left corner, and
``x2``/``y2`` are exclusive edges: a box covering pixel columns 3..7 is ``x1=3, x2=8``,
so its width ``x2 - x1`` is the number of pixels it covers (the convention of SAM2 box
prompts and of COCO ``[x, y, w, h]`` converted to corners). :func:`mask_to_box` follows
it, which makes ``box_area(mask_to_box(m))`` the area of the mask's bounding box.

Which coordinate system the model answers in belongs to the policy backend
(``PolicyInfo.box_convention``, DESIGN.md 1.2 step 4 and 2.3b):

- ``"absolute"``: pixels of the image the model *saw* after its own resize
  (Qwen2.5-VL; 840 x 840 stays 840 x 840);
- ``"norm1000"``: a 0..1000 grid over the image, whatever its size (Qwen2-VL, Qwen3-VL).
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence

import numpy as np

from revseg.trajectory import BoxConvention, BoxXYXY

NORM_GRID = 1000.0
"""Extent of the ``norm1000`` grid: 1000 means the right or bottom edge of the image."""

BOX_CONVENTIONS: tuple[BoxConvention, ...] = ("absolute", "norm1000")


def rescale_box(
    coords: Sequence[float],
    *,
    convention: BoxConvention,
    original_size: tuple[int, int],
    seen_size: tuple[int, int] | None = None,
) -> BoxXYXY:
    """Map a box as the model wrote it onto the original video frame, in pixels.

    ``original_size`` is the video's ``(width, height)``; ``seen_size`` is the
    ``(width, height)`` of the image the model saw (``Policy.seen_size``), needed for
    ``"absolute"`` boxes only. Width and height scale separately, because frames are
    resized without keeping their aspect ratio. Inverted corners are swapped and the box
    is clipped to the frame, so the result may be degenerate (see :func:`is_degenerate`)
    but never inverted or outside. Raises ValueError on malformed arguments: parsed
    answers are validated before they reach here, so that is a caller bug.
    """
    box = _as_box(coords)
    width, height = _check_size(original_size, "original_size")
    if convention == "absolute":
        if seen_size is None:
            raise ValueError("rescale_box: 'absolute' boxes need seen_size, the (width, height) the model saw")
        seen_w, seen_h = _check_size(seen_size, "seen_size")
        sx, sy = width / seen_w, height / seen_h
    elif convention == "norm1000":
        sx, sy = width / NORM_GRID, height / NORM_GRID
    else:
        raise ValueError(f"rescale_box: unknown box convention {convention!r}; known: {', '.join(BOX_CONVENTIONS)}")
    x1, y1, x2, y2 = box
    return clip_box((x1 * sx, y1 * sy, x2 * sx, y2 * sy), (width, height))


def clip_box(box: Sequence[float], size: tuple[int, int]) -> BoxXYXY:
    """Order the corners (swap inverted ones) and clip the box to a ``(width, height)`` frame."""
    x1, y1, x2, y2 = _as_box(box)
    width, height = _check_size(size, "size")
    x1, x2 = min(x1, x2), max(x1, x2)
    y1, y2 = min(y1, y2), max(y1, y2)
    return (_clamp(x1, width), _clamp(y1, height), _clamp(x2, width), _clamp(y2, height))


def box_area(box: Sequence[float]) -> float:
    """Area in square pixels; 0 for degenerate or inverted boxes."""
    x1, y1, x2, y2 = box
    return max(0.0, x2 - x1) * max(0.0, y2 - y1)


def box_iou(a: Sequence[float], b: Sequence[float]) -> float:
    """Intersection over union of two boxes, in [0, 1].

    Two boxes with no area give 0, not NaN: a degenerate prediction never earns the
    spatial reward (DESIGN.md 1.4), even against a degenerate ground truth.
    """
    ix1, iy1 = max(a[0], b[0]), max(a[1], b[1])
    ix2, iy2 = min(a[2], b[2]), min(a[3], b[3])
    inter = box_area((ix1, iy1, ix2, iy2))
    union = box_area(a) + box_area(b) - inter
    if union <= 0.0:
        return 0.0
    return min(1.0, inter / union)


def union_box(boxes: Iterable[Sequence[float]]) -> BoxXYXY | None:
    """The smallest box enclosing all ``boxes`` (multi-object ground truth), or None when there are none."""
    x1 = y1 = math.inf
    x2 = y2 = -math.inf
    seen = False
    for b in boxes:
        seen = True
        x1, y1 = min(x1, b[0]), min(y1, b[1])
        x2, y2 = max(x2, b[2]), max(y2, b[3])
    if not seen:
        return None
    return (float(x1), float(y1), float(x2), float(y2))


def mask_to_box(mask: np.ndarray) -> BoxXYXY | None:
    """The tight box of a 2-D mask (non-zero = foreground), or None when the mask is empty.

    Uses exclusive right/bottom edges: ``x2 = last foreground column + 1``, so a single
    foreground pixel at (row 4, column 3) gives ``(3, 4, 4, 5)`` with area 1.
    """
    if mask.ndim != 2:
        raise ValueError(f"mask_to_box: expected a 2-D (height, width) mask, got shape {mask.shape}")
    cols = np.flatnonzero(mask.any(axis=0))
    if cols.size == 0:
        return None
    rows = np.flatnonzero(mask.any(axis=1))
    return (float(cols[0]), float(rows[0]), float(cols[-1] + 1), float(rows[-1] + 1))


def is_degenerate(box: Sequence[float]) -> bool:
    """True when the box has no area (zero or negative width or height, or a non-finite corner).

    Check after :func:`rescale_box`: a box wholly outside the frame clips to zero width,
    and a tracker prompted with it would segment nothing meaningful.
    """
    x1, y1, x2, y2 = box
    if not all(math.isfinite(v) for v in (x1, y1, x2, y2)):
        return True
    return x2 - x1 <= 0.0 or y2 - y1 <= 0.0


def _as_box(coords: Sequence[float]) -> BoxXYXY:
    if len(coords) != 4:
        raise ValueError(f"a box needs 4 coordinates (x1, y1, x2, y2), got {len(coords)}")
    x1, y1, x2, y2 = (float(c) for c in coords)
    if not all(math.isfinite(v) for v in (x1, y1, x2, y2)):
        raise ValueError(f"box coordinates must be finite, got {tuple(coords)}")
    return (x1, y1, x2, y2)


def _check_size(size: tuple[int, int], name: str) -> tuple[int, int]:
    width, height = size
    if width <= 0 or height <= 0:
        raise ValueError(f"{name} must be a positive (width, height), got {size}")
    return width, height


def _clamp(value: float, upper: float) -> float:
    return min(max(value, 0.0), float(upper))
