"""benchmarks/bench_look_again_learning.py --quick --dry: warm-up, a GRPO round and every evaluation run end to end."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


def table(stdout: str, header: str) -> list[dict[str, str]]:
    """The rows of the Markdown table whose header line starts with ``header``, as {column: cell}."""
    lines = stdout.splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith(header))
    names = [cell.strip() for cell in lines[start].split("|")[1:-1]]
    rows = []
    for line in lines[start + 2 :]:
        if not line.startswith("|"):
            break
        rows.append(dict(zip(names, (cell.strip() for cell in line.split("|")[1:-1]), strict=True)))
    return rows


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
    evaluated, sampled = table(run.stdout, "| policy | program |"), table(run.stdout, "| policy | rollouts |")
    assert [(row["policy"], row["program"]) for row in evaluated] == [("nothing", "paper")] + [
        (policy, program) for policy in ("oracle", "sft", "grpo") for program in ("paper", "look_again")
    ]
    nothing, oracle_look = evaluated[0], evaluated[2]
    assert float(oracle_look["J&F"]) == 100.0  # the oracle's look_again run found every held-out target
    assert float(oracle_look["J on target frames"]) == 100.0
    assert float(nothing["J on target frames"]) == 0.0 < float(nothing["J&F"])
    assert [(row["policy"], row["rollouts"]) for row in sampled] == [("sft", "6"), ("grpo", "6")]  # 3 clips x 2
    assert (tmp_path / "grpo/round1/revseg_train.json").is_file() and (tmp_path / "sft/revseg_train.json").is_file()
    assert "| sft train |" in run.stdout and "| grpo collect |" in run.stdout
    assert results.read_text() == before  # --dry records nothing
