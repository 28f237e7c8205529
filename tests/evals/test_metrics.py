"""J and F against the official DAVIS 2017 numbers, hand-worked cases, and a brute-force reference."""

from __future__ import annotations

import json
from functools import cache
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays
from PIL import Image

from revseg.evals.metrics import _disk_rectangles, boundary_f, j_and_f, jaccard, tolerance_pixels

DAVIS = Path(__file__).resolve().parents[3] / "shared" / "data" / "davis2017-results"
EXPECTED = DAVIS / "expected_rvos_vs_osvos.json"
VIDEOS = sorted(path.name for path in (DAVIS / "osvos").iterdir()) if EXPECTED.is_file() else ["<missing>"]


def frame(height: int, width: int, *pixels: tuple[int, int]) -> np.ndarray:
    """A (height, width) bool mask with the given (row, col) pixels set."""
    mask = np.zeros((height, width), bool)
    for pixel in pixels:
        mask[pixel] = True
    return mask


# --- the official numbers on real masks -------------------------------------------------------------------


@cache
def expected() -> dict[str, dict[str, list[float]]]:
    """Per object "<video>/<id>": the official per-frame J and F with osvos as gt and rvos as prediction."""
    result: dict[str, dict[str, list[float]]] = json.loads(EXPECTED.read_text())
    return result


def labels(method: str, video: str) -> np.ndarray:
    """A method's (T, H, W) object-id masks of a video, decoded from its DAVIS palette PNGs."""
    files = sorted((DAVIS / method / video).glob("*.png"))
    return np.stack([np.asarray(Image.open(file)) for file in files])


@pytest.mark.parametrize("video", VIDEOS)
def test_every_frame_matches_the_official_davis_code(video: str) -> None:
    if not EXPECTED.is_file():
        pytest.skip(f"shared DAVIS masks not found: expected {EXPECTED} (see shared/data/README.md)")
    gt_labels, pred_labels = labels("osvos", video), labels("rvos", video)
    objects = [key for key in expected() if key.split("/")[0] == video]
    assert objects, f"no expected numbers for {video}"
    for key in objects:
        object_id = int(key.split("/")[1])
        gt, pred = gt_labels == object_id, pred_labels == object_id
        scores = j_and_f(gt, pred)
        official = expected()[key]
        np.testing.assert_allclose(scores["J"], official["J"], rtol=0, atol=1e-9, err_msg=f"J of {key}")
        np.testing.assert_allclose(scores["F"], official["F"], rtol=0, atol=1e-9, err_msg=f"F of {key}")
        np.testing.assert_array_equal(jaccard(gt, pred), scores["J"], err_msg=f"jaccard of {key}")
        np.testing.assert_array_equal(boundary_f(gt, pred), scores["F"], err_msg=f"boundary_f of {key}")


# --- hand-worked cases ------------------------------------------------------------------------------------


def test_both_empty_scores_one() -> None:
    empty = np.zeros((3, 6, 9), bool)
    assert jaccard(empty, empty).tolist() == [1.0, 1.0, 1.0]
    assert boundary_f(empty, empty).tolist() == [1.0, 1.0, 1.0]


def test_an_object_on_one_side_only_scores_zero() -> None:
    empty, blob = np.zeros((6, 9), bool), np.zeros((6, 9), bool)
    blob[1:3, 2:5] = True
    for gt, pred in ((empty, blob), (blob, empty)):
        assert jaccard(gt, pred).tolist() == [0.0]
        assert boundary_f(gt, pred).tolist() == [0.0]


def test_full_masks_have_no_boundary() -> None:
    # Neighbours past the frame's edge equal the pixel, so a full mask's boundary map is empty:
    # full vs full scores F = 1; full vs a 2x3 blob scores F = 0 (boundary on one side only).
    full, blob = np.ones((6, 9), bool), np.zeros((6, 9), bool)
    blob[1:3, 2:5] = True
    assert jaccard(full, full).tolist() == [1.0]
    assert boundary_f(full, full).tolist() == [1.0]
    assert jaccard(full, blob).tolist() == [6 / 54]
    assert boundary_f(full, blob).tolist() == [0.0]


def test_one_pixel_objects() -> None:
    # A lone pixel's boundary is the 2x2 square it closes to the top left; at 10x10 the tolerance is
    # ceil(0.008 * 14.1) = 1 pixel. Neighbouring pixels: no overlap, yet every boundary pixel is 1 away.
    same = boundary_f(frame(10, 10, (3, 3)), frame(10, 10, (3, 3)))
    assert same.tolist() == [1.0]
    assert jaccard(frame(10, 10, (3, 3)), frame(10, 10, (3, 4))).tolist() == [0.0]
    assert boundary_f(frame(10, 10, (3, 3)), frame(10, 10, (3, 4))).tolist() == [1.0]
    assert boundary_f(frame(10, 10, (3, 3)), frame(10, 10, (7, 8))).tolist() == [0.0]


def test_pixel_in_a_corner_against_a_two_by_two_block() -> None:
    # gt (0, 0) has boundary {(0, 0)}; the block rows 0-1 x cols 0-1 has {(0, 1), (1, 0), (1, 1)}.
    # With a 1-pixel tolerance (1, 1) is sqrt(2) away: precision 2/3, recall 1, F = 0.8; J = 1/4.
    gt, pred = frame(4, 4, (0, 0)), frame(4, 4, (0, 0), (0, 1), (1, 0), (1, 1))
    assert jaccard(gt, pred).tolist() == [0.25]
    assert boundary_f(gt, pred, bound_th=1) == pytest.approx([0.8], rel=1e-12)


def test_masks_touching_the_bottom_right_border() -> None:
    # gt: rows 2-3 x cols 2-3 of a 4x4 frame, boundary {(1,1), (1,2), (1,3), (2,1), (3,1)}: nothing along
    # the border. pred: rows 1-3 x cols 1-3, boundary row 0 and column 0 (7 pixels), of which all but
    # (0, 0) lie 1 pixel from gt's: precision 6/7, recall 5/5, F = 12/13; J = 4/9.
    gt, pred = np.zeros((4, 4), bool), np.zeros((4, 4), bool)
    gt[2:, 2:], pred[1:, 1:] = True, True
    assert jaccard(gt, pred) == pytest.approx([4 / 9], rel=1e-15)
    assert boundary_f(gt, pred, bound_th=1) == pytest.approx([12 / 13], rel=1e-12)


@pytest.mark.parametrize(("column", "expected_f"), [(3, 1.0), (4, 0.5), (5, 0.0)])
def test_non_square_frame_with_vertical_bars(column: int, expected_f: float) -> None:
    # 5x12 frame: diagonal 13, tolerance ceil(0.104) = 1 pixel. A full-height bar in column c has the
    # boundary columns c-1 and c. gt in column 2 against pred in column 3: all matched; column 4: only
    # the facing boundary columns (2 and 3) match, F = 0.5; column 5: none.
    gt, pred = np.zeros((5, 12), bool), np.zeros((5, 12), bool)
    gt[:, 2], pred[:, column] = True, True
    assert jaccard(gt, pred).tolist() == [0.0]
    assert boundary_f(gt, pred).tolist() == [expected_f]


@pytest.mark.parametrize(
    ("bound_th", "height", "width", "pixels"),
    [
        (0.008, 480, 854, 8),
        (0.008, 480, 910, 9),
        (0.008, 480, 1152, 10),
        (0.008, 5, 12, 1),
        (0.0, 9, 9, 0),
        (3, 9, 9, 3),
    ],
)
def test_tolerance_is_the_rounded_up_fraction_of_the_diagonal_or_whole_pixels(
    bound_th: float, height: int, width: int, pixels: int
) -> None:
    assert tolerance_pixels(bound_th, height, width) == pixels


@pytest.mark.parametrize("bound_th", [-0.1, 2.5, float("nan"), float("inf")])
def test_unusable_tolerance_is_refused(bound_th: float) -> None:
    with pytest.raises(ValueError, match="bound_th"):
        boundary_f(np.zeros((4, 4), bool), np.zeros((4, 4), bool), bound_th=bound_th)


def test_shape_mismatch_names_both_shapes() -> None:
    with pytest.raises(ValueError, match=r"\(2, 4, 5\).*\(2, 5, 4\)"):
        jaccard(np.zeros((2, 4, 5), bool), np.zeros((2, 5, 4), bool))
    with pytest.raises(ValueError, match=r"\(3, 4, 5\).*\(2, 4, 5\)"):
        j_and_f(np.zeros((3, 4, 5), bool), np.zeros((2, 4, 5), bool))


@pytest.mark.parametrize("shape", [(4,), (1, 2, 3, 4), (2, 0, 5)])
def test_masks_that_are_not_frames_are_refused(shape: tuple[int, ...]) -> None:
    with pytest.raises(ValueError, match="shape"):
        boundary_f(np.zeros(shape, bool), np.zeros(shape, bool))


def test_label_values_count_as_foreground_like_booleans() -> None:
    rng = np.random.default_rng(0)
    gt, pred = rng.random((5, 20, 30)) < 0.4, rng.random((5, 20, 30)) < 0.4
    as_uint8 = j_and_f(gt.astype(np.uint8) * 255, pred.astype(np.uint8) * 7)
    as_bool = j_and_f(gt, pred)
    np.testing.assert_array_equal(as_uint8["J"], as_bool["J"])
    np.testing.assert_array_equal(as_uint8["F"], as_bool["F"])


def test_single_frame_and_means() -> None:
    gt, pred = np.zeros((2, 4, 4), bool), np.zeros((2, 4, 4), bool)
    gt[:, 2:, 2:], pred[0, 1:, 1:] = True, True
    assert jaccard(gt[0], pred[0]).shape == (1,)
    scores = j_and_f(gt, pred, bound_th=1)
    assert scores["J"].tolist() == [4 / 9, 0.0]
    assert scores["J_mean"] == pytest.approx(2 / 9)
    assert scores["F_mean"] == pytest.approx(6 / 13)
    assert scores["JF_mean"] == pytest.approx((2 / 9 + 6 / 13) / 2)
    with pytest.raises(ValueError, match="at least one frame"):
        j_and_f(np.zeros((0, 4, 4), bool), np.zeros((0, 4, 4), bool))


def test_tolerance_disk_is_the_official_one() -> None:
    # The official code dilates with skimage.morphology.disk(r); our rectangles must cover exactly it.
    morphology = pytest.importorskip("skimage.morphology")
    for radius in range(31):
        covered = np.zeros((2 * radius + 1, 2 * radius + 1), bool)
        for half_height, half_width in _disk_rectangles(radius):
            covered[radius - half_height : radius + half_height + 1, radius - half_width : radius + half_width + 1] = (
                True
            )
        np.testing.assert_array_equal(covered, morphology.disk(radius).astype(bool), err_msg=f"radius {radius}")


# --- a brute-force reference, written from the definitions ------------------------------------------------


def reference_boundary(mask: np.ndarray) -> np.ndarray:
    """Pixels whose 2x2 block (east, south, south-east; the frame's last row and column repeated) varies."""
    padded = np.pad(mask, ((0, 1), (0, 1)), mode="edge")
    block = np.stack([padded[:-1, :-1], padded[:-1, 1:], padded[1:, :-1], padded[1:, 1:]])
    return np.logical_and(np.logical_or.reduce(block), ~np.logical_and.reduce(block))


def reference_near(edges: np.ndarray, radius: int) -> np.ndarray:
    """Pixels within the disk dy² + dx² <= radius² of an edge pixel, one offset at a time."""
    height, width = edges.shape
    near = np.zeros_like(edges)
    for dy in range(-radius, radius + 1):
        for dx in range(-radius, radius + 1):
            if dy * dy + dx * dx <= radius * radius and abs(dy) < height and abs(dx) < width:
                near[max(dy, 0) : height + min(dy, 0), max(dx, 0) : width + min(dx, 0)] |= edges[
                    max(-dy, 0) : height + min(-dy, 0), max(-dx, 0) : width + min(-dx, 0)
                ]
    return near


def reference_scores(gt: np.ndarray, pred: np.ndarray, radius: int) -> tuple[float, float]:
    """(J, F) of one frame."""
    union = int((gt | pred).sum())
    j = (gt & pred).sum() / union if union else 1.0
    gt_edges, pred_edges = reference_boundary(gt), reference_boundary(pred)
    n_gt, n_pred = int(gt_edges.sum()), int(pred_edges.sum())
    if n_gt == 0 or n_pred == 0:
        return float(j), 1.0 if n_gt == n_pred else 0.0
    precision = (pred_edges & reference_near(gt_edges, radius)).sum() / n_pred
    recall = (gt_edges & reference_near(pred_edges, radius)).sum() / n_gt
    f = 0.0 if precision + recall == 0 else 2 * precision * recall / (precision + recall)
    return float(j), float(f)


@st.composite
def mask_pairs(draw: Any) -> tuple[np.ndarray, np.ndarray]:
    """Two bool arrays of one random (T, H, W) shape, from sparse to nearly full."""
    shape = (draw(st.integers(1, 6)), draw(st.integers(1, 12)), draw(st.integers(1, 12)))
    masks = arrays(np.bool_, shape, elements=st.booleans())
    return draw(masks), draw(masks)


@settings(max_examples=150, deadline=None)
@given(pair=mask_pairs(), bound_th=st.sampled_from([0.0, 0.008, 0.1, 0.3, 1, 2, 3, 5, 20]))
def test_matches_a_brute_force_reference(pair: tuple[np.ndarray, np.ndarray], bound_th: float) -> None:
    gt, pred = pair
    radius = tolerance_pixels(bound_th, *gt.shape[1:])
    reference = np.array([reference_scores(g, p, radius) for g, p in zip(gt, pred, strict=True)])
    scores = j_and_f(gt, pred, bound_th=bound_th)
    np.testing.assert_array_equal(scores["J"], reference[:, 0])
    np.testing.assert_array_equal(scores["F"], reference[:, 1])
    np.testing.assert_array_equal(jaccard(gt, pred), reference[:, 0])
    np.testing.assert_array_equal(boundary_f(gt, pred, bound_th=bound_th), reference[:, 1])
