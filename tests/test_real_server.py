"""The openai: policy against a server we did not write: ``transformers serve`` on loopback.

The server serves the tiny random Qwen2.5-VL from its folder (images and all, on CPU).
It is strict: it answers 422 to vLLM's ``return_token_ids`` and ``return_tokens_as_token_ids``
and to ``top_k``, and it takes ``logprobs`` but returns none. So every turn records those
fields as refused and log-probs and ids as absent; GRPO refuses such records, RFT trains on them.
Needs ``transformers[serving]`` (the Makefile's test install has it); skips naming it otherwise.
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

from revseg.testing import benchmarks as synth
from revseg.trajectory import Trajectory
from revseg.trajectory_store import TrajectoryStore

pytestmark = [pytest.mark.real_server, pytest.mark.slow]

REVSEG = [sys.executable, "-m", "revseg.cli"]
FAST = ["--tracker", "none", "--frames", "4", "--max-new-tokens", "8", "--seed", "0"]
REFUSED = ["return_token_ids", "return_tokens_as_token_ids"]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture(scope="module")
def served(tiny_qwen25_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """``transformers serve`` with the tiny Qwen2.5-VL on a free loopback port; yields the base URL."""
    for module in ("fastapi", "uvicorn"):
        pytest.importorskip(module, reason="transformers serve needs transformers[serving] (pip install -e '.[dev]')")
    command = shutil.which("transformers", path=str(Path(sys.executable).parent)) or shutil.which("transformers")
    if command is None:
        pytest.skip("no `transformers` command: install transformers[serving]")
    port = free_port()
    log = tmp_path_factory.mktemp("serve") / "serve.log"
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": "1"}
    args = [command, "serve", str(tiny_qwen25_dir), "--host", "127.0.0.1", "--port", str(port), "--device", "cpu"]
    with log.open("w") as out:
        process = subprocess.Popen(args, stdout=out, stderr=subprocess.STDOUT, env=env)
    try:
        deadline = time.monotonic() + 180
        while True:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=2):
                    break
            except OSError:
                if process.poll() is not None or time.monotonic() > deadline:
                    pytest.fail(f"transformers serve did not come up:\n{log.read_text()[-3000:]}")
                time.sleep(0.5)
        yield f"http://127.0.0.1:{port}/v1"
    finally:
        process.terminate()
        try:
            process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def revseg(*args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": "1"}
    return subprocess.run([*REVSEG, *args], capture_output=True, text=True, timeout=600, env=env, check=False)


def assert_absent_and_refused(trajectory: Trajectory) -> None:
    """The turn ran on the server and says what it asked, what was refused and that nothing came back."""
    assert trajectory.status != "policy_error", trajectory.error
    assert trajectory.turns, "turn 1 must have run"
    for turn in trajectory.turns:
        assert turn.response is not None and turn.exchange is not None
        assert turn.exchange.refused == REFUSED and "logprobs" in turn.exchange.asked
        assert "seed" in turn.exchange.asked  # taken by the server
        assert turn.exchange.returned == []  # it accepts logprobs=true but sends none
        assert turn.token_ids is None and turn.logprobs is None and turn.token_source is None


def test_segment_against_transformers_serve_records_what_the_server_did_not_return(
    served: str, tiny_qwen25_dir: Path, small_clip: Path, tmp_path: Path
) -> None:
    out = tmp_path / "out"
    done = revseg("segment", str(small_clip), "the front rider", "--policy", f"openai:{tiny_qwen25_dir}",
                  "--base-url", served, *FAST, "--out", str(out))  # fmt: skip
    assert "policy_error" not in done.stdout + done.stderr, done.stdout + done.stderr
    assert_absent_and_refused(Trajectory.model_validate_json((out / "trajectory.json").read_text()))


def test_segment_batch_of_16_at_concurrency_8_against_transformers_serve(
    served: str, tiny_qwen25_dir: Path, small_clip: Path, tmp_path: Path
) -> None:
    batch = tmp_path / "queries.jsonl"
    batch.write_text("".join(json.dumps({"id": f"q{i}", "video": str(small_clip), "query": f"rider number {i}"}) + "\n"
                             for i in range(16)))  # fmt: skip
    out = tmp_path / "out"
    done = revseg("segment-batch", str(batch), "--out", str(out), "--policy", f"openai:{tiny_qwen25_dir}",
                  "--base-url", served, *FAST, "--concurrency", "8")  # fmt: skip
    assert "16 of 16 queries ran" in done.stdout, done.stdout + done.stderr
    records = [json.loads(line) for line in (out / "results.jsonl").read_text().splitlines()]
    assert sorted(r["id"] for r in records) == sorted(f"q{i}" for i in range(16))
    for record in records:
        assert_absent_and_refused(Trajectory.model_validate_json((out / record["id"] / "trajectory.json").read_text()))


def test_collect_from_transformers_serve_then_grpo_refuses_and_rft_trains(
    served: str, tiny_qwen25_dir: Path, tmp_path: Path
) -> None:
    revos = synth.write_revos(tmp_path / "ReVOS", split="train")
    store = tmp_path / "store"
    done = revseg("collect", "--dataset", "revos", "--split", "train", "--data-root", str(revos), "--limit", "2",
                  "--group-size", "2", "--frames", "4", "--max-new-tokens", "6", "--seed", "0", "-q",
                  "--policy", f"openai:{tiny_qwen25_dir}", "--base-url", served,
                  "--tokenizer", str(tiny_qwen25_dir), "--out", str(store))  # fmt: skip
    assert done.returncode == 0, done.stdout + done.stderr
    records = list(TrajectoryStore(store))
    assert len(records) == 4
    for record in records:
        for turn in record.turns:  # ids re-tokenised locally; the server sent neither ids nor log-probs
            assert turn.exchange is not None and turn.exchange.returned == [] and turn.exchange.refused == REFUSED
            assert turn.token_source == "retokenised" and turn.logprobs is None and turn.logprobs_approximate

    train = ["train", "--trajectories", str(store), "--policy", f"hf:{tiny_qwen25_dir}", "--max-steps", "1"]
    grpo = revseg(*train, "--out", str(tmp_path / "grpo"), "--assume-on-policy")
    assert grpo.returncode == 2 and "--algorithm rft" in grpo.stderr, grpo.stdout + grpo.stderr
    rft = revseg(*train, "--out", str(tmp_path / "rft"), "--algorithm", "rft", "--lr", "1e-4")
    assert rft.returncode == 0 and "step 1: loss=" in rft.stdout, rft.stdout + rft.stderr
