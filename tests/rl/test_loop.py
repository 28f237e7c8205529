"""`revseg rl loop`: a validated config file, one folder per round, resumable after a SIGKILL."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from revseg.errors import InputError
from revseg.rl.loop import load_config
from revseg.testing import benchmarks as synth


def write_config(path: Path, model: Path, train_root: Path, eval_root: Path, **extra: object) -> Path:
    lines = [
        f'policy = "hf:{model}"',
        "rounds = 2",
        'dataset = "revos"',
        f'data_root = "{train_root}"',
        'split = "train"',
        "items_per_round = 2",
        "group_size = 2",
        f'eval_data_root = "{eval_root}"',
        'eval_split = "train"',
        "eval_items = 2",
        "eval_rollouts = 1",
        "num_frames = 4",
        "max_new_tokens = 6",
        *(f"{k} = {json.dumps(v)}" for k, v in extra.items()),
        "[train]",
        "learning_rate = 1e-3",
        "prompts_per_step = 2",
    ]
    path.write_text("\n".join(lines) + "\n")
    return path


def test_a_loop_config_is_validated_and_names_what_is_wrong(tmp_path: Path) -> None:
    good = write_config(tmp_path / "loop.toml", tmp_path / "m", tmp_path / "a", tmp_path / "b")
    config = load_config(good)
    assert config.rounds == 2 and config.train["learning_rate"] == 1e-3
    grpo = config.grpo(1, tmp_path / "round-001")
    assert grpo.reference_model == f"hf:{tmp_path / 'm'}" and grpo.optimizer_state_from is None
    assert grpo.num_generations == 2 and grpo.seed == 1
    yaml_file = tmp_path / "loop.yaml"
    yaml_file.write_text(json.dumps(config.model_dump(mode="json")))  # JSON is YAML
    assert load_config(yaml_file) == config

    bad = good.read_text().replace("prompts_per_step = 2", "prompt_per_step = 2")
    (tmp_path / "typo.toml").write_text(bad)
    with pytest.raises(InputError, match=r"typo.toml: train: .*unknown train option.*prompt_per_step"):
        load_config(tmp_path / "typo.toml")
    (tmp_path / "same.toml").write_text(good.read_text().replace(f'eval_data_root = "{tmp_path / "b"}"\n', ""))
    with pytest.raises(InputError, match="reuse the training items"):
        load_config(tmp_path / "same.toml")
    (tmp_path / "rounds.toml").write_text(good.read_text().replace("rounds = 2", "rounds = 0"))
    with pytest.raises(InputError, match="rounds: Input should be greater than or equal to 1"):
        load_config(tmp_path / "rounds.toml")
    (tmp_path / "loop.txt").write_text(good.read_text())
    with pytest.raises(InputError, match=r"must end in \.toml"):
        load_config(tmp_path / "loop.txt")


@pytest.mark.slow
def test_the_loop_resumes_after_a_sigkill_without_redoing_finished_rounds(
    tiny_qwen25_dir: Path, tmp_path: Path
) -> None:
    train_root = synth.write_revos(tmp_path / "train" / "ReVOS", split="train")
    eval_root = synth.write_revos(tmp_path / "heldout" / "ReVOS", split="train")
    config = write_config(tmp_path / "loop.toml", tiny_qwen25_dir, train_root, eval_root)
    out = tmp_path / "run"
    command = [sys.executable, "-m", "revseg.cli", "rl", "loop", str(config), "--out", str(out)]
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": "1"}
    proc = subprocess.Popen(command, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        deadline = time.monotonic() + 240
        while not (out / "round-001" / "round.json").exists():
            if time.monotonic() > deadline or proc.poll() is not None:
                pytest.fail(f"round 1 did not finish: {proc.stderr.read().decode()[-2000:] if proc.stderr else ''}")
            time.sleep(0.05)
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=30)
    assert not (out / "round-002" / "round.json").exists()  # killed part-way
    first = out / "round-001" / "checkpoint" / "model.safetensors"
    stamp = first.stat().st_mtime_ns

    done = subprocess.run(command, env=env, capture_output=True, text=True, timeout=600, check=False)
    assert done.returncode == 0, done.stderr[-3000:]
    assert "round 1:" not in done.stdout and "round 2:" in done.stdout  # round 1 was not redone
    assert first.stat().st_mtime_ns == stamp
    rows = [json.loads((out / f"round-{r:03d}" / "round.json").read_text()) for r in range(3)]
    assert [r["round"] for r in rows] == [0, 1, 2]
    assert all(set(r["eval"]) == {"total", "format", "temporal", "spatial"} for r in rows)
    assert all("train_reward" in r for r in rows[1:])
    state = json.loads((out / "round-002" / "checkpoint" / "revseg_train.json").read_text())
    assert state["config"]["reference_model"] == f"hf:{tiny_qwen25_dir}"  # KL to the first model
    from revseg.trajectory_store import TrajectoryStore

    policies = {r.policy.model for r in TrajectoryStore(out / "round-002" / "data")}
    assert policies == {str(out / "round-001" / "checkpoint")}  # round 2 collected with round 1's checkpoint
    assert (out / "curve.png").exists() and (out / "loop.json").exists()

    other = write_config(tmp_path / "other.toml", tiny_qwen25_dir, train_root, eval_root, seed=5)
    refused = subprocess.run(
        [*command[:5], str(other), "--out", str(out)], env=env, capture_output=True, text=True, timeout=300, check=False
    )
    assert refused.returncode == 2 and "another config" in refused.stderr


def test_the_shipped_example_loop_config_is_valid() -> None:
    config = load_config(Path(__file__).parents[2] / "configs" / "rl" / "loop.toml")
    assert config.grpo(1, Path("round-000")).learning_rate == 1e-6 and config.carry_optimizer
