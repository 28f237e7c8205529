"""`revseg segment-batch` end to end, as a user runs it: a subprocess against a faulty local server."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

from revseg.testing.chat_server import ChatServerFault, ChatServerLog, chat_server, inject_faults, paper_responder

REVSEG = [sys.executable, "-m", "revseg.cli"]


def revseg(*args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "OPENAI_API_KEY": "sk-test-secret-do-not-log"}
    return subprocess.run([*REVSEG, *args], capture_output=True, text=True, timeout=300, env=env, check=False)


def fail_query_2(request: dict[str, Any], attempt: int) -> ChatServerFault | None:
    number = int(re.search(r"number (\d+)", json.dumps(request["messages"][0])).group(1))  # type: ignore[union-attr]
    if number == 2:
        return ChatServerFault.server_error()
    return ChatServerFault.rate_limited(0.05) if number == 3 and attempt == 0 else None


def test_segment_batch_records_every_query_once_and_resumes(small_clip: Path, tmp_path: Path) -> None:
    batch = tmp_path / "queries.jsonl"
    batch.write_text("".join(json.dumps({"id": f"q{i}", "video": str(small_clip), "query": f"rider number {i}"}) + "\n"
                             for i in range(5)))  # fmt: skip
    out = tmp_path / "out"
    log = ChatServerLog()
    with chat_server(inject_faults(paper_responder(keyframe=3), fail_query_2), log) as url:
        common = ["--out", str(out), "--policy", "openai:m", "--base-url", url, "--tracker", "none",
                  "--frames", "4", "--timeout", "5", "--max-retries", "1"]  # fmt: skip
        first = revseg("segment-batch", str(batch), *common, "--concurrency", "5")
        again = revseg("segment-batch", str(batch), *common)
        resumed = revseg("segment-batch", str(batch), *common, "--resume")
    assert first.returncode == 1, first.stderr  # one query failed: recorded, and the exit says so
    assert "5 of 5 queries ran: 4 ok, 1 policy_error" in first.stdout
    assert "q2: policy_error (openai:m: InternalServerError" in first.stderr
    records = [json.loads(line) for line in (out / "results.jsonl").read_text().splitlines()]
    assert sorted(r["id"] for r in records) == ["q0", "q1", "q2", "q3", "q4"]
    assert {r["id"]: r["status"] for r in records}["q2"] == "policy_error"
    assert all((out / r["id"] / "trajectory.json").exists() for r in records)
    assert again.returncode == 2 and "--resume" in again.stderr and "Traceback" not in again.stderr
    assert resumed.returncode == 0 and "0 of 5 queries ran" in resumed.stdout and "5 skipped" in resumed.stdout
    assert len((out / "results.jsonl").read_text().splitlines()) == 5
    everything = (out / "results.jsonl").read_text() + first.stdout + first.stderr
    assert "sk-test-secret" not in everything


def test_segment_batch_reports_bad_lines_with_their_numbers(tmp_path: Path) -> None:
    batch = tmp_path / "bad.jsonl"
    batch.write_text('{"id": "a", "video": "v.mp4", "query": "q"}\n{"id": "a", "video": "v.mp4", "query": "q"}\n{\n')
    done = revseg("segment-batch", str(batch), "--out", str(tmp_path / "out"))
    assert done.returncode == 2 and "Traceback" not in done.stderr
    assert "2 bad line(s)" in done.stderr and "bad.jsonl:2: id 'a' repeats line 1" in done.stderr
    assert "bad.jsonl:3:" in done.stderr


def test_segment_batch_help_lists_the_batch_options() -> None:
    done = revseg("segment-batch", "--help")
    for option in ["--out", "--concurrency", "--resume", "--policy", "--tracker", "--base-url", "--timeout"]:
        assert option in done.stdout
