"""benchmarks/bench_look_again_learning.py --quick --dry: warm-up, a GRPO round and every evaluation run end to end."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
PROGRAMS = ("paper", "look_again")


@pytest.mark.slow
@pytest.mark.timeout(900)  # about 20 s on a quiet machine
def test_quick_dry_run_trains_and_evaluates_both_programs_without_touching_results(tmp_path: Path) -> None:
    results = ROOT / "benchmarks/RESULTS.md"
    before = results.read_text()
    env = os.environ | {"OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1"}
    run = subprocess.run(
        [
            sys.executable,
            str(ROOT / "benchmarks/bench_look_again_learning.py"),
            "--quick",
            "--dry",
            "--work",
            str(tmp_path),
        ],
        env=env,
        capture_output=True,
        text=True,
        timeout=800,
    )
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-3000:]
    lines = run.stdout.splitlines()
    rows = [line.split("|")[1:-1] for line in lines if line.startswith("| ") and line.split("|")[2].strip() in PROGRAMS]
    assert [(row[0].strip(), row[1].strip()) for row in rows] == [("nothing", "paper")] + [
        (policy, program) for policy in ("oracle", "sft", "grpo") for program in PROGRAMS
    ]
    header = next(line.split("|")[1:-1] for line in lines if line.startswith("| policy | program |"))
    column = {name.strip(): i for i, name in enumerate(header)}
    nothing, oracle_look = rows[0], rows[2]
    assert float(oracle_look[column["J&F"]]) == 100.0  # the oracle's look_again run found every held-out target
    assert float(oracle_look[column["J on target frames"]]) == 100.0
    assert float(nothing[column["J on target frames"]]) == 0.0 < float(nothing[column["J&F"]])
    sampled = [
        line.split("|")[1].strip() for line in lines if line.startswith("| ") and line.split("|")[2].strip() == "6"
    ]
    assert sampled == ["sft", "grpo"]  # 3 held-out clips x 2 sampled rollouts each
    assert (tmp_path / "grpo/round1/revseg_train.json").is_file() and (tmp_path / "sft/revseg_train.json").is_file()
    assert "| sft train |" in run.stdout and "| grpo collect |" in run.stdout
    assert results.read_text() == before  # --dry records nothing
