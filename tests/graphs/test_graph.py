"""The compiled chain: every path through the graph, with scripted answers and a box tracker."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from revseg.errors import PolicyError, VideoError
from revseg.graphs import ChainContext, build_graph, trajectory_from_state
from revseg.settings import ChainSettings
from revseg.testing.fakes import BoxTracker, ScriptedPolicy
from revseg.tools.masks import read_masks_json
from revseg.trajectory import Status

TURN1 = "<think>the rider in front</think><answer>[{'frame_idx': 3, 'object description': 'rider in red'}]</answer>"
TURN2 = '[{"bbox_2d": [84, 168, 420, 672], "label": "rider"}]'


def run(policy: ScriptedPolicy, clip: Path, out: Path, tracker: BoxTracker | None = None, **settings: object) -> dict:
    context = ChainContext(policy=policy, tracker=tracker, settings=ChainSettings(**settings))  # type: ignore[arg-type]
    inputs = {"video_path": str(clip), "query": "who leads?", "out_dir": str(out)}
    return dict(asyncio.run(build_graph().ainvoke(inputs, context=context)))  # type: ignore[arg-type]


def test_success_path_maps_keyframe_and_rescales_box_to_original_frame(small_clip: Path, tmp_path: Path) -> None:
    tracker = BoxTracker()
    policy = ScriptedPolicy([TURN1, TURN2])
    state = run(policy, small_clip, tmp_path, tracker)
    assert state["status"] == Status.OK.value
    assert state["sampled_indices"] == [0, 2, 3, 5, 6, 8, 9, 11, 12, 14, 15, 17, 18, 20, 21, 23]
    target = state["targets"][0]
    assert target["sample_idx"] == 3 and target["frame_index"] == 5
    # 840x840 model space -> 320x180 video: x * 320/840, y * 180/840
    assert target["box"] == pytest.approx([32.0, 36.0, 160.0, 144.0])
    assert tracker.calls == [(5, [pytest.approx((32.0, 36.0, 160.0, 144.0))])]
    masks = read_masks_json(state["outputs"]["masks_json"])
    assert masks.num_frames == 24
    assert masks.union(0)[36:144, 32:160].all() and masks.union(0).sum() == 128 * 108
    assert len(list((tmp_path / "masks").glob("*.png"))) == 24


def test_turn2_sees_turn1_history_and_the_keyframe_at_840(small_clip: Path, tmp_path: Path) -> None:
    policy = ScriptedPolicy([TURN1, TURN2])
    run(policy, small_clip, tmp_path, BoxTracker())
    first, second = policy.calls
    assert len(first) == 1 and len(first[0].parts) == 17
    assert all(p.image.size == (448, 448) for p in first[0].parts[:16])  # type: ignore[union-attr]
    assert [m.role for m in second] == ["user", "assistant", "user"]
    assert second[1].text == TURN1
    assert second[1].token_ids == tuple(range(len(TURN1.split())))  # turn 1's generated ids travel with it
    keyframe = second[2].parts[0].image  # type: ignore[union-attr]
    assert keyframe.size == (840, 840)
    assert "detect 'rider in red'" in second[2].text


def test_unparseable_turn1_stops_after_one_turn(small_clip: Path, tmp_path: Path) -> None:
    policy = ScriptedPolicy(["I am not sure what you mean.", TURN2])
    tracker = BoxTracker()
    state = run(policy, small_clip, tmp_path, tracker)
    assert state["status"] == Status.FAILED_SELECT_FRAMES.value
    assert len(policy.calls) == 1 and len(state["turns"]) == 1
    assert state["turns"][0]["parse_ok"] is False and state["turns"][0]["parse_reason"]
    assert tracker.calls == [] and "masks_json" not in state["outputs"]


def test_unparseable_turn2_stops_with_no_masks(small_clip: Path, tmp_path: Path) -> None:
    tracker = BoxTracker()
    state = run(ScriptedPolicy([TURN1, "The rider is on the left."]), small_clip, tmp_path, tracker)
    assert state["status"] == Status.FAILED_GROUND.value
    assert [t["name"] for t in state["turns"]] == ["interpret", "ground"]
    assert tracker.calls == [] and "masks_json" not in state["outputs"]


def test_box_entirely_outside_the_frame_fails_ground(small_clip: Path, tmp_path: Path) -> None:
    state = run(ScriptedPolicy([TURN1, "[900, 900, 1000, 1000]"]), small_clip, tmp_path, BoxTracker())
    assert state["status"] == Status.FAILED_GROUND.value
    assert "no area" in state["reason"]


def test_no_target_writes_empty_masks_for_every_frame(small_clip: Path, tmp_path: Path) -> None:
    state = run(
        ScriptedPolicy(["<think>nothing matches</think><answer>[]</answer>"]), small_clip, tmp_path, BoxTracker()
    )
    assert state["status"] == Status.NO_TARGET.value
    masks = read_masks_json(state["outputs"]["masks_json"])
    assert masks.num_frames == 24 and not any(masks.union(i).any() for i in range(24))


def test_tracker_none_stops_after_ground_with_keyframe_and_box(small_clip: Path, tmp_path: Path) -> None:
    state = run(ScriptedPolicy([TURN1, TURN2]), small_clip, tmp_path, tracker=None)
    assert state["status"] == Status.OK.value and "masks_json" not in state["outputs"]
    (target,) = state["targets"]
    assert target["sample_idx"] == 3 and target["frame_index"] == 5  # the keyframe, mapped to the original frame
    assert target["box"] == pytest.approx([32.0, 36.0, 160.0, 144.0])  # the box, rescaled to the original frame
    assert not (tmp_path / "masks").exists()
    trajectory = trajectory_from_state(state, ChainContext(policy=ScriptedPolicy([])))
    assert trajectory.tracker == "none" and trajectory.keyframe_index == 5  # what a reward needs is all recorded


def test_policy_error_in_turn1_is_a_typed_status(small_clip: Path, tmp_path: Path) -> None:
    state = run(ScriptedPolicy([PolicyError("503 after 3 retries")]), small_clip, tmp_path, BoxTracker())
    assert state["status"] == Status.POLICY_ERROR.value and "503" in state["reason"]


def test_several_objects_on_different_keyframes_are_tracked_and_kept_apart(small_clip: Path, tmp_path: Path) -> None:
    turn1 = (
        "<think>two riders</think><answer>[{'frame_idx': 0, 'object description': 'left rider'},"
        " {'frame_idx': 15, 'object description': 'right rider'}]</answer>"
    )
    tracker = BoxTracker()
    state = run(ScriptedPolicy([turn1, "[0, 0, 420, 420]", "[420, 420, 840, 840]"]), small_clip, tmp_path, tracker)
    assert state["status"] == Status.OK.value
    assert [c[0] for c in tracker.calls] == [0, 23]
    masks = read_masks_json(state["outputs"]["masks_json"])
    assert masks.objects == 2
    union = masks.union(10)
    assert union[:90, :160].all() and union[90:, 160:].all() and not union[:90, 160:].any()


def test_max_objects_keeps_the_first_listed(small_clip: Path, tmp_path: Path) -> None:
    turn1 = (
        "<answer>[{'frame_idx': 0, 'object description': 'a'}, {'frame_idx': 1, 'object description': 'b'}]</answer>"
    )
    state = run(ScriptedPolicy([turn1, TURN2]), small_clip, tmp_path, BoxTracker(), max_objects=1)
    assert [t["description"] for t in state["targets"]] == ["a"]


def test_short_video_repeats_sampled_indices(tmp_path: Path) -> None:
    import numpy as np

    from tests.conftest import write_clip

    clip = write_clip(tmp_path / "three.mp4", [np.full((64, 96, 3), 40 * i, np.uint8) for i in range(3)])
    state = run(ScriptedPolicy([TURN1, TURN2]), clip, tmp_path / "out", BoxTracker())
    assert len(state["sampled_indices"]) == 16 and set(state["sampled_indices"]) == {0, 1, 2}
    assert state["status"] == Status.OK.value


def test_missing_video_raises_video_error(tmp_path: Path) -> None:
    with pytest.raises(VideoError, match=r"missing\.mp4"):
        run(ScriptedPolicy([]), tmp_path / "missing.mp4", tmp_path)


def test_trajectory_from_state_round_trips(small_clip: Path, tmp_path: Path) -> None:
    policy = ScriptedPolicy([TURN1, TURN2])
    context = ChainContext(policy=policy, tracker=BoxTracker())
    state = asyncio.run(
        build_graph().ainvoke({"video_path": str(small_clip), "query": "q", "out_dir": str(tmp_path)}, context=context)
    )
    trajectory = trajectory_from_state(state, context, query_id="q1")
    assert context.frame_cache.hits == 16  # turn 2's history reused turn 1's frames, no second decode
    assert trajectory.keyframe_index == 5 and trajectory.query_id == "q1"
    assert trajectory.turns[0].token_ids is not None and trajectory.turns[1].parse_ok
    assert set(trajectory.timings) >= {"sample", "interpret", "ground", "segment"}
    saved = trajectory.save(tmp_path / "t.json")
    assert type(trajectory).load(saved) == trajectory
