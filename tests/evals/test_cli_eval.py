"""`revseg eval` and `revseg score` as a user runs them; SIGKILL mid-evaluation, then --resume."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from revseg.evals import AgentSpec, evaluate, get_benchmark
from revseg.evals.report import comparable, load_report
from revseg.evals.runner import RESULTS_JSONL
from revseg.settings import ChainSettings
from revseg.testing.benchmarks import query_box_responder
from revseg.testing.chat_server import chat_server
from tests.evals.helpers import write_predictions

REVSEG = [sys.executable, "-m", "revseg.cli"]
ENV = {**os.environ, "HF_HUB_OFFLINE": "1", "OPENAI_API_KEY": "sk-test"}


def revseg(*args: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*REVSEG, *args], capture_output=True, text=True, timeout=timeout, env=ENV, check=False)


def test_help_lists_the_eval_and_score_options() -> None:
    text = revseg("eval", "--help").stdout
    for option in ["--data-root", "--split", "--policy", "--tracker", "--out", "--workers", "--limit", "--resume",
                   "--ray", "--exclude-videos"]:  # fmt: skip
        assert option in text, option
    assert "--pred" in revseg("score", "--help").stdout


def test_score_command_on_known_predictions(datasets: dict[str, Path], tmp_path: Path) -> None:
    bench = get_benchmark("mevis", datasets["mevis"])
    pred = write_predictions(bench, tmp_path / "pred", lambda s, gt: gt if s.video != "dog" else None)
    done = revseg("score", "mevis", "--data-root", str(datasets["mevis"]), "--pred", str(pred), "--out",
                  str(tmp_path / "report"))  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert "| **all** | 8 | 75.0 | 75.0 | 75.0 |" in done.stdout
    assert "| missing prediction | 2 |" in done.stdout
    assert load_report(tmp_path / "report")["failures"]["missing"] == ["dog/0", "dog/1"]


def test_bad_benchmark_or_data_root_is_a_one_line_error(tmp_path: Path) -> None:
    for args, named in [
        (["score", "kitti", "--data-root", str(tmp_path), "--pred", str(tmp_path)], "kitti"),
        (["score", "revos", "--data-root", str(tmp_path), "--pred", str(tmp_path)], "meta_expressions_valid_.json"),
    ]:
        done = revseg(*args)
        lines = done.stderr.strip().splitlines()
        assert done.returncode == 2 and len(lines) == 1 and named in lines[0], done.stderr


def slow(responder: Any, delay: float) -> Any:
    def respond(request: dict[str, Any]) -> str:
        time.sleep(delay)
        return str(responder(request))

    return respond


@pytest.mark.slow
def test_sigkill_then_resume_equals_an_uninterrupted_run(
    datasets: dict[str, Path], tiny_sam2_spec: str, tmp_path: Path
) -> None:
    data = str(datasets["revos"])
    with chat_server(slow(query_box_responder(), 0.15)) as url:
        spec = AgentSpec(
            policy="openai:q",
            tracker=tiny_sam2_spec,
            policy_options={"base_url": url},
            settings=ChainSettings(num_frames=4),
        )
        reference = evaluate(get_benchmark("revos", data), tmp_path / "reference", spec)
        out = tmp_path / "out"
        args = ["eval", "revos", "--data-root", data, "--policy", "openai:q", "--base-url", url,
                "--tracker", tiny_sam2_spec, "--frames", "4", "--out", str(out)]  # fmt: skip
        process = subprocess.Popen([*REVSEG, *args], env=ENV, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        results = out / RESULTS_JSONL
        deadline = time.monotonic() + 90
        while time.monotonic() < deadline and process.poll() is None:
            if results.is_file() and len(results.read_text().splitlines()) >= 2:
                break
            time.sleep(0.02)
        process.send_signal(signal.SIGKILL)
        process.wait(timeout=30)
        killed_at = len(results.read_text().splitlines())
        assert 2 <= killed_at < 8, "the evaluation should have been killed part-way"
        assert not (out / "report.json").exists()
        done = revseg(*args, "--resume")
    assert done.returncode == 0, done.stderr
    assert f"[{killed_at + 1}/8]" in done.stderr and f"[{killed_at}/8]" not in done.stderr  # nothing redone
    assert comparable(load_report(out)) == comparable(reference.to_json())
    records = [json.loads(line) for line in results.read_text().splitlines()]
    assert sorted(r["key"] for r in records) == sorted(s.key for s in reference.samples)  # each exactly once
    for record in records:
        folder = out / "predictions" / record["key"]
        expected = record["frames"] if record["status"] in ("ok", "no_target") else 0
        assert len(list(folder.glob("*.png"))) == expected, record["key"]
    assert not list((out / "predictions").rglob(".*.tmp-*"))
