"""The Python API: an agent built from backends or spec strings, and the result it returns."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from revseg import ReVSegAgent, Status, Trajectory
from revseg.errors import OutputError
from revseg.settings import SamplingParams
from revseg.testing.chat_server import chat_server, paper_responder
from revseg.testing.fakes import BoxTracker, ScriptedPolicy

TURN1 = "<think>the rider in front</think><answer>[{'frame_idx': 3, 'object description': 'rider'}]</answer>"
TURN2 = '[{"bbox_2d": [84, 168, 420, 672], "label": "rider"}]'


def test_three_lines_give_masks_trajectory_and_overlay(small_clip: Path, tmp_path: Path) -> None:
    agent = ReVSegAgent(ScriptedPolicy([TURN1, TURN2]), BoxTracker())
    result = agent.run(small_clip, "who leads?", tmp_path / "run")
    assert result.ok and result.status == Status.OK and result.keyframe_index == 5
    assert result.masks is not None and len(result.masks) == 24
    assert result.mask(0).shape == (180, 320) and result.mask(0).sum() == 128 * 108
    saved = Trajectory.load(tmp_path / "run" / "trajectory.json")
    assert saved.outputs["overlay"].endswith("overlay.mp4") and Path(saved.outputs["overlay"]).stat().st_size > 0
    assert saved.outputs["trajectory"] == str(tmp_path / "run" / "trajectory.json")
    assert saved.targets == result.trajectory.targets


def test_without_an_out_dir_results_go_to_a_fresh_temporary_folder(small_clip: Path) -> None:
    result = ReVSegAgent(ScriptedPolicy([TURN1, TURN2]), BoxTracker(), overlay=False).run(small_clip, "q")
    assert result.out_dir.name.startswith("revseg-") and (result.out_dir / "trajectory.json").exists()
    assert "overlay" not in result.trajectory.outputs


def test_a_failed_run_has_no_masks_and_says_why(small_clip: Path, tmp_path: Path) -> None:
    result = ReVSegAgent(ScriptedPolicy(["no idea"]), BoxTracker()).run(small_clip, "q", tmp_path)
    assert not result.ok and result.status == Status.FAILED_SELECT_FRAMES
    assert result.masks is None
    with pytest.raises(OutputError, match="failed_select_frames"):
        result.mask(0)


def test_one_run_opens_its_video_once_from_the_first_check_to_the_report(
    small_clip: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from revseg.tools import frames
    from revseg.tools.frame_cache import ResizedFrameCache

    opened: list[str] = []
    for name, factory in list(frames.FRAME_READERS.items()):
        monkeypatch.setitem(frames.FRAME_READERS, name, lambda path, f=factory: opened.append(str(path)) or f(path))
    result = ReVSegAgent(ScriptedPolicy([TURN1, TURN2]), BoxTracker()).run(small_clip, "who leads?", tmp_path / "a")
    assert result.ok and {"overlay", "report", "masks_json"} <= set(result.trajectory.outputs)
    assert "<img" in (tmp_path / "a" / "report.html").read_text()  # the report read its frames too
    assert opened == [str(small_clip)]  # sample, both turns, the tracker, the overlay and the report share it
    checked = ResizedFrameCache()
    checked.probe(small_clip)  # as `revseg segment` checks the video before the models load
    agent = ReVSegAgent(ScriptedPolicy([TURN1, TURN2]), BoxTracker(), frame_cache=checked)
    assert agent.run(small_clip, "who leads?", tmp_path / "b").ok
    assert opened == [str(small_clip)] * 2


def test_unwritable_output_folder_is_an_output_error(small_clip: Path, tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("x")
    with pytest.raises(OutputError, match="file"):
        ReVSegAgent(ScriptedPolicy([TURN1, TURN2]), BoxTracker()).run(small_clip, "q", blocker / "out")


def test_backends_from_spec_strings_are_built_once_and_reused(
    small_clip: Path, tiny_sam2_spec: str, tmp_path: Path
) -> None:
    with chat_server(paper_responder(keyframe=2, box=(0, 0, 840, 840))) as url:
        agent = ReVSegAgent("openai:qwen", tiny_sam2_spec, policy_options={"base_url": url}, overlay=False)
        first = agent.run(small_clip, "the rider", tmp_path / "a", query_id="q1")
        second = agent.run(small_clip, "the rider", tmp_path / "b", query_id="q2")
    assert first.status == second.status == Status.OK
    assert first.trajectory.policy.spec == "openai:qwen" and first.trajectory.tracker == tiny_sam2_spec
    assert first.trajectory.targets[0].box == pytest.approx((0.0, 0.0, 320.0, 180.0))
    assert first.trajectory.query_id == "q1" and first.trajectory.run_id != second.trajectory.run_id
    assert first.masks is not None and first.masks.num_frames == 24


class _SamplingSpy(ScriptedPolicy):
    """A scripted policy that keeps the sampling parameters of every turn it was asked for."""

    def __init__(self, answers: list[str | Exception]) -> None:
        super().__init__(answers)
        self.seen: list[SamplingParams] = []

    def generate(self, messages: Any, sampling: SamplingParams) -> Any:
        self.seen.append(sampling)
        return super().generate(messages, sampling)


def test_a_per_run_sampling_override_reaches_the_policy_and_the_record_and_only_that_run(
    small_clip: Path, tmp_path: Path
) -> None:
    policy = _SamplingSpy([TURN1, TURN2, TURN1, TURN2])
    agent = ReVSegAgent(policy, BoxTracker(), sampling=SamplingParams(temperature=0.0), overlay=False, report=False)
    override = SamplingParams(temperature=1.0, seed=1234)
    hot = agent.run(small_clip, "who leads?", tmp_path / "hot", sampling=override)
    cold = agent.run(small_clip, "who leads?", tmp_path / "cold")
    assert policy.seen == [override, override, agent.context.sampling, agent.context.sampling]
    assert hot.trajectory.sampling == override and Trajectory.load(hot.out_dir / "trajectory.json").sampling == override
    assert cold.trajectory.sampling == SamplingParams(temperature=0.0)
    assert hot.trajectory.targets == cold.trajectory.targets  # the same run otherwise
