"""`revseg collect`, `train` and `replay` as a user runs them, with the tiny Qwen2.5-VL; a SIGKILL mid-collect."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from revseg.testing import benchmarks as synth
from revseg.trajectory_store import TrajectoryStore

REVSEG = [sys.executable, "-m", "revseg.cli"]
FAST = ["--frames", "4", "--max-new-tokens", "6", "--group-size", "2", "--seed", "0"]


def revseg(*args: str, timeout: float = 300) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "HF_HUB_OFFLINE": "1"}
    return subprocess.run([*REVSEG, *args], capture_output=True, text=True, timeout=timeout, env=env, check=False)


@pytest.fixture(scope="module")
def revos_train(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return synth.write_revos(tmp_path_factory.mktemp("revos-cli") / "ReVOS", split="train")


def cli(*args: str) -> tuple[int, str]:
    """Run the command in this process (models load once per test, not once per command); (exit code, output)."""
    from typer.testing import CliRunner

    from revseg.cli import app
    from revseg.errors import RevsegError

    result = CliRunner().invoke(app, list(args))
    if isinstance(result.exception, RevsegError):  # what main() turns into "revseg: error: ..." and exit 2
        return 2, f"revseg: error: {result.exception}"
    if result.exception is not None and not isinstance(result.exception, SystemExit):
        raise result.exception
    return result.exit_code, result.output


def test_collect_train_replay_and_collect_again_with_the_checkpoint(
    revos_train: Path, tiny_qwen25_dir: Path, tmp_path: Path
) -> None:
    store = tmp_path / "store"
    common = ["--dataset", "revos", "--split", "train", "--data-root", str(revos_train), *FAST, "-q"]
    code, out = cli("collect", *common, "--policy", f"hf:{tiny_qwen25_dir}", "--out", str(store), "--limit", "3")
    assert code == 0, out
    assert "wrote 3 groups (6 rollouts" in out
    records = list(TrajectoryStore(store))
    assert len(records) == 6 and all(r.rewards is not None and r.turns[0].token_ids for r in records)

    code, out = cli("replay", str(store))
    assert code == 0 and len(out.splitlines()) == 7
    code, out = cli("replay", str(store), "--id", records[0].run_id[:10])
    assert code == 0, out
    for text in ("--- turn 1: interpret", "prompt:", "answer:", "tokens:", "(generated)", "rewards: total="):
        assert text in out

    ckpt = tmp_path / "ckpt"
    code, out = cli(
        "train", "--trajectories", str(store), "--policy", f"hf:{tiny_qwen25_dir}", "--out", str(ckpt),
        "--lr", "1e-4", "--prompts-per-step", "3", "--max-steps", "1",
    )  # fmt: skip
    assert code == 0, out
    assert "step 1: loss=" in out and (ckpt / "model.safetensors").exists()
    assert re.search(r"groups_with_signal=[0-3]\b", out), out

    code, out = cli("collect", *common, "--policy", f"hf:{ckpt}", "--out", str(store), "--resume", "--limit", "1")
    assert code == 0, out
    assert "wrote 1 groups" in out and "3 already there" in out
    policies = {r.policy.spec for r in TrajectoryStore(store)}
    assert policies == {f"hf:{tiny_qwen25_dir}", f"hf:{ckpt}"}

    code, out = cli("train", "--trajectories", str(store), "--policy", f"hf:{ckpt}", "--out", str(tmp_path / "x"))
    assert code == 2 and "--algorithm rft" in out


def test_collect_from_a_server_without_token_ids_records_retokenised_turns_that_train_by_rft_only(
    revos_train: Path, tiny_qwen25_dir: Path, tmp_path: Path
) -> None:
    from transformers import AutoTokenizer

    from revseg.testing.chat_server import chat_server, paper_responder, tokenizer_tokens

    served = tokenizer_tokens(AutoTokenizer.from_pretrained(tiny_qwen25_dir))
    store = tmp_path / "store"
    common = ["--dataset", "revos", "--split", "train", "--data-root", str(revos_train), *FAST, "-q", "--limit", "2"]
    with chat_server(paper_responder(keyframe=1, box=(10, 10, 300, 300)), tokenize=served, token_ids=False) as url:
        policy = ["--policy", "openai:tiny", "--base-url", url, "--max-new-tokens", "200"]
        code, out = cli("collect", *common, *policy, "--tokenizer", str(tiny_qwen25_dir), "--out", str(store))
    assert code == 0, out
    records = list(TrajectoryStore(store))
    turns = [turn for r in records for turn in r.turns]
    assert len(records) == 4 and all(len(r.turns) == 2 and r.rewards for r in records)
    assert all(t.token_source == "retokenised" and t.logprobs_approximate for t in turns)
    assert all(
        t.logprobs is not None and t.token_ids is not None and len(t.logprobs) == len(t.token_ids) for t in turns
    )

    train = ["train", "--trajectories", str(store), "--policy", f"hf:{tiny_qwen25_dir}", "--max-steps", "1"]
    code, out = cli(*train, "--out", str(tmp_path / "grpo"))
    assert code == 2 and "recorded with openai:tiny" in out and "--algorithm rft" in out, out
    code, out = cli(*train, "--out", str(tmp_path / "grpo"), "--assume-on-policy")  # same weights, still not exact
    assert code == 2 and "approximate log-probs (token ids retokenised)" in out and "--algorithm rft" in out, out
    code, out = cli(*train, "--out", str(tmp_path / "rft"), "--algorithm", "rft", "--lr", "1e-4")
    assert code == 0 and "step 1: loss=" in out, out


@pytest.mark.slow
def test_sigkill_loses_at_most_the_group_in_flight_and_resume_completes(
    revos_train: Path, tiny_qwen25_dir: Path, tmp_path: Path
) -> None:
    store = tmp_path / "store"
    args = [
        "collect", "--dataset", "revos", "--split", "train", "--data-root", str(revos_train), *FAST,
        "--policy", f"hf:{tiny_qwen25_dir}", "--out", str(store),
    ]  # fmt: skip
    env = {**os.environ, "HF_HUB_OFFLINE": "1"}
    proc = subprocess.Popen([*REVSEG, *args], env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            if (store / "store.json").exists() and len(TrajectoryStore(store).groups(complete=True)) >= 2:
                break
            time.sleep(0.05)
        else:
            pytest.fail("collect wrote no group within 120 s")
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=30)
    before = TrajectoryStore(store).groups(complete=True)
    assert 2 <= len(before) < 8  # killed part-way
    records, skipped = TrajectoryStore(store).scan()
    assert len(skipped) <= 1 and len(records) <= 2 * len(before) + 1  # at most the group in flight is lost

    resumed = revseg(*args, "--resume")
    assert resumed.returncode == 0, resumed.stderr
    assert f"{len(before)} already there" in resumed.stdout
    groups = TrajectoryStore(store).groups(complete=True)
    keys = [g[0].query_id for g in groups.values()]
    assert len(keys) == 8 and len(set(keys)) == 8  # every item once, none twice
    assert all(groups[gid] == runs for gid, runs in before.items())  # finished groups untouched


def test_train_resume_continues_a_stopped_run_and_refuses_to_mix_runs(
    tiny_qwen25_dir: Path, small_clip: Path, tmp_path: Path
) -> None:
    import json

    from revseg.policies.hf import HFPolicy
    from tests.rl.conftest import record_groups

    store = TrajectoryStore(tmp_path / "store")
    for group in record_groups(HFPolicy.from_spec(str(tiny_qwen25_dir)), small_clip, groups=3):
        store.append(group)
    args = [
        "train",
        "--trajectories",
        str(store.root),
        "--policy",
        f"hf:{tiny_qwen25_dir}",
        "--out",
        str(tmp_path / "c"),
    ]
    code, out = cli(*args, "--prompts-per-step", "1", "--max-steps", "1", "--lr", "1e-3")
    assert code == 0, out
    code, out = cli(*args, "--prompts-per-step", "1", "--lr", "1e-3")
    assert code == 2 and "--resume" in out
    code, out = cli(*args, "--prompts-per-step", "1", "--lr", "1e-3", "--resume")
    assert code == 0, out
    assert "step 1:" not in out and "step 3:" in out and "groups_with_signal=" in out
    steps = [json.loads(line)["step"] for line in (tmp_path / "c" / "train_log.jsonl").read_text().splitlines()]
    assert steps == [1, 2, 3]
