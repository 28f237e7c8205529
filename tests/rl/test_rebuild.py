"""A rebuild whose inputs changed since the run says so: errors for other pixels or prompts, warnings otherwise."""

from __future__ import annotations

import os
import shutil
import warnings
from pathlib import Path

import pytest

from revseg.agents import ReVSegAgent
from revseg.errors import InputsChangedError, InputsChangedWarning
from revseg.provenance import model_revision, template_sha256
from revseg.rl.rebuild import check_rebuild, input_changes
from revseg.rl.replay import describe
from revseg.testing.fakes import ScriptedPolicy
from revseg.trajectory import Trajectory
from revseg.trajectory_store import TrajectoryStore
from tests.rl.factories import make_trajectory

TURN1 = "<think>front</think><answer>[{'frame_idx': 1, 'object description': 'rider'}]</answer>"
TURN2 = '[{"bbox_2d": [10, 10, 50, 50]}]'


@pytest.fixture
def recorded(small_clip: Path, tmp_path: Path) -> Trajectory:
    """A run of the agent on a private copy of the clip (so the test may change it)."""
    clip = tmp_path / "clip.mp4"
    shutil.copy(small_clip, clip)
    agent = ReVSegAgent(ScriptedPolicy([TURN1, TURN2]), None, overlay=False, report=False)
    return agent.run(clip, "the rider", tmp_path / "run").trajectory


def test_a_run_records_its_videos_size_and_time_and_rebuilds_unchanged(recorded: Trajectory) -> None:
    stat = Path(recorded.video.path).stat()
    assert (recorded.video.file_bytes, recorded.video.modified_ns) == (stat.st_size, stat.st_mtime_ns)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # matching inputs: not even a warning
        assert check_rebuild([recorded]) == []
    assert "changed since recorded" not in describe(recorded)


def test_a_video_whose_bytes_changed_stops_the_rebuild_naming_it(recorded: Trajectory) -> None:
    Path(recorded.video.path).write_bytes(Path(recorded.video.path).read_bytes() + b"\0")
    with pytest.raises(InputsChangedError, match=r"clip\.mp4 holds \d+ bytes"):
        check_rebuild([recorded])
    with pytest.warns(InputsChangedWarning, match="changed video"):
        (change,) = check_rebuild([recorded], strict=False)
    assert change.fatal and change.run_id == recorded.run_id
    assert "changed since recorded: video:" in describe(recorded)


def test_a_video_gone_stops_the_rebuild(recorded: Trajectory) -> None:
    Path(recorded.video.path).unlink()
    with pytest.raises(InputsChangedError, match="gone or unreadable"):
        check_rebuild([recorded])


def test_a_video_only_touched_is_a_warning_not_an_error(recorded: Trajectory) -> None:
    os.utime(recorded.video.path, ns=(1, (recorded.video.modified_ns or 0) + 10**9))
    with pytest.warns(InputsChangedWarning, match="changed video time"):
        (change,) = check_rebuild([recorded])
    assert not change.fatal


def test_another_chat_template_stops_the_rebuild_and_the_same_one_passes() -> None:
    t = make_trajectory(t1="x")
    t = t.model_copy(update={"policy": t.policy.model_copy(update={"chat_template_sha256": template_sha256("A")})})
    assert input_changes(t, chat_template_sha256=template_sha256("A")) == []
    with pytest.raises(InputsChangedError, match="chat template"):
        check_rebuild([t], chat_template_sha256=template_sha256("B"))


def test_lossy_wire_images_and_other_weights_are_warnings(tmp_path: Path) -> None:
    t = make_trajectory(t1="x")
    policy = t.policy.model_copy(update={"image_encoding": "jpeg:95", "revision": "local:aaaa"})
    t = t.model_copy(update={"policy": policy})
    with pytest.warns(InputsChangedWarning) as caught:
        changes = check_rebuild([t], model_revision="local:bbbb")
    assert sorted(c.what for c in changes) == ["image encoding", "model revision"]
    assert not any(c.fatal for c in changes) and len(caught) == 2
    png = t.model_copy(update={"policy": policy.model_copy(update={"image_encoding": "png"})})
    assert input_changes(png, model_revision="local:aaaa") == []


def test_a_record_older_than_provenance_rebuilds_unchecked() -> None:
    old = make_trajectory(t1="x")  # no file size, time, template, revision or encoding recorded
    assert old.video.file_bytes is None and old.policy.chat_template_sha256 is None
    assert input_changes(old, chat_template_sha256="f" * 64, model_revision="local:x") == []


def test_hf_records_carry_the_template_and_revision_of_the_model_that_trains_on_them(
    scored_store: Path, tiny_qwen25_dir: Path
) -> None:
    from transformers import AutoProcessor

    template = template_sha256(AutoProcessor.from_pretrained(tiny_qwen25_dir).chat_template)
    records = list(TrajectoryStore(scored_store))
    assert {t.policy.chat_template_sha256 for t in records} == {template}
    assert {t.policy.revision for t in records} == {model_revision(tiny_qwen25_dir)}
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert (
            check_rebuild(records, chat_template_sha256=template, model_revision=model_revision(tiny_qwen25_dir)) == []
        )


def test_training_refuses_records_whose_video_changed_before_any_step(
    scored_store: Path, tiny_qwen25_dir: Path, tmp_path: Path
) -> None:
    from revseg.rl.grpo import GRPOConfig
    from revseg.rl.train import train

    records = list(TrajectoryStore(scored_store))
    size = Path(records[0].video.path).stat().st_size
    moved = [t.model_copy(update={"video": t.video.model_copy(update={"file_bytes": size + 1})}) for t in records]
    with pytest.raises(InputsChangedError, match="cannot be rebuilt as the policy saw them"):
        train(moved, f"hf:{tiny_qwen25_dir}", tmp_path / "ckpt", GRPOConfig(max_steps=1, prompts_per_step=1))
    assert not (tmp_path / "ckpt" / "train_log.jsonl").exists()
