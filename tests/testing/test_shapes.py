"""The synthetic shapes task: exact masks, hidden targets, and answers that the ground truth scores in full."""

from __future__ import annotations

import functools
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from revseg.rl.collect import CollectItem, collect
from revseg.rl.groundtruth import MaskGroundTruth
from revseg.rl.rewards import RewardConfig, compute_rewards
from revseg.settings import ChainSettings
from revseg.testing.shapes import (
    BACKGROUND,
    COLOURS,
    QUERIES,
    QUERY_KINDS,
    ShapesTeacher,
    background_ramp,
    keyframe_index,
    make_clips,
    visible_indices,
)
from revseg.tools.boxes import box_area, mask_to_box
from revseg.tools.frames import sample_indices
from revseg.trajectory_store import TrajectoryStore

CLIPS = make_clips(seed=7, count=15)  # three of each query kind


def colour_pixels(frame: np.ndarray, rgb: tuple[int, int, int]) -> np.ndarray:
    return np.all(frame == np.array(rgb, dtype=np.uint8), axis=-1)


def test_every_mask_is_exactly_the_pixels_of_its_shapes_colour() -> None:
    for clip in CLIPS:
        for t in range(clip.num_frames):
            frame = clip.frame(t)
            painted = np.zeros(frame.shape[:2], dtype=bool)
            for index, shape in enumerate(clip.shapes):
                mask = clip.mask(t, index)
                assert np.array_equal(mask, colour_pixels(frame, COLOURS[shape.colour])), (clip.name, t, index)
                painted |= mask
            assert np.array_equal(~painted, colour_pixels(frame, BACKGROUND))
            # an unoccluded shape's pixel count is its full drawn area
            for index, shape in enumerate(clip.shapes):
                if index != clip.target or clip.query_kind not in ("disappears", "name"):
                    assert clip.mask(t, index).sum() == shape.coverage(t, clip.size).sum() > 0


def test_queries_have_one_answer_and_hidden_frames_are_empty() -> None:
    assert {c.query_kind for c in CLIPS} == set(QUERY_KINDS)
    for clip in CLIPS:
        target = clip.shapes[clip.target]
        areas = [clip.mask(t).sum() for t in range(clip.num_frames)]
        if clip.query_kind in QUERIES:
            assert clip.query == QUERIES[clip.query_kind]
        else:
            assert clip.query in (f"the {target.name}", f"the {target.colour} shape")
        if clip.query_kind == "disappears":
            assert areas[0] > 0 and areas[-1] == 0
            assert clip.target_box(clip.num_frames - 1) is None and clip.target_mask(clip.num_frames - 1) is not None
        others = [s for i, s in enumerate(clip.shapes) if i != clip.target]
        if clip.query_kind == "grows":
            assert target.sizes[-1] > target.sizes[0] and all(s.sizes[-1] <= s.sizes[0] for s in others)
        if clip.query_kind == "shrinks":
            assert target.sizes[-1] < target.sizes[0] and all(s.sizes[-1] >= s.sizes[0] for s in others)
        if clip.query_kind == "moves":
            assert target.centres[0] != target.centres[-1] and all(s.centres[0] == s.centres[-1] for s in others)
        assert clip.target_mask(-1) is None and clip.target_mask(clip.num_frames) is None


def test_ground_truth_boxes_are_the_tight_boxes_of_the_masks() -> None:
    clip = next(c for c in CLIPS if c.query_kind == "disappears")
    truth = MaskGroundTruth(clip.target_mask)
    for t in range(clip.num_frames):
        mask = clip.mask(t)
        assert truth.box(t) == mask_to_box(mask) == clip.target_box(t)
        box = clip.target_box(t)
        if box is not None:
            x1, y1, x2, y2 = (int(v) for v in box)
            assert mask[y1:y2, x1:x2].sum() == mask.sum()  # nothing outside the box
    sampled = sample_indices(clip.num_frames, 4)
    best = keyframe_index(clip, sampled)
    areas = [box_area(b) for t in sampled if (b := truth.box(t)) is not None]
    best_box = truth.box(sampled[best])
    assert best_box is not None and box_area(best_box) == max(areas)


def test_png_frames_round_trip_exactly(tmp_path: Path) -> None:
    clip = CLIPS[3]
    folder = clip.write(tmp_path / clip.name)
    names = sorted(p.name for p in folder.iterdir())
    assert names == [f"{t:05d}.png" for t in range(clip.num_frames)]
    for t, name in enumerate(names):
        assert np.array_equal(np.asarray(Image.open(folder / name).convert("RGB")), clip.frame(t))


def test_same_seed_same_clips_and_splits_differ() -> None:
    again = make_clips(seed=7, count=15)
    assert [c.query for c in again] == [c.query for c in CLIPS]
    assert all(np.array_equal(a.frame(3), b.frame(3)) for a, b in zip(again, CLIPS, strict=True))
    other = make_clips(seed=8, count=15)
    assert not all(np.array_equal(a.frame(0), b.frame(0)) for a, b in zip(other, CLIPS, strict=True))


def test_the_teachers_chain_through_collect_earns_the_full_reward(tmp_path: Path) -> None:
    settings = ChainSettings(num_frames=4, frame_size=(56, 56), keyframe_size=(112, 112))
    store = TrajectoryStore(tmp_path / "store")
    clips = CLIPS[:5]  # one clip of each query kind
    for clip in clips:
        folder = str(clip.write(tmp_path / clip.name))
        for rule in ("largest", "visible"):
            item = CollectItem(
                f"{clip.name}/{rule}", folder, clip.query, functools.partial(MaskGroundTruth, clip.target_mask)
            )
            collect([item], ShapesTeacher(clip, keyframe=rule), store, group_size=1, settings=settings)
    records = {t.query_id: t for t in store}
    binary = RewardConfig(temporal="binary")
    for clip in clips:
        sampled = sample_indices(clip.num_frames, 4)
        truth = MaskGroundTruth(clip.target_mask)
        best = records[f"{clip.name}/largest"]
        assert best.rewards is not None and best.rewards["total"] == 3.0, (clip.name, best.rewards)
        assert best.rewards["iou"] > 0.9 and best.targets[0].description == clip.description
        assert best.targets[0].frame_index == sampled[keyframe_index(clip, sampled)]
        any_visible = records[f"{clip.name}/visible"]
        assert compute_rewards(any_visible, truth, binary).total == 3.0
        assert any_visible.targets[0].sample_idx in visible_indices(clip, sampled)


def test_the_teachers_box_grid_rounds_each_coordinate_to_a_multiple_of_it() -> None:
    from revseg.testing.shapes import turn2_answer

    assert turn2_answer((10.0, 21.0, 60.4, 100.0), (112, 112), (112, 112)) == '[{"bbox_2d": [10, 21, 60, 100]}]'
    assert turn2_answer((10.0, 21.0, 60.4, 100.0), (112, 112), (112, 112), grid=8) == '[{"bbox_2d": [8, 24, 64, 96]}]'


def test_a_box_thinner_than_the_grid_keeps_one_grid_step_inside_the_image() -> None:
    from revseg.testing.shapes import turn2_answer

    # a sliver at the bottom edge (y 105-112) used to round to y1 == y2 == 112, a box of no height
    sliver = turn2_answer((30.0, 105.0, 60.0, 112.0), (112, 112), (112, 112), grid=14)
    assert sliver == '[{"bbox_2d": [28, 98, 56, 112]}]'
    assert turn2_answer((2.0, 3.0, 5.0, 6.0), (112, 112), (112, 112), grid=14) == '[{"bbox_2d": [0, 0, 14, 14]}]'


def test_larger_and_fewer_shapes_on_request_and_the_defaults_draw_the_same_clips() -> None:
    again = make_clips(seed=7, count=15, shape_scale=1.0, max_shapes=3)
    assert [c.shapes for c in again] == [c.shapes for c in CLIPS]
    big = make_clips(seed=7, count=15, shape_scale=1.5, max_shapes=2)
    assert all(len(c.shapes) == 2 for c in big)
    assert [c.query_kind for c in big] == [c.query_kind for c in CLIPS]
    mean_area = lambda clips: np.mean([c.mask(0, i).sum() for c in clips for i in range(len(c.shapes))])  # noqa: E731
    assert mean_area(big) > 1.8 * mean_area(CLIPS)  # sizes x 1.5: areas about x 2.25 (less where shapes hide)
    with pytest.raises(ValueError, match="max_shapes must be 2 or 3"):
        make_clips(seed=7, count=1, max_shapes=4)


def test_clear_keyframes_show_the_target_at_least_half_its_largest() -> None:
    hiding = [c for c in CLIPS if c.query_kind == "disappears"]
    sampled = list(range(hiding[0].num_frames))
    slivers = 0
    for clip in hiding:
        areas = [box_area(b) if (b := clip.target_box(t)) else 0.0 for t in sampled]
        clear = visible_indices(clip, sampled, 0.5)
        assert clear and all(areas[i] >= 0.5 * max(areas) for i in clear)
        assert set(clear) <= set(visible_indices(clip, sampled))
        slivers += len(visible_indices(clip, sampled)) - len(clear)  # a sliver while leaving: visible, not clear
        teacher = ShapesTeacher(clip, keyframe="clear")
        assert teacher.keyframe == "clear"
    assert slivers > 0
    with pytest.raises(ValueError, match="largest, visible, clear"):
        ShapesTeacher(CLIPS[0], keyframe="best")


def test_a_gradient_background_keeps_every_layout_and_mask_and_tells_each_pixel_where_it_is() -> None:
    graded = make_clips(seed=7, count=15, background="gradient")
    ramp = background_ramp(CLIPS[0].size)
    for plain, clip in zip(CLIPS, graded, strict=True):
        assert clip.query == plain.query and clip.shapes == plain.shapes
        for t in (0, clip.num_frames - 1):
            frame = clip.frame(t)
            for index, shape in enumerate(clip.shapes):
                assert np.array_equal(clip.mask(t, index), colour_pixels(frame, COLOURS[shape.colour]))
            background = clip.labels(t) < 0
            assert np.array_equal(frame[background], ramp[background])
    # red rises left to right and green top to bottom, by about 100 levels across the frame
    red, green = ramp[..., 0].astype(int), ramp[..., 1].astype(int)
    assert np.all(np.diff(red, axis=1) >= 0) and np.all(np.diff(green, axis=0) >= 0)
    assert np.all(red[:, -1] - red[:, 0] >= 95) and np.all(green[-1] - green[0] >= 95)
    assert np.all(np.diff(red, axis=0) == 0) and np.all(np.diff(green, axis=1) == 0)


def test_an_unknown_background_is_refused_with_the_choices() -> None:
    with pytest.raises(ValueError, match="plain, gradient"):
        make_clips(seed=7, count=1, background="stripes")
