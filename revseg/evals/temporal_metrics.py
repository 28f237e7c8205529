"""Temporal IoU (tIoU) and spatiotemporal volume IoU (vIoU), as Long-RVOS's evaluation script defines them.

Long-RVOS (Liang et al., CVPR 2026; github.com/iSEE-Laboratory/Long_RVOS, ``eval/eval_long_rvos``)
scores each expression with the DAVIS J and F of :mod:`revseg.evals.metrics` (its ``metrics.py``
is the DAVIS 2017 code) and with two measures of *when* the object is segmented, over every frame
of the video:

- A frame is a ground-truth frame when the ground-truth mask has a pixel, a predicted frame when
  the prediction has one.
- tIoU = |ground-truth frames ∩ predicted frames| / |ground-truth frames ∪ predicted frames|.
- vIoU = (sum of the per-frame J over the frames in both) / |ground-truth frames ∪ predicted frames|:
  tIoU with each shared frame weighted by how well it is segmented.
- When neither mask has a pixel on any frame (the union is empty), both are 1, as J is for two
  empty masks.

Both are in [0, 1]; vIoU <= tIoU, with equality when every shared frame has J = 1.
"""

from __future__ import annotations

from typing import TypedDict

import numpy as np
import numpy.typing as npt

from revseg.evals.metrics import jaccard

__all__ = ["TemporalScores", "presence", "temporal_iou", "temporal_scores", "volume_iou"]


class TemporalScores(TypedDict):
    """tIoU and vIoU of one expression, as fractions."""

    tIoU: float
    vIoU: float


def presence(masks: npt.ArrayLike) -> npt.NDArray[np.bool_]:
    """Per frame of a (T, H, W) mask stack, whether the mask has a foreground (nonzero) pixel."""
    array = np.asarray(masks)
    if array.ndim != 3:
        raise ValueError(f"masks must have shape (T, H, W), got shape {array.shape}")
    return np.asarray(array.reshape(array.shape[0], -1).any(axis=1))


def temporal_iou(gt: npt.ArrayLike, pred: npt.ArrayLike) -> float:
    """tIoU of (T, H, W) masks: frames where both have the object over frames where either has it (1 if none)."""
    return temporal_scores(gt, pred)["tIoU"]


def volume_iou(gt: npt.ArrayLike, pred: npt.ArrayLike) -> float:
    """vIoU of (T, H, W) masks: the sum of J over frames where both have the object, over the union of frames."""
    return temporal_scores(gt, pred)["vIoU"]


def temporal_scores(gt: npt.ArrayLike, pred: npt.ArrayLike) -> TemporalScores:
    """tIoU and vIoU of one expression's (T, H, W) ground truth and prediction, reading the masks once.

    J is computed only on the frames where both masks have the object (elsewhere it does not count),
    one frame at a time, so a long video's masks are never copied.
    """
    gt_array, pred_array = np.asarray(gt), np.asarray(pred)
    if gt_array.shape != pred_array.shape:
        raise ValueError(f"gt has shape {gt_array.shape} but pred has shape {pred_array.shape}")
    gt_frames, pred_frames = presence(gt_array), presence(pred_array)
    both = gt_frames & pred_frames
    union = int(np.count_nonzero(gt_frames | pred_frames))
    if union == 0:
        return TemporalScores(tIoU=1.0, vIoU=1.0)
    shared = np.flatnonzero(both)
    j_sum = sum(float(jaccard(gt_array[t], pred_array[t])[0]) for t in shared)
    return TemporalScores(tIoU=len(shared) / union, vIoU=j_sum / union)
