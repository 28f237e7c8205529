"""Region similarity J and boundary accuracy F, exactly as the DAVIS 2017 benchmark defines them.

Every benchmark we report (Ref-DAVIS17, ReVOS, MeViS, ReasonVOS) scores masks with the DAVIS measures
(DESIGN.md 1.6), so our numbers must be those of the official davis2017-evaluation code (`db_eval_iou`,
`db_eval_boundary`): the same per-frame floats, empty cases included. This module computes them from
their definitions, identical frame for frame, and faster on the shared DAVIS masks: about 20 times for
F and for J and F, 10 times for J alone, which is bound by reading the masks (benchmarks/bench_metrics.py).
That matters when an evaluation or a reward scores thousands of frames.

- J is |gt ∩ pred| / |gt ∪ pred|, and 1 when both masks are empty.
- F compares one-pixel boundary maps. A pixel is on a mask's boundary when the 2x2 block it opens
  (itself, east, south, south-east) is not uniform; neighbours beyond the right or bottom edge of the
  frame count as equal to the pixel, so a mask that fills the frame has no boundary. A boundary pixel
  is matched when the other map has a pixel within the tolerance disk {dy² + dx² <= r²}, with
  r = ceil(bound_th * frame diagonal) for bound_th < 1 and r = bound_th pixels otherwise. Precision and
  recall are the matched fractions of the prediction's and the ground truth's boundary pixels, F their
  harmonic mean, with the official conventions: no boundary on either side gives F = 1, a boundary on
  one side only gives F = 0.

Where the speed of F comes from. Four frames of ground truth and prediction share one uint8 image, one
bit plane per mask (gt of frame i in bit 2i, prediction in bit 2i + 1), so each bitwise operation serves
eight masks. Work is cropped to the box around the chunk's masks, where all boundary pixels lie. The
disk dilation, most of the official cost, is the union of the few rectangles inscribed in the disk;
rectangles are separable, so the union is a short chain of shifted ORs over a flat, zero-padded buffer.
Plain numpy throughout.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import TypedDict

import numpy as np
import numpy.typing as npt

__all__ = ["JAndF", "boundary_f", "j_and_f", "jaccard", "tolerance_pixels"]

BoolArray = npt.NDArray[np.bool_]
FloatArray = npt.NDArray[np.float64]
_Bytes = npt.NDArray[np.uint8]
_Counts = npt.NDArray[np.int64]

_FRAMES_PER_CHUNK = 4  # a uint8 holds 4 frames x (gt, pred) bit planes
# Columns of the per-frame count table: J needs the first two, F the last four.
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

    Any nonzero value is foreground, as in the official code. A frame where both masks are empty scores
    1: predicting "no object" for an absent object is right. Returns a float64 array of length T (1 for
    an (H, W) frame) equal, to the last bit, to the official `db_eval_iou`.
    """
    gt_frames, pred_frames = _frames(gt, pred)
    return _jaccard_from(_region_counts(gt_frames, pred_frames))


def boundary_f(gt: npt.ArrayLike, pred: npt.ArrayLike, bound_th: float = 0.008) -> FloatArray:
    """Per-frame boundary F-measure of binary masks of shape (T, H, W) or (H, W), as DAVIS 2017 defines it.

    `bound_th` is the matching tolerance: below 1, a fraction of the frame diagonal (0.008, the
    benchmark's, is 8 pixels at 854x480); from 1 up, a whole number of pixels. Returns a float64 array
    of length T equal, to the last bit, to the official `db_eval_boundary(gt, pred, bound_th=bound_th)`.
    """
    gt_frames, pred_frames = _frames(gt, pred)
    radius = tolerance_pixels(bound_th, *gt_frames.shape[1:])
    return _f_from(_packed_counts(gt_frames, pred_frames, radius, region=False))


def j_and_f(gt: npt.ArrayLike, pred: npt.ArrayLike, bound_th: float = 0.008) -> JAndF:
    """J and F of one object over its frames, with the means the benchmarks report.

    Cheaper than `jaccard` then `boundary_f`: the masks are read and packed once for both. Needs at
    least one frame, since the means are plain averages over frames.
    """
    gt_frames, pred_frames = _frames(gt, pred)
    if gt_frames.shape[0] == 0:
        raise ValueError(f"j_and_f needs at least one frame to average, got masks of shape {gt_frames.shape}")
    radius = tolerance_pixels(bound_th, *gt_frames.shape[1:])
    counts = _packed_counts(gt_frames, pred_frames, radius, region=True)
    j, f = _jaccard_from(counts), _f_from(counts)
    j_mean, f_mean = float(j.mean()), float(f.mean())
    return JAndF(J=j, F=f, J_mean=j_mean, F_mean=f_mean, JF_mean=(j_mean + f_mean) / 2)


def tolerance_pixels(bound_th: float, height: int, width: int) -> int:
    """Radius in pixels of the boundary-matching disk for frames of `height` x `width`.

    The official rule: `bound_th` below 1 is a fraction of the diagonal, rounded up (ceil(0.008 * 979.6)
    = 8 at 854x480); from 1 up it is pixels. A fractional pixel count is refused, because the official
    disk of a non-integer radius is off-centre and matches nothing we would want to reproduce.
    """
    if not math.isfinite(bound_th) or bound_th < 0:
        raise ValueError(f"bound_th must be a finite number >= 0, got {bound_th!r}")
    if bound_th >= 1:
        if bound_th != int(bound_th):
            raise ValueError(
                f"bound_th >= 1 is a tolerance in whole pixels, got {bound_th!r}; round it, e.g. to {round(bound_th)}"
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
        raise ValueError(f"masks must have shape (T, H, W) or (H, W), got shape {gt_array.shape}")
    if gt_array.shape[-1] == 0 or gt_array.shape[-2] == 0:
        raise ValueError(f"frames must have at least one pixel, got masks of shape {gt_array.shape}")
    return _as_frames(gt_array), _as_frames(pred_array)


def _as_frames(mask: np.ndarray) -> BoolArray:
    """`mask` as a C-contiguous (T, H, W) bool array, without a copy when it already is one."""
    frames = mask if mask.dtype == np.bool_ else mask != 0
    return np.ascontiguousarray(frames[np.newaxis] if frames.ndim == 2 else frames)


def _jaccard_from(counts: _Counts) -> FloatArray:
    """J from intersection and union counts; an empty union (both masks empty) scores 1."""
    union = counts[:, _UNION]
    return np.divide(counts[:, _INTER], union, out=np.ones(len(counts)), where=union > 0)


def _f_from(counts: _Counts) -> FloatArray:
    """F from boundary and match counts, with the official empty-boundary conventions and float operations."""
    n_gt, n_pred = counts[:, _GT_EDGE], counts[:, _PRED_EDGE]
    both = (n_gt > 0) & (n_pred > 0)
    precision = np.divide(counts[:, _PRED_HIT], n_pred, out=np.zeros(len(counts)), where=both)
    recall = np.divide(counts[:, _GT_HIT], n_gt, out=np.zeros(len(counts)), where=both)
    total = precision + recall
    f = np.divide(2.0 * precision * recall, total, out=np.zeros(len(counts)), where=total > 0)
    # One side without boundary: (precision, recall) is (1, 0) or (0, 1), so F = 0. Neither side: F = 1.
    f[(n_gt == 0) & (n_pred == 0)] = 1.0
    return f


def _region_counts(gt: BoolArray, pred: BoolArray) -> _Counts:
    """Intersection and union counts per frame, frame by frame: J alone is bound by reading the masks."""
    counts = np.zeros((len(gt), 2), np.int64)
    scratch = np.empty(gt.shape[1:], np.bool_)
    for t, (gt_frame, pred_frame) in enumerate(zip(gt, pred, strict=True)):
        inter = np.count_nonzero(np.logical_and(gt_frame, pred_frame, out=scratch))
        counts[t, _INTER] = inter
        counts[t, _UNION] = np.count_nonzero(gt_frame) + np.count_nonzero(pred_frame) - inter
    return counts


@dataclass(frozen=True)
class _Layout:
    """Where a chunk's crop sits in the flat buffers.

    The crop is stored row-major with `stride` = cols + pad bytes per row, after `pad` zero rows and
    before pad + 2 more. Shifting a flat buffer by k then moves every pixel k columns, or k / stride rows;
    the padding catches pixels that cross a row end (at most `pad` columns) or the top or bottom, so
    shifts up to the tolerance radius never carry a pixel into another crop pixel.
    """

    rows: int
    cols: int
    pad: int

    @property
    def stride(self) -> int:
        """Bytes per row."""
        return self.cols + self.pad

    @property
    def size(self) -> int:
        """Bytes of the whole padded buffer."""
        return (self.rows + 2 * self.pad + 2) * self.stride

    @property
    def crop(self) -> slice:
        """The span of the crop's rows (padding columns included)."""
        return slice(self.pad * self.stride, (self.pad + self.rows) * self.stride)


class _Workspace:
    """Scratch buffers for one call, allocated once so that chunks reuse warm pages."""

    def __init__(self, height: int, width: int, radius: int) -> None:
        self.pad = max(radius, 1)  # at least one column and row for the boundary's east and south neighbours
        size = _Layout(height, width, self.pad).size
        self.packed: _Bytes = np.empty((height, width), np.uint8)
        self.plane: _Bytes = np.empty((height, width), np.uint8)
        self.flat = [np.empty(size, np.uint8) for _ in range(7)]


def _packed_counts(gt: BoolArray, pred: BoolArray, radius: int, *, region: bool) -> _Counts:
    """Per-frame counts behind F, and J when `region` is set, four frames at a time as bit planes."""
    frames, height, width = gt.shape
    counts = np.zeros((frames, 6), np.int64)
    work = _Workspace(height, width, radius)
    for start in range(0, frames, _FRAMES_PER_CHUNK):
        stop = min(start + _FRAMES_PER_CHUNK, frames)
        _pack(gt[start:stop], pred[start:stop], work)
        box = _bounding_box(work.packed)
        if box is not None:  # else every mask of the chunk is empty and all its counts stay 0
            _count_chunk(box, radius, region, work, counts[start:stop])
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
    columns = np.asarray(packed.any(axis=0))
    if not columns.any():
        return None
    left, right = int(np.argmax(columns)), len(columns) - int(np.argmax(columns[::-1]))
    rows = np.asarray(packed[:, left:right].any(axis=1))
    return int(np.argmax(rows)), len(rows) - int(np.argmax(rows[::-1])), left, right


def _count_chunk(box: tuple[int, int, int, int], radius: int, region: bool, work: _Workspace, counts: _Counts) -> None:
    """Fill the rows of `counts` (one per frame of the chunk) from the packed masks, all inside `box`."""
    height, width = work.packed.shape
    top, bottom, left, right = box
    # A boundary pixel opens a 2x2 block holding a mask pixel: the crop is the box grown by one up and left.
    top, left = max(top - 1, 0), max(left - 1, 0)
    layout = _Layout(bottom - top, right - left, work.pad)
    masks, edges, temp = (buffer[: layout.size] for buffer in work.flat[:3])
    grid = masks.reshape(-1, layout.stride)
    masks.fill(0)
    grid[layout.pad : layout.pad + layout.rows, : layout.cols] = work.packed[top:bottom, left:right]
    if region:
        _count_region(masks[layout.crop], temp[layout.crop], edges[layout.crop], counts)
    # Neighbours past the frame's right or bottom edge equal the pixel itself: replicate the last column, row.
    inside = slice(layout.pad, layout.pad + layout.rows)
    if right == width:
        grid[inside, layout.cols] = grid[inside, layout.cols - 1]
    if bottom == height:
        grid[inside.stop, : layout.cols + 1] = grid[inside.stop - 1, : layout.cols + 1]
    _boundaries(masks, layout, edges, temp)
    for i in range(len(counts)):
        counts[i, _GT_EDGE] = _plane_count(edges[layout.crop], 1 << 2 * i, temp[layout.crop])
        counts[i, _PRED_EDGE] = _plane_count(edges[layout.crop], 2 << 2 * i, temp[layout.crop])
    if np.any((counts[:, _GT_EDGE] > 0) & (counts[:, _PRED_EDGE] > 0)):  # else matches do not matter
        _count_matches(edges, layout, radius, work, counts)


def _count_region(crop: _Bytes, both: _Bytes, scratch: _Bytes, counts: _Counts) -> None:
    """Intersection and union counts of each frame of a chunk, from its packed crop."""
    np.bitwise_and(crop, np.right_shift(crop, np.uint8(1), out=both), out=both)  # bit 2i: gt and pred
    for i in range(len(counts)):
        counts[i, _INTER] = _plane_count(both, 1 << 2 * i, scratch)
        counts[i, _UNION] = _plane_count(crop, 3 << 2 * i, scratch)


def _boundaries(masks: _Bytes, layout: _Layout, out: _Bytes, temp: _Bytes) -> None:
    """Boundary maps of all bit planes into `out`: pixels whose 2x2 block is not uniform, zero elsewhere."""
    crop, stride = layout.crop, layout.stride
    here, edges, other = masks[crop], out[crop], temp[crop]
    np.bitwise_xor(here, masks[crop.start + 1 : crop.stop + 1], out=edges)
    np.bitwise_or(edges, np.bitwise_xor(here, masks[crop.start + stride : crop.stop + stride], out=other), out=edges)
    south_east = masks[crop.start + stride + 1 : crop.stop + stride + 1]
    np.bitwise_or(edges, np.bitwise_xor(here, south_east, out=other), out=edges)
    out[: crop.start], out[crop.stop :] = 0, 0
    out.reshape(-1, stride)[layout.pad : layout.pad + layout.rows, layout.cols :] = 0  # not frame pixels


def _count_matches(edges: _Bytes, layout: _Layout, radius: int, work: _Workspace, counts: _Counts) -> None:
    """Boundary pixels of each map within `radius` of the other map, per frame of the chunk."""
    wide, acc = ([buffer[: layout.size] for buffer in pair] for pair in (work.flat[3:5], work.flat[5:7]))
    near = _dilate_disk(edges, radius, layout.stride, wide, acc)[layout.crop]
    crop_edges = edges[layout.crop]
    # Bit 2i of near >> 1 is frame i's dilated prediction boundary; bit 2i + 1 of near << 1 is its gt's.
    gt_hit = np.right_shift(near, np.uint8(1), out=work.flat[0][: len(near)])
    np.bitwise_and(gt_hit, crop_edges, out=gt_hit)
    pred_hit = np.multiply(near, np.uint8(2), out=work.flat[2][: len(near)])
    np.bitwise_and(pred_hit, crop_edges, out=pred_hit)
    scratch = edges[layout.crop]  # the boundary maps are no longer needed
    for i in range(len(counts)):
        counts[i, _GT_HIT] = _plane_count(gt_hit, 1 << 2 * i, scratch)
        counts[i, _PRED_HIT] = _plane_count(pred_hit, 2 << 2 * i, scratch)


def _plane_count(image: _Bytes, bits: int, scratch: _Bytes) -> int:
    """Number of pixels of `image` with any of `bits` set."""
    return int(np.count_nonzero(np.bitwise_and(image, np.uint8(bits), out=scratch)))


def _disk_rectangles(radius: int) -> list[tuple[int, int]]:
    """The maximal rectangles (half_height, half_width) inside the disk {dy² + dx² <= radius²}.

    Row dy of the disk spans |dx| <= isqrt(r² - dy²), a width that never grows with |dy|, so the disk
    is the union of one rectangle per step of that staircase (6 rectangles for r = 8). Sorted by
    increasing height, hence decreasing width.
    """
    widths = [math.isqrt(radius * radius - dy * dy) for dy in range(radius + 1)]
    return [(dy, widths[dy]) for dy in range(radius + 1) if dy == radius or widths[dy + 1] < widths[dy]]


def _dilate_disk(image: _Bytes, radius: int, stride: int, wide_pair: list[_Bytes], acc_pair: list[_Bytes]) -> _Bytes:
    """Dilate every bit plane of a flat image by the disk of `radius`, as cv2.dilate with disk(radius) does.

    The disk is the union over its rectangles of V(h) H(w) image, with H and V the row and column
    dilations. Nesting from the tallest, narrowest rectangle outwards shares the work:
    acc <- V(h - h_next) acc | H(w) image, each H(w) grown from the previous one.
    """
    acc: _Bytes | None = None
    wide, width, previous_height = image, 0, 0
    for height, half_width in reversed(_disk_rectangles(radius)):
        if acc is not None:  # grow acc first: it may still be the wide buffer that H overwrites next
            acc = _dilate_line(acc, previous_height - height, stride, acc_pair)
        wide, width = _dilate_line(wide, half_width - width, 1, wide_pair), half_width
        acc = wide if acc is None else np.bitwise_or(acc, wide, out=acc)
        previous_height = height
    assert acc is not None  # a disk has at least one rectangle
    return _dilate_line(acc, previous_height, stride, acc_pair)


def _dilate_line(image: _Bytes, reach: int, step: int, pair: list[_Bytes]) -> _Bytes:
    """OR of `image` shifted by every multiple of `step` in [-reach, reach], doubling the reach as it goes.

    Results alternate between the buffers of `pair`, never the input; returns `image` when reach is 0.
    """
    done = 0
    while done < reach:
        grow = min(2 * done + 1, reach - done)  # [-done, done] | shifted by +-grow covers [-done-grow, done+grow]
        shift = grow * step
        out = pair[1] if image is pair[0] else pair[0]
        np.bitwise_or(image[shift:], image[:-shift], out=out[shift:])
        out[:shift] = image[:shift]
        np.bitwise_or(out[:-shift], image[shift:], out=out[:-shift])
        image, done = out, done + grow
    return image
