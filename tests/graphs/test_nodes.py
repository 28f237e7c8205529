"""Each node on its own: called directly with a runtime context, as LangGraph calls it."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from langgraph.runtime import Runtime

from revseg.graphs.nodes import ground, interpret, sample, segment, select_frames
from revseg.graphs.state import ChainContext, video_ref
from revseg.settings import ChainSettings
from revseg.testing.fakes import BoxTracker, ScriptedPolicy
from revseg.trajectory import Status
from tests.conftest import write_clip


def runtime(policy: ScriptedPolicy, tracker: BoxTracker | None = None, **settings: Any) -> Runtime[ChainContext]:
    return Runtime(context=ChainContext(policy=policy, tracker=tracker, settings=ChainSettings(**settings)))


@pytest.fixture(scope="module")
def portrait_clip(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A 5-frame portrait video (90 wide, 160 high): boxes must scale x and y separately."""
    frames = [np.full((160, 90, 3), 50 * i, np.uint8) for i in range(5)]
    return write_clip(tmp_path_factory.mktemp("portrait") / "portrait.mp4", frames)


def base_state(clip: Path, out: Path) -> dict[str, Any]:
    state: dict[str, Any] = {"video_path": str(clip), "query": "the thing", "out_dir": str(out)}
    state.update(asyncio.run(sample(state, runtime(ScriptedPolicy([]), num_frames=4))))  # type: ignore[arg-type]
    return state


def test_sample_records_the_video_reference_and_uniform_indices(portrait_clip: Path, tmp_path: Path) -> None:
    state = base_state(portrait_clip, tmp_path)
    assert state["video"]["width"] == 90 and state["video"]["height"] == 160 and state["video"]["num_frames"] == 5
    assert state["sampled_indices"] == [0, 1, 3, 4]
    assert state["turns"] == [] and "sample" in state["timings"]


def test_sample_holds_the_video_path_once_and_video_ref_joins_it_to_the_measurements(
    portrait_clip: Path, tmp_path: Path
) -> None:
    state = base_state(portrait_clip, tmp_path)
    assert "path" not in state["video"] and state["video_path"] == str(portrait_clip)
    ref = video_ref(state)
    assert (ref.path, ref.num_frames, ref.width, ref.height) == (str(portrait_clip), 5, 90, 160)
    saved_by_an_older_version = {**state, "video": ref.model_dump(mode="json")}  # a checkpoint with the path twice
    assert video_ref(saved_by_an_older_version) == ref


def test_sample_of_a_one_frame_video_repeats_frame_zero(tmp_path: Path) -> None:
    clip = write_clip(tmp_path / "one.mp4", [np.zeros((32, 48, 3), np.uint8)])
    update = asyncio.run(
        sample({"video_path": str(clip), "query": "q", "out_dir": str(tmp_path)}, runtime(ScriptedPolicy([])))  # type: ignore[arg-type]
    )
    assert update["sampled_indices"] == [0] * 16


def test_interpret_sends_frames_at_448_and_records_the_turn(portrait_clip: Path, tmp_path: Path) -> None:
    state = base_state(portrait_clip, tmp_path)
    policy = ScriptedPolicy(["<answer>[]</answer>"])
    update = asyncio.run(interpret(state, runtime(policy, num_frames=4)))  # type: ignore[arg-type]
    (turn,) = update["turns"]
    assert turn["name"] == "interpret" and turn["image_frames"] == [0, 1, 3, 4]
    assert turn["image_size"] == [448, 448]
    assert "4 frames" in turn["prompt"] and "'the thing'" in turn["prompt"] and "(0-3)" in turn["prompt"]
    assert turn["response"] == "<answer>[]</answer>" and turn["token_ids"] == [0]
    assert [p.image.size for p in policy.calls[0][0].parts[:4]] == [(448, 448)] * 4  # type: ignore[union-attr]


def test_select_frames_maps_sample_index_to_original_frame(portrait_clip: Path, tmp_path: Path) -> None:
    state = base_state(portrait_clip, tmp_path)
    state["turns"] = [
        {"response": "<think>x</think><answer>[{'frame_idx': 2, 'object description': 'the box'}]</answer>"}
    ]
    update = asyncio.run(select_frames(state, runtime(ScriptedPolicy([]))))  # type: ignore[arg-type]
    assert update["targets"] == [
        {"description": "the box", "sample_idx": 2, "frame_index": 3, "raw_box": None, "box": None, "label": None}
    ]
    assert update["turns"][0]["parse_ok"] is True and update["turns"][0]["parsed"]["objects"]


@pytest.mark.parametrize("answer", ["<answer>[{'frame_idx': 9, 'object description': 'x'}]</answer>", "", "??"])
def test_select_frames_rejects_bad_answers_with_a_reason(portrait_clip: Path, tmp_path: Path, answer: str) -> None:
    state = base_state(portrait_clip, tmp_path)
    state["turns"] = [{"response": answer}]
    update = asyncio.run(select_frames(state, runtime(ScriptedPolicy([]))))  # type: ignore[arg-type]
    assert update["status"] == Status.FAILED_SELECT_FRAMES.value and update["reason"].startswith("turn 1:")


@pytest.mark.parametrize(
    ("convention", "answer", "expected"),
    [
        ("absolute", "[0, 0, 420, 840]", (0.0, 0.0, 45.0, 160.0)),
        ("norm1000", '{"bbox_2d": [100, 500, 1000, 1000]}', (9.0, 80.0, 90.0, 160.0)),
        ("absolute", "[420, 840, 0, 0]", (0.0, 0.0, 45.0, 160.0)),  # inverted corners are swapped
        ("absolute", "[-50, -50, 2000, 2000]", (0.0, 0.0, 90.0, 160.0)),  # clipped to the frame
    ],
)
def test_ground_rescales_the_box_to_the_portrait_frame(
    portrait_clip: Path, tmp_path: Path, convention: str, answer: str, expected: tuple[float, ...]
) -> None:
    state = base_state(portrait_clip, tmp_path)
    state["turns"] = [{"prompt": "P1", "response": "R1"}]
    state["targets"] = [{"description": "the box", "sample_idx": 2, "frame_index": 3}]
    policy = ScriptedPolicy([answer], box_convention=convention)  # type: ignore[arg-type]
    update = asyncio.run(ground(state, runtime(policy, num_frames=4)))  # type: ignore[arg-type]
    assert "status" not in update
    assert update["targets"][0]["box"] == pytest.approx(list(expected))
    assert update["turns"][1]["name"] == "ground" and update["turns"][1]["target"] == 0
    keyframe = policy.calls[0][-1].parts[0].image  # type: ignore[union-attr]
    assert keyframe.size == (840, 840)


def test_segment_without_a_tracker_keeps_the_status_and_writes_nothing(portrait_clip: Path, tmp_path: Path) -> None:
    state = base_state(portrait_clip, tmp_path)
    assert asyncio.run(segment(state, runtime(ScriptedPolicy([])))) == {"status": Status.OK.value}  # type: ignore[arg-type]
    assert not (tmp_path / "masks").exists()


def test_segment_writes_one_mask_per_frame_at_original_size(portrait_clip: Path, tmp_path: Path) -> None:
    state = base_state(portrait_clip, tmp_path)
    state["targets"] = [{"description": "d", "sample_idx": 0, "frame_index": 4, "box": [10, 20, 30, 40]}]
    update = asyncio.run(segment(state, runtime(ScriptedPolicy([]), BoxTracker())))  # type: ignore[arg-type]
    assert update["status"] == Status.OK.value
    pngs = sorted((tmp_path / "masks").glob("*.png"))
    assert [p.stem for p in pngs] == ["00000", "00001", "00002", "00003", "00004"]
    from PIL import Image

    label = np.asarray(Image.open(pngs[0]))
    assert label.shape == (160, 90) and set(np.unique(label)) == {0, 1} and (label == 1).sum() == 20 * 20
