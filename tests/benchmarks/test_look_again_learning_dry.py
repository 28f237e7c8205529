"""benchmarks/bench_look_again_learning.py --quick --dry: warm-up, a GRPO round and every evaluation run end to end."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


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
    rows = [line for line in run.stdout.splitlines() if line.startswith(("| oracle |", "| sft |", "| grpo |"))]
    assert [tuple(cell.strip() for cell in row.split("|")[1:3]) for row in rows] == [
        (policy, program) for policy in ("oracle", "sft", "grpo") for program in ("paper", "look_again")
    ]
    oracle_look = rows[1].split("|")
    assert float(oracle_look[3]) == 100.0  # the oracle's look_again J&F: every held-out run found the target
    assert (tmp_path / "grpo/round1/revseg_train.json").is_file() and (tmp_path / "sft/revseg_train.json").is_file()
    assert "| sft train |" in run.stdout and "| grpo collect |" in run.stdout
    assert results.read_text() == before  # --dry records nothing
