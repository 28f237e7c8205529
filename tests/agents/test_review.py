"""Human review: a run pauses after select_frames and after ground, and resumes from a checkpoint."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from langgraph.checkpoint.memory import InMemorySaver

from revseg import ReVSegAgent, Status
from revseg.errors import InputError
from revseg.testing.fakes import BoxTracker, ScriptedPolicy
from tests.agents.review_worker import TURN1, TURN2

ROOT = Path(__file__).resolve().parents[2]


def worker(*args: str) -> dict[str, Any]:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    done = subprocess.run(
        [sys.executable, "-m", "tests.agents.review_worker", *args],
        capture_output=True, text=True, cwd=ROOT, env=env, timeout=300, check=False,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout.strip().splitlines()[-1])


def test_a_run_paused_in_one_process_is_corrected_and_finished_in_others(small_clip: Path, tmp_path: Path) -> None:
    db = str(tmp_path / "checkpoints.sqlite")
    first = worker("start", db, str(small_clip), str(tmp_path / "out"))
    assert first["status"] == "pending_review" and first["review"]["stage"] == "keyframe"
    assert first["review"]["targets"][0]["frame_index"] == 5 and first["turns"] == ["interpret"]
    assert first["tracker_calls"] == [] and not first["has_masks"]

    second = worker("resume", db, json.dumps({"frame_index": 9}), json.dumps([TURN2]))
    assert second["status"] == "pending_review" and second["review"]["stage"] == "box"
    assert second["policy_calls"] == 1  # only turn 2 ran here: turn 1 came from the checkpoint
    assert second["targets"][0]["frame_index"] == 9 and second["turns"] == ["interpret", "ground"]

    third = worker("resume", db, json.dumps({"box": [10, 20, 100, 120]}), "[]")
    assert third["status"] == "ok" and third["review"] is None and third["policy_calls"] == 0
    assert third["tracker_calls"] == [[9, [[10.0, 20.0, 100.0, 120.0]]]] and third["has_masks"]
    assert [r["stage"] for r in third["reviews"]] == ["keyframe", "box"]
    assert third["reviews"][0]["changes"] == [
        {"target": 0, "before": {"frame_index": 5, "box": None}, "after": {"frame_index": 9, "box": None}}
    ]
    assert (tmp_path / "out" / "trajectory.json").exists()


def reviewing_agent(answers: list[str], tracker: BoxTracker | None = None) -> ReVSegAgent:
    return ReVSegAgent(
        ScriptedPolicy(answers), tracker, checkpointer=InMemorySaver(), review=True, overlay=False, report=False
    )


def test_accepting_both_proposals_gives_the_models_answer(small_clip: Path, tmp_path: Path) -> None:
    tracker = BoxTracker()
    agent = reviewing_agent([TURN1, TURN2], tracker)
    paused = agent.run(small_clip, "q", tmp_path)
    assert paused.status == Status.PENDING_REVIEW and paused.thread_id and paused.review is not None
    assert paused.review["resume_with"].startswith("true to accept")
    assert not (tmp_path / "trajectory.json").exists()
    at_box = agent.resume(paused.thread_id, {})
    assert at_box.review is not None and at_box.review["targets"][0]["box"] is not None
    done = agent.resume(paused.thread_id, True)
    assert done.status == Status.OK and done.keyframe_index == 5
    assert done.boxes == [pytest.approx((32.0, 36.0, 160.0, 144.0))]
    assert [r["accepted"] for r in done.trajectory.reviews] == [True, True] and len(tracker.calls) == 1


def test_a_bad_decision_names_the_problem_and_the_run_waits_for_a_good_one(small_clip: Path, tmp_path: Path) -> None:
    agent = reviewing_agent([TURN1, TURN2])
    paused = agent.run(small_clip, "q", tmp_path)
    assert paused.thread_id is not None
    with pytest.raises(InputError, match="waits for a keyframe review"):
        agent.resume(paused.thread_id)
    for decision, match in [
        ({"frame_index": 99}, r"frame_index 99 is not a frame .* \(0\.\.23\)"),
        ({"box": [1, 2, 3, 4]}, "unknown key"),
        ({"target": 3}, "has 1 target"),
        ("yes", "must be a dict"),
    ]:
        with pytest.raises(InputError, match=match):
            agent.resume(paused.thread_id, decision)
    at_box = agent.resume(paused.thread_id, {"frame_index": 0})
    assert at_box.review is not None and at_box.review["targets"][0]["frame_index"] == 0
    with pytest.raises(InputError, match="no area"):
        agent.resume(paused.thread_id, {"box": [400, 400, 500, 500]})
    done = agent.resume(paused.thread_id, {"box": [0, 0, 320, 180]})
    assert done.status == Status.OK and done.boxes == [(0.0, 0.0, 320.0, 180.0)]


def test_resume_of_an_unknown_thread_or_without_a_checkpointer_is_an_input_error() -> None:
    with pytest.raises(InputError, match="no run saved"):
        reviewing_agent([]).resume("nope", {})
    with pytest.raises(InputError, match="checkpointer"):
        ReVSegAgent(ScriptedPolicy([]), None).resume("nope", {})


def test_a_checkpointed_run_without_review_finishes_and_can_be_read_back(small_clip: Path, tmp_path: Path) -> None:
    db = tmp_path / "runs.sqlite"
    agent = ReVSegAgent(ScriptedPolicy([TURN1, TURN2]), None, checkpointer=db, overlay=False, report=False)
    result = agent.run(small_clip, "q", tmp_path / "o", thread_id="t-1")
    assert result.status == Status.OK and result.thread_id == "t-1" and db.exists()
    again = agent.resume("t-1")  # nothing left to do: the finished run is returned as it ended
    assert again.status == Status.OK and again.keyframe_index == 5
