"""Box geometry: model boxes onto original frames of any aspect ratio, and the measures rewards use."""

from __future__ import annotations

import numpy as np
import pytest

from revseg.tools.boxes import (
    box_area,
    box_iou,
    clip_box,
    is_degenerate,
    mask_to_box,
    rescale_box,
    union_box,
)

LANDSCAPE = (1280, 720)  # (width, height)
PORTRAIT = (720, 1280)
SEEN = (840, 840)  # the keyframe size the paper feeds turn 2; Qwen2.5-VL keeps it


# --------------------------------------------------------------------------- rescale_box


@pytest.mark.parametrize(
    ("coords", "original", "expected"),
    [
        ((0, 0, 840, 840), LANDSCAPE, (0.0, 0.0, 1280.0, 720.0)),
        ((420, 420, 840, 840), LANDSCAPE, (640.0, 360.0, 1280.0, 720.0)),
        ((210, 105, 630, 315), LANDSCAPE, (320.0, 90.0, 960.0, 270.0)),
        ((0, 0, 840, 840), PORTRAIT, (0.0, 0.0, 720.0, 1280.0)),
        ((210, 105, 630, 315), PORTRAIT, (180.0, 160.0, 540.0, 480.0)),
    ],
    ids=["landscape-full", "landscape-quadrant", "landscape-inner", "portrait-full", "portrait-inner"],
)
def test_absolute_boxes_scale_width_and_height_separately(
    coords: tuple[float, ...], original: tuple[int, int], expected: tuple[float, ...]
) -> None:
    assert rescale_box(coords, convention="absolute", seen_size=SEEN, original_size=original) == pytest.approx(expected)


def test_absolute_boxes_use_the_size_the_model_saw_not_the_size_we_sent() -> None:
    # Qwen2.5-VL resizes to multiples of 28: a 448x448 frame may be seen as 448x448, a 500x300 one as 504x308.
    box = rescale_box((252, 154, 504, 308), convention="absolute", seen_size=(504, 308), original_size=LANDSCAPE)
    assert box == pytest.approx((640.0, 360.0, 1280.0, 720.0))


@pytest.mark.parametrize(
    ("coords", "original", "expected"),
    [
        ((0, 0, 1000, 1000), LANDSCAPE, (0.0, 0.0, 1280.0, 720.0)),
        ((250, 500, 750, 1000), LANDSCAPE, (320.0, 360.0, 960.0, 720.0)),
        ((250, 500, 750, 1000), PORTRAIT, (180.0, 640.0, 540.0, 1280.0)),
    ],
    ids=["landscape-full", "landscape-lower-middle", "portrait-lower-middle"],
)
def test_norm1000_boxes_map_the_grid_onto_the_frame(
    coords: tuple[float, ...], original: tuple[int, int], expected: tuple[float, ...]
) -> None:
    assert rescale_box(coords, convention="norm1000", original_size=original) == pytest.approx(expected)


def test_the_same_numbers_mean_different_boxes_under_the_two_conventions() -> None:
    coords = (100, 100, 500, 500)
    absolute = rescale_box(coords, convention="absolute", seen_size=SEEN, original_size=LANDSCAPE)
    norm = rescale_box(coords, convention="norm1000", seen_size=SEEN, original_size=LANDSCAPE)
    assert absolute == pytest.approx((1280 * 100 / 840, 720 * 100 / 840, 1280 * 500 / 840, 720 * 500 / 840))
    assert norm == pytest.approx((128.0, 72.0, 640.0, 360.0))


def test_inverted_corners_are_swapped() -> None:
    box = rescale_box((630, 315, 210, 105), convention="absolute", seen_size=SEEN, original_size=LANDSCAPE)
    assert box == pytest.approx((320.0, 90.0, 960.0, 270.0))


@pytest.mark.parametrize(
    ("coords", "expected"),
    [
        ((-100, -50, 420, 420), (0.0, 0.0, 640.0, 360.0)),
        ((420, 420, 2000, 5000), (640.0, 360.0, 1280.0, 720.0)),
        ((-10, -10, 5000, 5000), (0.0, 0.0, 1280.0, 720.0)),
        ((900, 100, 1000, 200), (1280.0, 100 * 720 / 840, 1280.0, 200 * 720 / 840)),
    ],
    ids=["top-left-overflow", "bottom-right-overflow", "covers-everything", "wholly-right-of-frame"],
)
def test_boxes_outside_the_image_are_clipped(coords: tuple[float, ...], expected: tuple[float, ...]) -> None:
    box = rescale_box(coords, convention="absolute", seen_size=SEEN, original_size=LANDSCAPE)
    assert box == pytest.approx(expected)


def test_a_box_wholly_outside_the_frame_becomes_degenerate() -> None:
    box = rescale_box((900, 100, 1000, 200), convention="absolute", seen_size=SEEN, original_size=LANDSCAPE)
    assert is_degenerate(box)


@pytest.mark.parametrize(
    "kwargs",
    [
        {"coords": (1, 2, 3), "convention": "absolute", "seen_size": SEEN, "original_size": LANDSCAPE},
        {"coords": (1, 2, 3, float("nan")), "convention": "absolute", "seen_size": SEEN, "original_size": LANDSCAPE},
        {"coords": (1, 2, 3, 4), "convention": "absolute", "original_size": LANDSCAPE},
        {"coords": (1, 2, 3, 4), "convention": "absolute", "seen_size": (0, 840), "original_size": LANDSCAPE},
        {"coords": (1, 2, 3, 4), "convention": "norm1000", "original_size": (1280, 0)},
        {"coords": (1, 2, 3, 4), "convention": "pixels", "seen_size": SEEN, "original_size": LANDSCAPE},
    ],
    ids=["three-coords", "nan", "absolute-without-seen-size", "zero-seen-size", "zero-original", "unknown-convention"],
)
def test_malformed_arguments_are_caller_bugs(kwargs: dict[str, object]) -> None:
    with pytest.raises(ValueError):
        rescale_box(**kwargs)  # type: ignore[arg-type]


def test_clip_box_orders_and_clips_without_rescaling() -> None:
    assert clip_box((50, 80, -5, 10), (40, 60)) == (0.0, 10.0, 40.0, 60.0)


# --------------------------------------------------------------------------- area, IoU, union


def test_box_area_is_zero_for_degenerate_and_inverted_boxes() -> None:
    assert box_area((10, 20, 40, 60)) == 1200.0
    assert box_area((10, 20, 10, 60)) == 0.0
    assert box_area((40, 60, 10, 20)) == 0.0


@pytest.mark.parametrize(
    ("a", "b", "expected"),
    [
        ((0, 0, 10, 10), (0, 0, 10, 10), 1.0),
        ((0, 0, 10, 10), (5, 0, 15, 10), 50 / 150),  # half overlap: 50 / (100 + 100 - 50)
        ((0, 0, 10, 10), (5, 5, 15, 15), 25 / 175),  # quarter overlap
        ((0, 0, 10, 10), (2, 2, 4, 4), 4 / 100),  # contained
        ((0, 0, 10, 10), (10, 0, 20, 10), 0.0),  # touching edges
        ((0, 0, 10, 10), (20, 20, 30, 30), 0.0),  # disjoint
        ((0, 0, 0, 10), (0, 0, 0, 10), 0.0),  # both degenerate: 0, not NaN
        ((0, 0, 1280, 720), (0, 0, 640, 720), 0.5),
    ],
    ids=["identical", "half", "quarter", "contained", "touching", "disjoint", "degenerate", "half-frame"],
)
def test_box_iou_hand_computed(a: tuple[float, ...], b: tuple[float, ...], expected: float) -> None:
    assert box_iou(a, b) == pytest.approx(expected)
    assert box_iou(b, a) == pytest.approx(expected)


def test_spatial_reward_threshold_sits_between_these_two_boxes() -> None:
    # DESIGN.md 1.4 pays r_s when IoU > 0.5: 60 of 100 columns overlapping gives 0.6 / 1.4 < 0.5.
    assert box_iou((0, 0, 100, 100), (40, 0, 140, 100)) < 0.5
    assert box_iou((0, 0, 100, 100), (20, 0, 120, 100)) > 0.5


def test_union_box_encloses_all_boxes_and_is_none_for_none() -> None:
    assert union_box([(10, 20, 30, 40), (5, 25, 20, 60), (12, 22, 50, 30)]) == (5.0, 20.0, 50.0, 60.0)
    assert union_box([(1, 2, 3, 4)]) == (1.0, 2.0, 3.0, 4.0)
    assert union_box([]) is None
    assert union_box(iter([])) is None


# --------------------------------------------------------------------------- masks


def test_mask_to_box_uses_exclusive_right_and_bottom_edges() -> None:
    mask = np.zeros((720, 1280), dtype=bool)
    mask[4, 3] = True
    assert mask_to_box(mask) == (3.0, 4.0, 4.0, 5.0)
    assert box_area(mask_to_box(mask) or (0, 0, 0, 0)) == 1.0


def test_mask_to_box_is_tight_on_a_landscape_frame() -> None:
    mask = np.zeros((720, 1280), dtype=bool)
    mask[100:200, 300:700] = True
    mask[150, 1279] = True  # one pixel on the right edge
    assert mask_to_box(mask) == (300.0, 100.0, 1280.0, 200.0)


def test_mask_to_box_accepts_non_boolean_masks_on_a_portrait_frame() -> None:
    mask = np.zeros((1280, 720), dtype=np.uint8)
    mask[1000:1280, 0:10] = 255
    assert mask_to_box(mask) == (0.0, 1000.0, 10.0, 1280.0)


def test_mask_to_box_of_an_empty_mask_is_none() -> None:
    assert mask_to_box(np.zeros((720, 1280), dtype=bool)) is None


def test_mask_to_box_rejects_non_2d_arrays() -> None:
    with pytest.raises(ValueError, match="2-D"):
        mask_to_box(np.zeros((2, 720, 1280), dtype=bool))


def test_mask_box_iou_with_itself_is_one() -> None:
    mask = np.zeros((64, 48), dtype=bool)
    mask[10:20, 5:9] = True
    box = mask_to_box(mask)
    assert box is not None and box_area(box) == mask.sum()
    assert box_iou(box, box) == 1.0


# --------------------------------------------------------------------------- degenerate


@pytest.mark.parametrize(
    ("box", "expected"),
    [
        ((0, 0, 10, 10), False),
        ((0, 0, 0.5, 0.5), False),
        ((5, 0, 5, 10), True),
        ((0, 5, 10, 5), True),
        ((10, 10, 0, 0), True),
        ((0, 0, float("nan"), 10), True),
    ],
    ids=["normal", "sub-pixel", "zero-width", "zero-height", "inverted", "nan"],
)
def test_is_degenerate(box: tuple[float, ...], expected: bool) -> None:
    assert is_degenerate(box) is expected
