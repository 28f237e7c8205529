"""Rewards of look_again rollouts: the final keyframe's temporal reward, verify verdicts against ground truth."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator, Sequence
from pathlib import Path

import numpy as np
import pytest

from revseg.graphs import ChainContext, build_graph, trajectory_from_state
from revseg.rl.groundtruth import BoxGroundTruth, MaskGroundTruth
from revseg.rl.rewards import compute_rewards, mask_quality
from revseg.settings import ChainSettings
from revseg.testing.fakes import BoxTracker, ScriptedPolicy
from revseg.tools.readers.base import FrameReader
from revseg.tools.trackers.base import FrameMasks
from revseg.trajectory import BoxXYXY, Trajectory

# small_clip: 24 frames of 320x180; 4 sampled frames 0, 8, 15, 23. The target is on screen in frames 10-13 only.
BOX = (32.0, 36.0, 160.0, 144.0)  # what the scripted box below becomes in original pixels
TRUTH = {i: [BOX] for i in range(10, 14)}
ZOOM = "<think>not seen</think> <answer> {'action': 'zoom', 'first': 1, 'last': 2} </answer>"
SELECT_1 = "<think>there</think> <answer> [{'frame_idx': 1, 'object description': 'rider'}] </answer>"
ANSWER_BOX = '[{"bbox_2d": [84, 168, 420, 672]}]'
ACCEPT = "<think>good</think> <answer> {'verdict': 'accept'} </answer>"
REJECT = "<think>bad</think> <answer> {'verdict': 'reject', 'reason': 'drifts'} </answer>"


class EmptyTracker(BoxTracker):
    """Loses the target at once: an empty mask on every frame."""

    def track(
        self, video: FrameReader, keyframe_index: int, boxes: Sequence[BoxXYXY], **_: object
    ) -> Iterator[FrameMasks]:
        for masks in super().track(video, keyframe_index, boxes):
            yield FrameMasks(frame_index=masks.frame_index, masks=np.zeros_like(masks.masks))


def rollout(
    answers: list[str], out: Path, clip: Path, tracker: BoxTracker | None = None, **settings: object
) -> Trajectory:
    context = ChainContext(
        policy=ScriptedPolicy(answers),
        tracker=tracker or BoxTracker(),
        settings=ChainSettings(program="look_again", num_frames=4, verify_frames=2, **settings),  # type: ignore[arg-type]
    )
    inputs = {"video_path": str(clip), "query": "the rider", "out_dir": str(out)}
    state = asyncio.run(build_graph().ainvoke(inputs, context=context))  # type: ignore[arg-type]
    return trajectory_from_state(dict(state), context)


def test_a_zoom_that_finds_a_briefly_seen_target_earns_the_temporal_reward(small_clip: Path, tmp_path: Path) -> None:
    zoomed = rollout([ZOOM, SELECT_1, ANSWER_BOX], tmp_path / "a", small_clip, max_turns=3)
    assert zoomed.turns[1].image_frames == [8, 10, 13, 15] and zoomed.targets[0].frame_index == 10
    straight = rollout([SELECT_1, ANSWER_BOX], tmp_path / "b", small_clip, max_turns=2)
    assert straight.targets[0].frame_index == 8  # the first view never shows the target
    truth = BoxGroundTruth(TRUTH)
    with_zoom, without = compute_rewards(zoomed, truth), compute_rewards(straight, truth)
    assert (with_zoom.temporal, with_zoom.spatial) == (1.0, 1.0)
    assert (without.temporal, without.spatial) == (0.0, 0.0)
    assert with_zoom.total == pytest.approx(1.0 + 1.0 + 1.0) and without.total == pytest.approx(1.0)
    assert with_zoom.verify is None and "verify" not in with_zoom.as_dict()


def test_a_verdict_is_right_when_it_agrees_with_the_mask_quality(small_clip: Path, tmp_path: Path) -> None:
    # BoxTracker paints the box on every frame; verify sees frames 0, 23 (target absent) and 10: J = 1/3.
    truth = BoxGroundTruth(TRUTH)
    accepted = rollout([ZOOM, SELECT_1, ANSWER_BOX, ACCEPT], tmp_path / "a", small_clip, max_turns=4)
    assert accepted.turns[-1].image_frames == [0, 23, 10]
    assert accepted.turns[-1].overlay is not None
    assert mask_quality(accepted.turns[-1].overlay, [0, 23, 10], truth) == pytest.approx(1 / 3)
    assert compute_rewards(accepted, truth).verify == 0.0
    rejected = rollout([ZOOM, SELECT_1, ANSWER_BOX, REJECT], tmp_path / "b", small_clip, max_turns=4)
    assert compute_rewards(rejected, truth).verify == 1.0  # its masks moved, the overlay path followed them
    lenient = compute_rewards(accepted, truth, _config(verify_threshold=0.3))
    assert lenient.verify == 1.0 and lenient.total == pytest.approx(compute_rewards(rejected, truth).total)


def test_with_ground_truth_masks_the_verdict_is_judged_by_mask_j(small_clip: Path, tmp_path: Path) -> None:
    gt = np.zeros((24, 180, 320), dtype=bool)
    gt[:, 36:144, 32:160] = True  # the target fills the painted box on every frame: J = 1
    truth = MaskGroundTruth(lambda i: gt[i])
    accepted = rollout([SELECT_1, ANSWER_BOX, ACCEPT], tmp_path, small_clip)
    assert compute_rewards(accepted, truth).verify == 1.0
    gt[:, 36:144, 96:160] = False  # now it covers half of the box: J = 0.5, not above the threshold
    assert compute_rewards(accepted, truth).verify == 0.0


def test_an_empty_mask_is_judged_only_on_the_shown_frames_where_the_target_is(small_clip: Path, tmp_path: Path) -> None:
    # verify sees frames 0, 23 (target absent, mask empty: they say nothing) and 10 (target there, mask empty): J = 0.
    answers = [ZOOM, SELECT_1, ANSWER_BOX]
    accepted = rollout([*answers, ACCEPT], tmp_path / "a", small_clip, EmptyTracker(), max_turns=4)
    rejected = rollout([*answers, REJECT], tmp_path / "b", small_clip, EmptyTracker(), max_turns=4)
    assert accepted.turns[-1].image_frames == [0, 23, 10]
    gt = np.zeros((24, 180, 320), dtype=bool)
    gt[10:14, 36:144, 32:160] = True
    for truth in (BoxGroundTruth(TRUTH), MaskGroundTruth(lambda i: gt[i])):
        assert mask_quality(accepted.turns[-1].overlay or "", [0, 23, 10], truth) == 0.0
        assert mask_quality(accepted.turns[-1].overlay or "", [0, 23], truth) is None
        assert compute_rewards(accepted, truth).verify == 0.0
        assert compute_rewards(rejected, truth).verify == 1.0


def test_a_verdict_on_frames_showing_neither_mask_nor_target_is_judged_on_the_whole_clip(
    small_clip: Path, tmp_path: Path
) -> None:
    # No zoom: the keyframe is 8 and verify sees 0, 23, 8, none with the target, all with an empty mask.
    accepted = rollout([SELECT_1, ANSWER_BOX, ACCEPT], tmp_path, small_clip, EmptyTracker())
    assert accepted.turns[-1].image_frames == [0, 23, 8]
    assert compute_rewards(accepted, BoxGroundTruth(TRUTH)).verify == 0.0  # the target is on screen in 10-13
    assert compute_rewards(accepted, BoxGroundTruth({})).verify == 1.0  # no target anywhere: the empty mask is right


def test_format_pays_the_share_of_strict_turns_for_choosing_and_for_acting(small_clip: Path, tmp_path: Path) -> None:
    sloppy_zoom = "zoom(1, 2)"
    traj = rollout([sloppy_zoom, SELECT_1, ANSWER_BOX, ACCEPT], tmp_path, small_clip)
    rewards = compute_rewards(traj, BoxGroundTruth(TRUTH))
    assert rewards.format_interpret == pytest.approx(0.25)  # one of two look turns strict
    assert rewards.format_ground == pytest.approx(0.5)  # the box and the verdict both strict


def test_the_paper_programs_rewards_are_unchanged_and_carry_no_verify_key(small_clip: Path, tmp_path: Path) -> None:
    context = ChainContext(policy=ScriptedPolicy([SELECT_1, ANSWER_BOX]), settings=ChainSettings(num_frames=4))
    inputs = {"video_path": str(small_clip), "query": "the rider", "out_dir": str(tmp_path)}
    state = asyncio.run(build_graph().ainvoke(inputs, context=context))  # type: ignore[arg-type]
    rewards = compute_rewards(trajectory_from_state(dict(state), context), BoxGroundTruth(TRUTH)).as_dict()
    assert set(rewards) == {
        "total",
        "format",
        "temporal",
        "spatial",
        "format_interpret",
        "format_ground",
        "turn1_parsed",
        "both_parsed",
        "iou",
    }


def _config(**fields: float):  # type: ignore[no-untyped-def]
    from revseg.rl.rewards import RewardConfig

    return RewardConfig(**fields)  # type: ignore[arg-type]
