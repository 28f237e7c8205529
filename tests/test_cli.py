"""The `revseg` command end to end, as a user runs it: a subprocess on real clips."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from revseg.testing.chat_server import ChatServerLog, chat_server, paper_responder
from revseg.trajectory import Status, Trajectory

REVSEG = [sys.executable, "-m", "revseg.cli"]


def revseg(*args: str, timeout: float = 300) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "OPENAI_API_KEY": "sk-test-secret-do-not-log"}
    return subprocess.run([*REVSEG, *args], capture_output=True, text=True, timeout=timeout, env=env, check=False)


def test_help_explains_every_segment_option() -> None:
    top = revseg("--help")
    assert top.returncode == 0 and "segment" in top.stdout
    sub = revseg("segment", "--help")
    for option in ["--policy", "--tracker", "--frames", "--out", "--base-url", "--temperature", "--seed", "--device"]:
        assert option in sub.stdout


def test_segment_with_api_policy_and_tiny_sam2_writes_every_artefact(
    small_clip: Path, tiny_sam2_spec: str, tmp_path: Path
) -> None:
    log = ChatServerLog()
    out = tmp_path / "out"
    with chat_server(paper_responder(keyframe=5, box=(84, 168, 420, 672)), log) as url:
        done = revseg(
            "segment", str(small_clip), "the rider in front", "--policy", "openai:qwen2.5-vl",
            "--base-url", url, "--tracker", tiny_sam2_spec, "--out", str(out),
        )  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert "[interpret]" in done.stderr and "[segment]" in done.stderr
    pngs = sorted((out / "masks").glob("*.png"))
    assert len(pngs) == 24
    assert all(Image.open(p).size == (320, 180) for p in pngs)
    trajectory = Trajectory.load(out / "trajectory.json")
    assert trajectory.status == Status.OK
    assert trajectory.sampled_indices == [0, 2, 3, 5, 6, 8, 9, 11, 12, 14, 15, 17, 18, 20, 21, 23]
    assert trajectory.keyframe_index == trajectory.sampled_indices[5] == 8
    assert trajectory.targets[0].box == pytest.approx((32.0, 36.0, 160.0, 144.0))
    assert [t.name for t in trajectory.turns] == ["interpret", "ground"]
    assert trajectory.turns[0].token_ids and trajectory.turns[0].logprobs
    assert trajectory.turns[1].image_frames == [8] and trajectory.turns[1].image_size == (840, 840)
    assert len(log.requests) == 2 and log.requests[1]["messages"][1]["role"] == "assistant"
    masks = json.loads((out / "masks" / "masks.json").read_text())
    assert len(masks["frames"]) == 24
    assert (out / "overlay.mp4").stat().st_size > 0
    everything = "".join(p.read_text(errors="ignore") for p in out.glob("*.json")) + done.stdout + done.stderr
    assert "sk-test-secret" not in everything


def test_unparseable_answer_from_tiny_vlm_ends_with_a_clean_failure(
    small_clip: Path, tiny_qwen25_dir: Path, tmp_path: Path
) -> None:
    out = tmp_path / "out"
    done = revseg(
        "segment", str(small_clip), "the rider", "--policy", f"hf:{tiny_qwen25_dir}", "--tracker", "none",
        "--out", str(out), "--max-new-tokens", "24", "-q",
    )  # fmt: skip
    assert done.returncode == 1, done.stderr
    assert "Traceback" not in done.stderr
    trajectory = Trajectory.load(out / "trajectory.json")
    assert trajectory.status == Status.FAILED_SELECT_FRAMES
    assert len(trajectory.turns) == 1 and trajectory.turns[0].parse_reason
    assert trajectory.turns[0].token_ids and len(trajectory.turns[0].token_ids) == len(
        trajectory.turns[0].logprobs or []
    )
    assert not (out / "masks").exists()


def make_bad_inputs(root: Path, bikes_mp4: Path) -> dict[str, tuple[Path, str]]:
    empty = root / "empty.mp4"
    empty.write_bytes(b"")
    text = root / "notes.mp4"
    text.write_text("this is not a video\n" * 50)
    truncated = root / "truncated.mp4"
    truncated.write_bytes(bikes_mp4.read_bytes()[:20000])
    empty_dir = root / "no-frames"
    empty_dir.mkdir()
    mixed = root / "mixed"
    mixed.mkdir()
    Image.fromarray(np.zeros((40, 60, 3), np.uint8)).save(mixed / "00000.jpg")
    Image.fromarray(np.zeros((50, 60, 3), np.uint8)).save(mixed / "00001.jpg")
    return {
        "missing": (root / "nope.mp4", "nope.mp4"),
        "empty file": (empty, "empty.mp4"),
        "not a video": (text, "notes.mp4"),
        "truncated": (truncated, "truncated.mp4"),
        "empty folder": (empty_dir, "no-frames"),
        "mixed sizes": (mixed, "00001.jpg"),
    }


def test_bad_inputs_give_one_line_errors_and_non_zero_exit(tmp_path: Path, bikes_mp4: Path) -> None:
    for case, (path, named) in make_bad_inputs(tmp_path, bikes_mp4).items():
        done = revseg("segment", str(path), "anything", "--out", str(tmp_path / "out"))
        lines = done.stderr.strip().splitlines()
        assert done.returncode == 2, (case, done.stderr)
        assert "Traceback" not in done.stderr, case
        assert len(lines) == 1 and lines[0].startswith("revseg: error:") and named in lines[0], (case, lines)


def test_missing_default_weights_fail_fast_with_a_hint(small_clip: Path, tmp_path: Path) -> None:
    done = revseg("segment", str(small_clip), "anything", "--out", str(tmp_path / "o"), timeout=60)
    assert done.returncode == 2 and "Traceback" not in done.stderr
    assert "--policy hf:/" in done.stderr


def test_program_flag_runs_look_again_with_its_turn_budget(
    small_clip: Path, tiny_sam2_spec: str, tmp_path: Path
) -> None:
    """--program look_again --max-turns reach the chain: the model zooms, grounds and verifies within the budget."""
    answers = [
        "<think>the riders are in the middle</think><answer>{'action': 'zoom', 'first': 2, 'last': 6}</answer>",
        "<think>frame 3 is clear</think><answer>[{'frame_idx': 3, 'object description': 'rider'}]</answer>",
        '[{"bbox_2d": [84, 168, 420, 672], "label": "rider"}]',
        "<think>the mask covers the rider</think><answer>{'verdict': 'accept'}</answer>",
    ]

    def respond(request: dict[str, object]) -> str:
        messages = request["messages"]
        assert isinstance(messages, list)
        return answers[sum(1 for m in messages if m.get("role") == "assistant")]

    out = tmp_path / "out"
    with chat_server(respond) as url:
        done = revseg(
            "segment", str(small_clip), "the rider in front", "--policy", "openai:qwen2.5-vl", "--base-url", url,
            "--tracker", tiny_sam2_spec, "--program", "look_again", "--max-turns", "6", "--out", str(out), "-q",
        )  # fmt: skip
    assert done.returncode == 0, done.stderr
    trajectory = Trajectory.load(out / "trajectory.json")
    assert trajectory.settings.program == "look_again" and trajectory.settings.max_turns == 6
    assert trajectory.settings.prompt_set != "revseg-paper-v1"
    assert [t.name for t in trajectory.turns] == ["interpret", "zoom", "ground", "verify"]
    assert trajectory.status == Status.OK
    assert len(sorted((out / "masks").glob("*.png"))) == 24


def test_program_flag_refuses_an_unknown_program(small_clip: Path, tmp_path: Path) -> None:
    done = revseg("segment", str(small_clip), "x", "--program", "look_twice", "--out", str(tmp_path / "o"))
    assert done.returncode == 2 and "look_twice" in done.stderr and "Traceback" not in done.stderr
