"""benchmarks/gpu/run.sh --dry: the GPU script's every section runs on the CPU, with the GPU machine's packages only."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
# What the GPU machine lacks and the script must not need (its wheels bring pydantic, sam2, hydra, transformers).
NOT_ON_THE_GPU_MACHINE = "av,decord,torchcodec,langgraph,langchain_core,langsmith,openai,skvideo,orjson,tenacity"


@pytest.mark.slow
@pytest.mark.timeout(1200)  # about a minute on a quiet machine; 10 on this shared one under load
def test_dry_run_measures_every_section_without_agent_or_video_libraries(tmp_path: Path) -> None:
    sections = ["env", "prepare", "policy", "track:hf-sam2:300", "track:sam2:3000", "grpo:lora-7b"]
    env = os.environ | {
        "PYTHON": sys.executable,  # run.sh takes $PYTHON, else python3 on PATH, which is not the venv's under make
        "REVSEG_BENCH_BLOCK": NOT_ON_THE_GPU_MACHINE,
        "REVSEG_BENCH_CACHE": str(tmp_path / "cache"),
        "OMP_NUM_THREADS": "1",
    }
    run = subprocess.run(
        [
            "bash",
            str(ROOT / "benchmarks/gpu/run.sh"),
            "--dry",
            "--budget",
            "800",
            "--out",
            str(tmp_path / "out"),
            *sections,
        ],
        env=env,
        capture_output=True,
        text=True,
        timeout=900,
    )
    log = (tmp_path / "out/log.txt").read_text()
    assert run.returncode == 0, run.stdout + log
    assert "ended with status" not in run.stdout, log[-3000:]
    rows = [json.loads(line) for line in (tmp_path / "out/results.jsonl").read_text().splitlines()]
    finished = {row["section"] for row in rows if not row.get("partial")}
    assert {"env", "prepare", "policy:sdpa:turn 1", "policy:sdpa:turn 2", "grpo:lora-7b"} <= finished
    assert {"track:hf-sam2:6", "track:sam2:12"} <= {r["section"] for r in rows}
    turn2 = next(r for r in rows if r["section"] == "policy:sdpa:turn 2")
    turn1 = next(r for r in rows if r["section"] == "policy:sdpa:turn 1")
    assert turn2["image_tokens"] > turn1["image_tokens"] > 0  # the keyframe's tokens come on top of the frames'
    table = (tmp_path / "out/results.md").read_text()
    assert "### track" in table and "### grpo" in table
