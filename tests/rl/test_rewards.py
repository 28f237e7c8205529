"""Rewards against hand-computed cases (DESIGN.md 1.4, paper Eqs. 7-8)."""

from __future__ import annotations

import math

import numpy as np
import pytest

from revseg.rl.groundtruth import BoxGroundTruth, MaskGroundTruth, masks_box
from revseg.rl.rewards import (
    RewardConfig,
    compute_rewards,
    format_rewards,
    score,
    soft_temporal_reward,
    spatial_reward,
    temporal_reward,
)
from revseg.trajectory import Status
from tests.rl.factories import STRICT_T2, make_trajectory, turn1

SAMPLED = [0, 33, 66, 99]


def gt(**frames: list[tuple[float, float, float, float]]) -> BoxGroundTruth:
    """GT from ``f<index>=[box, ...]`` keywords."""
    return BoxGroundTruth({int(k[1:]): v for k, v in frames.items()})


def target(k: int, box: tuple[float, float, float, float] | None = (10, 20, 110, 220)) -> dict:
    return {"sample_idx": SAMPLED.index(k), "frame_index": k, "box": box}


# --------------------------------------------------------------------------- the pure functions


def test_soft_temporal_reward_is_eq7_over_sampled_areas() -> None:
    areas = [0.0, 100.0, 400.0, 200.0]
    assert soft_temporal_reward(200.0, areas) == pytest.approx(0.5)  # (200 - 0) / (400 - 0)
    assert soft_temporal_reward(400.0, areas) == 1.0
    assert soft_temporal_reward(100.0, [100.0, 300.0, 500.0]) == 0.0  # present, but the smallest
    assert soft_temporal_reward(None, areas) == 0.0  # absent at k


def test_soft_temporal_reward_with_max_equal_min_is_presence() -> None:
    assert soft_temporal_reward(100.0, [100.0, 100.0, 100.0]) == 1.0
    assert soft_temporal_reward(None, [0.0, 0.0, 0.0]) == 0.0


def test_temporal_variants() -> None:
    areas = [0.0, 100.0, 400.0]
    assert temporal_reward(100.0, areas, "soft") == pytest.approx(0.25)
    assert temporal_reward(100.0, areas, "binary") == 1.0
    assert temporal_reward(None, areas, "binary") == 0.0
    assert temporal_reward(400.0, areas, "none") == 0.0
    with pytest.raises(ValueError, match="unknown temporal reward"):
        temporal_reward(1.0, areas, "hard")  # type: ignore[arg-type]


def test_spatial_reward_needs_iou_strictly_above_threshold() -> None:
    assert spatial_reward((0, 0, 10, 10), (0, 0, 10, 10)) == 1.0
    assert spatial_reward((0, 0, 10, 10), (0, 0, 10, 20)) == 0.0  # IoU exactly 0.5
    assert spatial_reward((0, 0, 10, 10), (0, 0, 10, 19)) == 1.0  # 100 / 190
    assert spatial_reward(None, (0, 0, 10, 10)) == 0.0
    assert spatial_reward((0, 0, 10, 10), None) == 0.0


def test_config_rejects_unknown_variant() -> None:
    with pytest.raises(ValueError, match="unknown temporal reward"):
        RewardConfig(temporal="hard")  # type: ignore[arg-type]


def test_config_is_keyword_only_and_rejects_weights_that_are_not_numbers() -> None:
    with pytest.raises(TypeError):
        RewardConfig("binary")  # type: ignore[misc]  # the slip that once set format_weight="binary"
    with pytest.raises(ValueError, match="spatial_weight must be a finite number"):
        RewardConfig(spatial_weight="2")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="format_weight must be a finite number"):
        RewardConfig(format_weight=math.nan)


# --------------------------------------------------------------------------- whole trajectories


def test_full_success_hand_computed() -> None:
    # GT areas on the sampled frames: 0 (absent), 100*200, 200*200, 100*100 -> keyframe 33: (20000-0)/(40000-0)
    truth = gt(f33=[(10, 20, 110, 220)], f66=[(0, 0, 200, 200)], f99=[(0, 0, 100, 100)])
    traj = make_trajectory(sampled=SAMPLED, t1=turn1(1), t2=[STRICT_T2], targets=[target(33)])
    r = compute_rewards(traj, truth)
    assert (r.format, r.temporal, r.spatial, r.iou) == (1.0, pytest.approx(0.5), 1.0, 1.0)
    assert r.total == pytest.approx(1.0 + 0.5 + 1.0)
    assert (r.turn1_parsed, r.both_parsed) == (1.0, 1.0)


def test_target_absent_at_keyframe_earns_no_temporal_or_spatial_reward() -> None:
    truth = gt(f66=[(0, 0, 200, 200)])
    traj = make_trajectory(sampled=SAMPLED, t1=turn1(0), t2=[STRICT_T2], targets=[target(0)])
    r = compute_rewards(traj, truth)
    assert (r.temporal, r.spatial, r.iou) == (0.0, 0.0, 0.0)
    assert r.total == 1.0  # format only


def test_equal_box_areas_give_presence_as_temporal_reward() -> None:
    box = (10, 20, 110, 220)
    truth = gt(f0=[box], f33=[box], f66=[box], f99=[box])
    traj = make_trajectory(sampled=SAMPLED, t1=turn1(2), t2=[STRICT_T2], targets=[target(66)])
    r = compute_rewards(traj, truth)
    assert r.temporal == 1.0 and r.total == 3.0
    binary = compute_rewards(traj, truth, RewardConfig(temporal="binary"))
    none = compute_rewards(traj, truth, RewardConfig(temporal="none"))
    assert (binary.temporal, none.temporal, none.total) == (1.0, 0.0, 2.0)


def test_multi_object_ground_truth_is_scored_through_its_union_box() -> None:
    # two GT objects: union (0, 0, 300, 300); the prediction covers only the first
    truth = gt(f33=[(0, 0, 100, 100), (200, 200, 300, 300)])
    one = make_trajectory(sampled=SAMPLED, t1=turn1(1), t2=[STRICT_T2], targets=[target(33, (0, 0, 100, 100))])
    both = make_trajectory(sampled=SAMPLED, t1=turn1(1), t2=[STRICT_T2], targets=[target(33, (0, 0, 300, 300))])
    r_one, r_both = compute_rewards(one, truth), compute_rewards(both, truth)
    assert r_one.iou == pytest.approx(100 * 100 / (300 * 300)) and r_one.spatial == 0.0
    assert r_both.iou == 1.0 and r_both.spatial == 1.0
    assert r_both.temporal == 1.0  # the only frame with the target


def test_two_predicted_objects_on_one_keyframe_are_merged() -> None:
    truth = gt(f33=[(0, 0, 100, 100), (200, 200, 300, 300)])
    traj = make_trajectory(
        sampled=SAMPLED,
        t1=turn1(1),
        t2=[STRICT_T2, STRICT_T2],
        targets=[target(33, (0, 0, 100, 100)), target(33, (200, 200, 300, 300))],
    )
    assert compute_rewards(traj, truth).spatial == 1.0


def test_unparsed_turn1_gates_out_temporal_and_spatial() -> None:
    truth = gt(f0=[(0, 0, 10, 10)])
    traj = make_trajectory(sampled=SAMPLED, t1="I cannot tell.", status=Status.FAILED_SELECT_FRAMES)
    r = compute_rewards(traj, truth)
    assert r.as_dict() == {
        "total": 0.0,
        "format": 0.0,
        "temporal": 0.0,
        "spatial": 0.0,
        "format_interpret": 0.0,
        "format_ground": 0.0,
        "turn1_parsed": 0.0,
        "both_parsed": 0.0,
        "iou": 0.0,
    }


def test_failed_turn2_keeps_format_and_temporal_but_not_spatial() -> None:
    truth = gt(f33=[(10, 20, 110, 220)])
    traj = make_trajectory(
        sampled=SAMPLED, t1=turn1(1), t2=["no idea"], targets=[target(33, None)], status=Status.FAILED_GROUND
    )
    traj.turns[1].parse_ok = False
    r = compute_rewards(traj, truth)
    assert (r.format_interpret, r.format_ground, r.temporal, r.spatial) == (0.5, 0.0, 1.0, 0.0)
    assert (r.turn1_parsed, r.both_parsed, r.total) == (1.0, 0.0, 1.5)


def test_lenient_answers_run_the_chain_but_earn_no_format_credit() -> None:
    truth = gt(f33=[(10, 20, 110, 220)])
    loose1 = 'I think it is [{"frame": 1, "description": "red car"}]'  # no tags, key variants
    loose2 = "The box is [10, 20, 110, 220]."
    traj = make_trajectory(sampled=SAMPLED, t1=loose1, t2=[loose2], targets=[target(33)])
    r = compute_rewards(traj, truth)
    assert (r.format, r.turn1_parsed, r.both_parsed) == (0.0, 1.0, 1.0)
    assert r.total == 2.0  # r_t + r_s, still gated in by the lenient parses
    assert format_rewards(make_trajectory(sampled=SAMPLED, t1=turn1(1), t2=[loose2], targets=[target(33)])) == (
        0.5,
        0.0,
    )


def test_weights_scale_each_component() -> None:
    truth = gt(f33=[(10, 20, 110, 220)], f66=[(0, 0, 200, 200)])
    traj = make_trajectory(sampled=SAMPLED, t1=turn1(1), t2=[STRICT_T2], targets=[target(33)])
    config = RewardConfig(format_weight=0.5, temporal_weight=2.0, spatial_weight=3.0)
    r = compute_rewards(traj, truth, config)
    assert r.temporal == pytest.approx(0.5)
    assert r.total == pytest.approx(0.5 * 1.0 + 2.0 * 0.5 + 3.0 * 1.0)


def test_no_target_answer_is_right_only_when_gt_is_empty() -> None:
    answer = "<think>nothing matches</think> <answer>[]</answer>"
    traj = make_trajectory(sampled=SAMPLED, t1=answer, status=Status.NO_TARGET)
    right = compute_rewards(traj, gt())
    wrong = compute_rewards(traj, gt(f99=[(0, 0, 5, 5)]))
    assert (right.format, right.temporal, right.spatial, right.total) == (1.0, 1.0, 1.0, 3.0)
    assert (wrong.format, wrong.temporal, wrong.spatial, wrong.total) == (1.0, 0.0, 0.0, 1.0)


def test_score_stores_every_component() -> None:
    truth = gt(f33=[(10, 20, 110, 220)])
    traj = score(make_trajectory(sampled=SAMPLED, t1=turn1(1), t2=[STRICT_T2], targets=[target(33)]), truth)
    assert traj.rewards is not None
    assert set(traj.rewards) >= {"total", "format", "temporal", "spatial"} and traj.rewards["total"] == 3.0


# --------------------------------------------------------------------------- ground truth from masks


def test_mask_ground_truth_is_lazy_cached_and_unions_objects() -> None:
    calls: list[int] = []

    def masks(i: int) -> np.ndarray | None:
        calls.append(i)
        if i == 7:
            return None
        m = np.zeros((2, 40, 60), dtype=bool)
        m[0, 5:10, 3:8] = True  # object 1: (3, 5, 8, 10)
        m[1, 20:30, 40:50] = True  # object 2: (40, 20, 50, 30)
        return m

    truth = MaskGroundTruth(masks)
    assert truth.box(3) == (3.0, 5.0, 50.0, 30.0)
    assert truth.box(3) == (3.0, 5.0, 50.0, 30.0) and truth.box(7) is None
    assert calls == [3, 7]
    assert masks_box(np.zeros((4, 4), dtype=bool)) is None
    assert masks_box([np.zeros((4, 4), bool), np.eye(4, dtype=bool)]) == (0.0, 0.0, 4.0, 4.0)
