"""Region similarity J and boundary accuracy F, exactly as the DAVIS 2017 benchmark defines them.

Every benchmark we report (Ref-DAVIS17, ReVOS, MeViS, ReasonVOS) scores masks with the DAVIS measures
(DESIGN.md 1.6), so our numbers must be those of the official davis2017-evaluation code (`db_eval_iou`,
`db_eval_boundary`): the same per-frame floats, empty cases included. This module computes them from
their definitions, frame for frame identical, and about twenty times faster, which matters when an
evaluation or a reward scores thousands of frames per step:

- J is |gt ∩ pred| / |gt ∪ pred|, and 1 when both masks are empty.
- F compares one-pixel boundary maps. A pixel is on a mask's boundary when the 2x2 block it opens
  (itself, east, south, south-east) is not uniform; neighbours beyond the right or bottom edge of the
  frame count as equal to the pixel, so a mask that fills the frame has no boundary. A boundary pixel
  is matched when the other map has a pixel within the tolerance disk {dy² + dx² ≤ r²}, with
  r = ceil(bound_th · frame diagonal) for bound_th < 1 and r = bound_th pixels otherwise. Precision and
  recall are the matched fractions of the prediction's and the ground truth's boundary pixels, and F
  their harmonic mean, with the official conventions: no boundary on either side gives 1; a boundary
  on one side only gives 0.

Where the speed comes from. Four frames of ground truth and prediction share one uint8 image, one bit
plane per mask (gt of frame i in bit 2i, prediction in bit 2i + 1), so every bitwise operation serves
eight masks. Work is cropped to the box around the chunk's masks, where all boundary pixels lie. The
disk dilation, the bulk of the official cost, is the union of the few rectangles inscribed in the disk;
each rectangle is separable, so the union is a short chain of shifted ORs over a flat, zero-padded
buffer. Everything is plain numpy.
"""

from __future__ import annotations

import math
from typing import TypedDict

import numpy as np
import numpy.typing as npt

__all__ = ["JAndF", "boundary_f", "j_and_f", "jaccard", "tolerance_pixels"]

BoolArray = npt.NDArray[np.bool_]
FloatArray = npt.NDArray[np.float64]
_Bytes = npt.NDArray[np.uint8]

_FRAMES_PER_CHUNK = 4  # a uint8 holds 4 frames x (gt, pred) bit planes
# Columns of the per-frame count table.
_INTER, _UNION, _GT_EDGE, _PRED_EDGE, _GT_HIT, _PRED_HIT = range(6)


class JAndF(TypedDict):
    """Per-frame J and F of one object, their means over frames, and J&F = (J_mean + F_mean) / 2."""

    J: FloatArray
    F: FloatArray
    J_mean: float
    F_mean: float
    JF_mean: float


def jaccard(gt: npt.ArrayLike, pred: npt.ArrayLike) -> FloatArray:
    """Per-frame region similarity J (intersection over union) of binary masks of shape (T, H, W) or (H, W).

    Any nonzero value counts as foreground, as in the official code. A frame where both masks are empty
    scores 1: predicting "no object" for an absent object is right. Returns a float64 array of length T
    (1 for a single (H, W) frame) equal, to the last bit, to the official `db_eval_iou`.
    """
    gt_frames, pred_frames = _frames(gt, pred)
    return _jaccard_from(_counts(gt_frames, pred_frames, radius=None))


def boundary_f(gt: npt.ArrayLike, pred: npt.ArrayLike, bound_th: float = 0.008) -> FloatArray:
    """Per-frame boundary F-measure of binary masks of shape (T, H, W) or (H, W), as DAVIS 2017 defines it.

    `bound_th` is the matching tolerance: below 1, a fraction of the frame diagonal (0.008 is the
    benchmark's, 8 pixels at 480p); from 1 up, a whole number of pixels. Returns a float64 array of
    length T equal, to the last bit, to the official `db_eval_boundary(gt, pred, bound_th=bound_th)`.
    """
    gt_frames, pred_frames = _frames(gt, pred)
    radius = tolerance_pixels(bound_th, *gt_frames.shape[1:])
    return _f_from(_counts(gt_frames, pred_frames, radius=radius))


def j_and_f(gt: npt.ArrayLike, pred: npt.ArrayLike, bound_th: float = 0.008) -> JAndF:
    """J and F of one object over its frames in a single pass, with the means the benchmarks report.

    Cheaper than calling `jaccard` and `boundary_f` in turn: the masks are read and packed once.
    The means are plain averages over frames; at least one frame is needed.
    """
    gt_frames, pred_frames = _frames(gt, pred)
    if gt_frames.shape[0] == 0:
        raise ValueError("j_and_f needs at least one frame to average; gt and pred have shape (0, H, W)")
    counts = _counts(gt_frames, pred_frames, radius=tolerance_pixels(bound_th, *gt_frames.shape[1:]))
    j, f = _jaccard_from(counts), _f_from(counts)
    j_mean, f_mean = float(j.mean()), float(f.mean())
    return JAndF(J=j, F=f, J_mean=j_mean, F_mean=f_mean, JF_mean=(j_mean + f_mean) / 2)


def tolerance_pixels(bound_th: float, height: int, width: int) -> int:
    """Radius in pixels of the boundary-matching disk for frames of `height` x `width`.

    Mirrors the official rule: `bound_th` below 1 is a fraction of the diagonal, rounded up
    (ceil(0.008 * 979.6) = 8 at 854x480); from 1 up it is taken as pixels. A fractional pixel count
    is refused because the official disk of a non-integer radius is off-centre.
    """
    if not math.isfinite(bound_th) or bound_th < 0:
        raise ValueError(f"bound_th must be a finite number >= 0, got {bound_th!r}")
    if bound_th >= 1:
        if bound_th != int(bound_th):
            raise ValueError(
                f"bound_th >= 1 is a tolerance in whole pixels, got {bound_th!r}; use e.g. {int(bound_th)}"
            )
        return int(bound_th)
    return math.ceil(bound_th * math.sqrt(height * height + width * width))


def _frames(gt: npt.ArrayLike, pred: npt.ArrayLike) -> tuple[BoolArray, BoolArray]:
    """Both masks as C-contiguous bool arrays of shape (T, H, W), after checking that they match."""
    gt_array, pred_array = np.asarray(gt), np.asarray(pred)
    if gt_array.shape != pred_array.shape:
        raise ValueError(
            f"gt has shape {gt_array.shape} but pred has shape {pred_array.shape}; "
            "resize the prediction to the ground truth's frame size first"
        )
    if gt_array.ndim not in (2, 3):
        raise ValueError(f"masks must have shape (T, H, W) or (H, W), got {gt_array.shape}")
    if gt_array.shape[-1] == 0 or gt_array.shape[-2] == 0:
        raise ValueError(f"frames must have at least one pixel, got masks of shape {gt_array.shape}")
    return _as_frames(gt_array), _as_frames(pred_array)


def _as_frames(mask: np.ndarray) -> BoolArray:
    """A (T, H, W) C-contiguous bool view or copy of `mask`; nonzero is foreground."""
    frames = mask if mask.dtype == np.bool_ else mask != 0
    if frames.ndim == 2:
        frames = frames[np.newaxis]
    return np.ascontiguousarray(frames)


def _jaccard_from(counts: npt.NDArray[np.int64]) -> FloatArray:
    """J from intersection and union counts; an empty union (both masks empty) scores 1."""
    union = counts[:, _UNION]
    return np.divide(counts[:, _INTER], union, out=np.ones(len(counts)), where=union > 0)


def _f_from(counts: npt.NDArray[np.int64]) -> FloatArray:
    """F from boundary and match counts, with the official empty-boundary conventions and float operations."""
    n_gt, n_pred = counts[:, _GT_EDGE], counts[:, _PRED_EDGE]
    both = (n_gt > 0) & (n_pred > 0)
    precision = np.divide(counts[:, _PRED_HIT], n_pred, out=np.zeros(len(counts)), where=both)
    recall = np.divide(counts[:, _GT_HIT], n_gt, out=np.zeros(len(counts)), where=both)
    total = precision + recall
    f = np.divide(2.0 * precision * recall, total, out=np.zeros(len(counts)), where=total > 0)
    # One side without boundary: precision and recall are (1, 0) or (0, 1), so F is 0; neither side: F is 1.
    f[(n_gt == 0) & (n_pred == 0)] = 1.0
    return f


def _disk_rectangles(radius: int) -> list[tuple[int, int]]:
    """The maximal rectangles (half_height, half_width) inside the disk {dy² + dx² <= radius²}.

    Row dy of the disk spans |dx| <= isqrt(r² - dy²), a width that never grows with |dy|, so the disk
    is the union of one rectangle per step of that staircase (6 rectangles for r = 8). Sorted by
    increasing height, hence decreasing width.
    """
    widths = [math.isqrt(radius * radius - dy * dy) for dy in range(radius + 1)]
    return [(dy, widths[dy]) for dy in range(radius + 1) if dy == radius or widths[dy + 1] < widths[dy]]


class _Workspace:
    """Scratch buffers for one call, allocated once and sliced per chunk to avoid page faults per chunk.

    A chunk's crop is laid out row-major in flat buffers of `stride` = crop width + `pad` bytes per row,
    with `pad` zero rows above and `pad` + 2 below. Shifting a flat buffer by k then moves every pixel k
    columns, or k rows when k is a multiple of the stride; the padding keeps pixels that cross a row end
    (at most `pad` columns) or the top or bottom off the crop, so shifts are exact.
    """

    def __init__(self, height: int, width: int, radius: int) -> None:
        self.pad = max(radius, 1)  # at least one column/row for the boundary's east/south neighbours
        size = (height + 2 * self.pad + 2) * (width + self.pad)
        self.packed: _Bytes = np.empty((height, width), np.uint8)
        self.plane: _Bytes = np.empty((height, width), np.uint8)
        self.flat = [np.empty(size, np.uint8) for _ in range(7)]


def _counts(gt: BoolArray, pred: BoolArray, radius: int | None) -> npt.NDArray[np.int64]:
    """Per-frame counts behind J and, when `radius` is given, F (columns _INTER ... _PRED_HIT).

    Frames go through in chunks of four, packed into bit planes; see the module docstring.
    """
    frames, height, width = gt.shape
    counts = np.zeros((frames, 6), np.int64)
    work = _Workspace(height, width, radius or 0)
    for start in range(0, frames, _FRAMES_PER_CHUNK):
        stop = min(start + _FRAMES_PER_CHUNK, frames)
        _pack(gt[start:stop], pred[start:stop], work)
        box = _bounding_box(work.packed)
        if box is not None:  # else every mask of the chunk is empty and all counts stay 0
            _count_chunk(box, stop - start, radius, work, counts[start:stop])
    return counts


def _pack(gt: BoolArray, pred: BoolArray, work: _Workspace) -> None:
    """Write the chunk's masks into `work.packed` as bit planes: gt of frame i in bit 2i, pred in bit 2i + 1."""
    packed, plane = work.packed, work.plane
    np.copyto(packed, gt[0].view(np.uint8))
    for i in range(len(gt)):
        if i:
            np.bitwise_or(packed, np.multiply(gt[i].view(np.uint8), np.uint8(1 << 2 * i), out=plane), out=packed)
        np.bitwise_or(packed, np.multiply(pred[i].view(np.uint8), np.uint8(2 << 2 * i), out=plane), out=packed)


def _bounding_box(packed: _Bytes) -> tuple[int, int, int, int] | None:
    """(top, bottom, left, right), bottom and right exclusive, of the nonzero pixels; None if there are none."""
    columns = np.bitwise_or.reduce(packed, axis=0) != 0
    if not columns.any():
        return None
    left, right = int(columns.argmax()), len(columns) - int(columns[::-1].argmax())
    rows = np.bitwise_or.reduce(packed[:, left:right], axis=1) != 0
    return int(rows.argmax()), len(rows) - int(rows[::-1].argmax()), left, right


def _count_chunk(
    box: tuple[int, int, int, int], n: int, radius: int | None, work: _Workspace, counts: npt.NDArray[np.int64]
) -> None:
    """Fill `counts` (n rows) for one chunk whose masks all lie inside `box`."""
    height, width = work.packed.shape
    top, bottom, left, right = box
    # Boundary pixels open a 2x2 block holding a mask pixel, so they lie in the box grown by one up and left.
    top, left = max(top - 1, 0), max(left - 1, 0)
    rows, cols = bottom - top, right - left
    pad = work.pad
    stride = cols + pad
    size = (rows + 2 * pad + 2) * stride
    begin, end = pad * stride, (pad + rows) * stride  # the crop's span in the flat buffers
    masks, edges, temp = (buffer[:size] for buffer in work.flat[:3])

    grid = masks.reshape(-1, stride)
    masks[:begin], masks[end:] = 0, 0
    grid[pad : pad + rows, :cols] = work.packed[top:bottom, left:right]
    grid[pad : pad + rows, cols:] = 0
    crop = masks[begin:end]
    both = np.bitwise_and(crop, np.right_shift(crop, np.uint8(1), out=temp[: end - begin]), out=temp[: end - begin])
    for i in range(n):
        counts[i, _INTER] = _plane_count(both, 1 << 2 * i, edges[: end - begin])
        counts[i, _UNION] = _plane_count(crop, 3 << 2 * i, edges[: end - begin])
    if radius is None:
        return

    # Neighbours past the frame's right or bottom edge equal the pixel itself: replicate the last column/row.
    if right == width:
        grid[pad : pad + rows, cols] = grid[pad : pad + rows, cols - 1]
    if bottom == height:
        grid[pad + rows, : cols + 1] = grid[pad + rows - 1, : cols + 1]
    edges[:begin], edges[end:] = 0, 0
    _boundaries(masks, begin, end, stride, edges, temp)
    edges.reshape(-1, stride)[pad : pad + rows, cols:] = 0  # pixels right of the crop are not frame pixels
    crop_edges = edges[begin:end]
    for i in range(n):
        counts[i, _GT_EDGE] = _plane_count(crop_edges, 1 << 2 * i, temp[: end - begin])
        counts[i, _PRED_EDGE] = _plane_count(crop_edges, 2 << 2 * i, temp[: end - begin])
    if not np.any((counts[:, _GT_EDGE] > 0) & (counts[:, _PRED_EDGE] > 0)):
        return  # matches only matter when both boundaries are present

    wide_pair, acc_pair = [b[:size] for b in work.flat[3:5]], [b[:size] for b in work.flat[5:7]]
    near = _dilate_disk(edges, radius, stride, wide_pair, acc_pair)[begin:end]
    # Bit 2i of near >> 1 is the dilated prediction boundary of frame i, bit 2i + 1 of near << 1 the gt's.
    gt_hit = np.right_shift(near, np.uint8(1), out=masks[: end - begin])
    np.bitwise_and(gt_hit, crop_edges, out=gt_hit)
    pred_hit = np.multiply(near, np.uint8(2), out=temp[: end - begin])
    np.bitwise_and(pred_hit, crop_edges, out=pred_hit)
    scratch = edges[: end - begin]  # free now: crop_edges was only needed for the two hit maps
    for i in range(n):
        counts[i, _GT_HIT] = _plane_count(gt_hit, 1 << 2 * i, scratch)
        counts[i, _PRED_HIT] = _plane_count(pred_hit, 2 << 2 * i, scratch)


def _plane_count(image: _Bytes, bits: int, scratch: _Bytes) -> int:
    """Number of pixels of `image` with any of `bits` set."""
    return int(np.count_nonzero(np.bitwise_and(image, np.uint8(bits), out=scratch)))


def _boundaries(masks: _Bytes, begin: int, end: int, stride: int, out: _Bytes, temp: _Bytes) -> None:
    """Boundary map of every bit plane over the flat span [begin, end): the 2x2 block is not uniform."""
    here = masks[begin:end]
    edges, other = out[begin:end], temp[: end - begin]
    np.bitwise_xor(here, masks[begin + 1 : end + 1], out=edges)
    np.bitwise_or(edges, np.bitwise_xor(here, masks[begin + stride : end + stride], out=other), out=edges)
    np.bitwise_or(edges, np.bitwise_xor(here, masks[begin + stride + 1 : end + stride + 1], out=other), out=edges)


def _dilate_disk(image: _Bytes, radius: int, stride: int, wide_pair: list[_Bytes], acc_pair: list[_Bytes]) -> _Bytes:
    """Dilate every bit plane of a flat image by the disk of `radius` (what cv2.dilate with disk(r) does).

    The disk is the union over its rectangles of V(h) H(w) image, with H and V the separable row and
    column dilations. Nesting from the tallest, narrowest rectangle outwards shares the work:
    acc <- V(h_next - h) acc | H(w) image, each H(w) growing the previous one.
    """
    acc: _Bytes | None = None
    wide, width, previous_height = image, 0, 0
    for height, half_width in reversed(_disk_rectangles(radius)):
        if acc is not None:  # grow acc first: it may still alias the wide buffer that H overwrites next
            acc = _dilate_line(acc, previous_height - height, stride, acc_pair)
        wide, width = _dilate_line(wide, half_width - width, 1, wide_pair), half_width
        acc = wide if acc is None else np.bitwise_or(acc, wide, out=acc)
        previous_height = height
    assert acc is not None  # the disk has at least one rectangle
    return _dilate_line(acc, previous_height, stride, acc_pair)


def _dilate_line(image: _Bytes, reach: int, step: int, pair: list[_Bytes]) -> _Bytes:
    """OR of `image` shifted by every multiple of `step` in [-reach, reach], by doubling the reach.

    Results alternate between the two buffers of `pair`, never the input; returns `image` when reach is 0.
    """
    done = 0
    while done < reach:
        shift = min(2 * done + 1, reach - done) * step  # reach `done` grows to 3 * done + 1 at most
        out = pair[0] if image is not pair[0] else pair[1]
        np.bitwise_or(image[shift:], image[:-shift], out=out[shift:])
        out[:shift] = image[:shift]
        np.bitwise_or(out[:-shift], image[shift:], out=out[:-shift])
        image, done = out, done + shift // step
    return image
