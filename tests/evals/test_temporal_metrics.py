"""tIoU and vIoU (Long-RVOS's eval script) on cases worked out by hand."""

from __future__ import annotations

import numpy as np
import pytest

from revseg.evals.temporal_metrics import presence, temporal_iou, temporal_scores, volume_iou


def stack(frames: int, *filled: tuple[int, slice, slice]) -> np.ndarray:
    """(frames, 4, 4) bool masks, with ``mask[t][rows, cols] = True`` for each (t, rows, cols) given."""
    masks = np.zeros((frames, 4, 4), bool)
    for t, rows, cols in filled:
        masks[t, rows, cols] = True
    return masks


ALL = slice(None)
TOP = slice(0, 2)


def test_shared_frames_over_the_union_of_frames_and_j_weighting() -> None:
    # gt has the object on frames 0, 1, 2; the prediction on 1, 2, 3. Frame 1 exact (J = 1); frame 2 the top
    # half of a full gt (J = 8 / 16 = 0.5). Union of frames {0, 1, 2, 3} = 4, shared {1, 2} = 2.
    gt = stack(4, (0, ALL, ALL), (1, ALL, ALL), (2, ALL, ALL))
    pred = stack(4, (1, ALL, ALL), (2, TOP, ALL), (3, ALL, ALL))
    assert temporal_scores(gt, pred) == {"tIoU": 2 / 4, "vIoU": (1 + 0.5) / 4}
    assert temporal_iou(gt, pred) == 0.5 and volume_iou(gt, pred) == 0.375


def test_nothing_anywhere_scores_one_and_an_object_on_one_side_only_scores_zero() -> None:
    empty = stack(3)
    assert temporal_scores(empty, empty) == {"tIoU": 1.0, "vIoU": 1.0}
    present = stack(3, (1, ALL, ALL))
    assert temporal_scores(present, empty) == {"tIoU": 0.0, "vIoU": 0.0}
    assert temporal_scores(empty, present) == {"tIoU": 0.0, "vIoU": 0.0}


def test_right_frames_with_disjoint_masks_have_full_tiou_and_zero_viou() -> None:
    gt = stack(2, (0, TOP, ALL), (1, TOP, ALL))
    pred = stack(2, (0, slice(2, 4), ALL), (1, slice(2, 4), ALL))
    assert temporal_scores(gt, pred) == {"tIoU": 1.0, "vIoU": 0.0}


def test_a_perfect_prediction_that_follows_disappearances_scores_one() -> None:
    gt = stack(5, (0, ALL, ALL), (3, TOP, TOP))  # absent on frames 1, 2 and 4
    assert temporal_scores(gt, gt.copy()) == {"tIoU": 1.0, "vIoU": 1.0}


def test_label_values_count_as_foreground_and_shapes_must_match() -> None:
    labels = stack(2, (0, ALL, ALL)).astype(np.uint8) * 255
    assert list(presence(labels)) == [True, False]
    assert temporal_scores(labels, stack(2, (0, ALL, ALL))) == {"tIoU": 1.0, "vIoU": 1.0}
    with pytest.raises(ValueError, match="shape"):
        temporal_scores(stack(2), stack(3))
    with pytest.raises(ValueError, match=r"\(T, H, W\)"):
        presence(np.zeros((4, 4)))
