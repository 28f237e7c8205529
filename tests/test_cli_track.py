"""``revseg track`` end to end, as a user runs it: a subprocess on a real clip with a tiny tracker."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from revseg.tools.masks import read_masks_json

REVSEG = [sys.executable, "-m", "revseg.cli"]


def revseg(*args: str, timeout: float = 300) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": "1", "COLUMNS": "200"}
    return subprocess.run([*REVSEG, *args], capture_output=True, text=True, timeout=timeout, env=env, check=False)


def test_help_lists_the_track_options() -> None:
    done = revseg("track", "--help")
    assert done.returncode == 0
    for option in ["--frame", "--box", "--tracker", "--out", "--window", "--offload-video-to-cpu", "--device"]:
        assert option in done.stdout


def test_track_two_boxes_with_hf_sam2(small_clip: Path, tiny_hf_sam2_spec: str, tmp_path: Path) -> None:
    out = tmp_path / "out"
    done = revseg(
        "track", str(small_clip), "--frame", "10", "--box", "20,30,150,170", "--box", "170,20,300,160",
        "--tracker", tiny_hf_sam2_spec, "--out", str(out), "--quiet",
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert "tracked 24 frames" in done.stdout and done.stderr == ""
    masks = read_masks_json(out / "masks")
    assert (masks.num_frames, masks.objects) == (24, 2)
    assert len(list((out / "masks").glob("*.png"))) == 24 and (out / "overlay.mp4").is_file()
    assert json.loads((out / "track.json").read_text())["tracker"] == tiny_hf_sam2_spec


def test_windowed_sam2_from_the_command_line(
    small_clip: Path, tiny_sam2_spec: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # In this process, to see the states sam2 builds: one per window, each holding the frames it tracks.
    from typer.testing import CliRunner

    from revseg.cli import app
    from revseg.tools.trackers.sam2 import Sam2Tracker

    states: list[tuple[int, bool]] = []
    real_init = Sam2Tracker._init_from

    def spy(self: Sam2Tracker, source: str) -> dict[str, Any]:
        state = real_init(self, source)
        states.append((state["num_frames"], self.offload_video_to_cpu))
        return state

    monkeypatch.setattr(Sam2Tracker, "_init_from", spy)
    out = tmp_path / "out"
    done = CliRunner().invoke(app, [
        "track", str(small_clip), "-k", "0", "--box", "20,30,150,170", "--tracker", tiny_sam2_spec, "--device", "cpu",
        "--window", "8", "--offload-video-to-cpu", "--no-overlay", "--out", str(out), "--quiet",
    ])  # fmt: skip
    assert done.exit_code == 0, done.output
    assert read_masks_json(out / "masks").num_frames == 24 and not (out / "overlay.mp4").exists()
    # 24 frames in windows of 8 that overlap by one: at least ceil(23 / 7) = 4 states, none over 8 frames
    assert len(states) >= 4 and max(frames for frames, _ in states) <= 8, states
    assert all(offloaded for _, offloaded in states)


def test_bad_boxes_and_prompts_are_one_line_errors(small_clip: Path, tmp_path: Path) -> None:
    malformed = revseg("track", str(small_clip), "--frame", "0", "--box", "1,2,3", "--out", str(tmp_path / "a"))
    assert malformed.returncode == 2 and "four numbers" in malformed.stderr
    degenerate = revseg(
        "track", str(small_clip), "--frame", "3", "--box", "50,20,50,90", "--tracker", "hf-sam2:/no/such/weights",
        "--out", str(tmp_path / "b"),
    )  # fmt: skip
    assert degenerate.returncode == 2
    assert degenerate.stderr.strip().splitlines()[-1].startswith("revseg: error: box 0")
    assert "no area" in degenerate.stderr and "Traceback" not in degenerate.stderr


def test_default_tracker_on_a_cpu_is_chosen_by_hardware_and_said_in_one_line(small_clip: Path, tmp_path: Path) -> None:
    # No hub here: the chosen tracker's weights cannot load, but the choice is said before that.
    done = revseg("track", str(small_clip), "--frame", "3", "--box", "20,30,150,170", "--device", "cpu",
                  "--out", str(tmp_path / "out"))  # fmt: skip
    lines = [line for line in done.stderr.splitlines() if line.startswith("tracker: ")]
    assert len(lines) == 1, done.stderr
    assert "sam2:facebook/sam2.1-hiera-tiny?image_size=512" in lines[0] and "no GPU" in lines[0]
    assert "--paper" in lines[0]


def test_paper_flag_asks_for_the_papers_tracker_whatever_the_hardware(small_clip: Path, tmp_path: Path) -> None:
    done = revseg("track", str(small_clip), "--frame", "3", "--box", "20,30,150,170", "--device", "cpu", "--paper",
                  "--out", str(tmp_path / "out"))  # fmt: skip
    assert "with sam2:facebook/sam2.1-hiera-large" in done.stderr
    assert not any(line.startswith("tracker: ") for line in done.stderr.splitlines())
