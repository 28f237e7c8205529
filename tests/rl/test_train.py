"""The trainer on the tiny Qwen2.5-VL: steps change the weights, the checkpoint loads back as a policy."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from revseg.errors import TrainingError
from revseg.policies.base import Message, TextPart
from revseg.policies.hf import HFPolicy
from revseg.rl.grpo import GRPOConfig
from revseg.rl.train import TRAIN_STATE_FILE, best_rollouts, check_behaviour, load_groups, train
from revseg.settings import SamplingParams
from revseg.trajectory import PolicyInfo
from revseg.trajectory_store import TrajectoryStore
from tests.rl.factories import make_trajectory


def weights(folder: Path) -> dict[str, torch.Tensor]:
    return load_file(str(folder / "model.safetensors"))


def changed(before: dict[str, torch.Tensor], after: dict[str, torch.Tensor]) -> set[str]:
    assert set(before) == set(after)
    return {k for k in before if not torch.equal(before[k], after[k])}


def test_grpo_steps_change_the_weights_and_the_checkpoint_loads_as_a_policy(
    scored_store: Path, tiny_qwen25_dir: Path, tmp_path: Path
) -> None:
    config = GRPOConfig(learning_rate=1e-3, prompts_per_step=1, max_steps=2)
    logged: list[dict[str, float]] = []
    result = train(scored_store, f"hf:{tiny_qwen25_dir}", tmp_path / "ckpt", config, log=logged.append)
    assert result.steps == 2 and [m["step"] for m in logged] == [1.0, 2.0]
    first, second = result.history
    assert all(math.isfinite(v) for m in result.history for v in m.values())
    assert first["ratio"] == pytest.approx(1.0, abs=1e-4)  # on-policy data, untouched model
    assert first["kl"] == pytest.approx(0.0, abs=1e-6) and first["clip_fraction"] == 0.0
    assert second["kl"] > 0.0  # the model has moved away from the reference
    for key in ("loss", "clip_fraction", "response_length", "reward/total", "reward/format", "tokens_per_s"):
        assert key in first
    assert len(changed(weights(tiny_qwen25_dir), weights(tmp_path / "ckpt"))) > 10
    log_lines = (tmp_path / "ckpt" / "train_log.jsonl").read_text().splitlines()
    assert [json.loads(line)["step"] for line in log_lines] == [1, 2]
    policy = HFPolicy.from_spec(str(tmp_path / "ckpt"))
    out = policy.generate([Message(role="user", parts=(TextPart("hello"),))], SamplingParams(max_new_tokens=4))
    assert out.token_ids


def test_lora_trains_adapters_merges_them_and_keeps_the_vision_tower(
    scored_store: Path, tiny_qwen25_dir: Path, tmp_path: Path
) -> None:
    pytest.importorskip("peft", reason="LoRA needs peft (the rl extra)")
    config = GRPOConfig(learning_rate=1e-3, prompts_per_step=2, max_steps=1, use_lora=True, lora_r=4)
    result = train(scored_store, f"hf:{tiny_qwen25_dir}", tmp_path / "lora", config)
    step = result.history[0]
    assert step["kl"] == pytest.approx(0.0, abs=1e-7)  # adapters start at zero: policy == reference
    assert (tmp_path / "lora" / "adapter" / "adapter_config.json").exists()
    diff = changed(weights(tiny_qwen25_dir), weights(tmp_path / "lora"))
    assert diff and all(k.startswith("model.layers.") and k.endswith("proj.weight") for k in diff)  # saved names
    HFPolicy.from_spec(str(tmp_path / "lora"))


def test_grpo_refuses_another_policys_trajectories_and_rft_trains_on_them(
    scored_store: Path, tiny_qwen25_dir: Path, tmp_path: Path
) -> None:
    api = PolicyInfo(spec="openai:gpt-4o", backend="openai", model="gpt-4o")
    records = [t.model_copy(update={"policy": api}) for t in TrajectoryStore(scored_store)]
    with pytest.raises(TrainingError, match=r"recorded with openai:gpt-4o.*--algorithm rft"):
        train(records, f"hf:{tiny_qwen25_dir}", tmp_path / "x", GRPOConfig(max_steps=1))
    for t in records:
        for turn in t.turns:
            turn.token_ids = turn.logprobs = None  # an API returns text only
    config = GRPOConfig(algorithm="rft", learning_rate=1e-3, max_steps=1)
    result = train(records, f"hf:{tiny_qwen25_dir}", tmp_path / "rft", config)
    assert result.steps == 1 and result.history[0]["rollouts"] == 2.0  # one best rollout per group
    assert result.history[0]["reward/total"] == 2.5 and math.isfinite(result.history[0]["loss"])
    assert changed(weights(tiny_qwen25_dir), weights(tmp_path / "rft"))


def test_group_loading_and_selection() -> None:
    a = make_trajectory(t1="x", group_id="a", rewards={"total": 1.0})
    b = make_trajectory(t1="y", group_id="a", rewards={"total": 2.0})
    c = make_trajectory(t1="z", group_id="b", rewards={"total": 0.0})
    groups = load_groups([a, b, c])
    assert [len(g) for g in groups] == [2, 1]
    assert [g[0].run_id for g in best_rollouts(groups)] == [b.run_id, c.run_id]
    assert [g[0].run_id for g in best_rollouts(groups, min_reward=0.5)] == [b.run_id]
    with pytest.raises(TrainingError, match="no rewards"):
        load_groups([make_trajectory(t1="x")])
    assert check_behaviour(groups, "hf:/models/tiny", Path("/models/tiny")) == []
    assert check_behaviour(groups, "hf:/other", Path("/other")) == ["recorded with hf:/models/tiny, not hf:/other"]
    a.turns[0].logprobs_approximate = True  # say, a server's log-probs paired with a re-tokenised answer
    assert check_behaviour(groups, "hf:/models/tiny", Path("/models/tiny")) == [
        "hf:/models/tiny: approximate (re-scored) log-probs"
    ]


@pytest.mark.slow
def test_two_accelerate_processes_give_the_same_update_as_one(
    scored_store: Path, tiny_qwen25_dir: Path, tmp_path: Path
) -> None:
    import os
    import subprocess
    import sys

    # SGD with lr 1 and no clipping: the update is the gradient itself, so this compares gradients exactly.
    config = GRPOConfig(optimizer="sgd", learning_rate=1.0, max_grad_norm=None, prompts_per_step=2, max_steps=1)
    single = train(scored_store, f"hf:{tiny_qwen25_dir}", tmp_path / "one", config)
    assert single.history[0]["processes"] == 1.0
    # DDP over gloo. accelerate turns FSDP and DeepSpeed configs into plain DDP on CPU, so the
    # shipped configs/accelerate/{fsdp,deepspeed_zero2}.yaml only run where there are GPUs.
    command = [
        sys.executable, "-m", "accelerate.commands.launch", "--multi_gpu", "--num_processes", "2",
        "--num_machines", "1", "--mixed_precision", "no", "--dynamo_backend", "no", "--main_process_port", "29533",
        "-m", "revseg.cli", "train", "--trajectories", str(scored_store), "--policy", f"hf:{tiny_qwen25_dir}",
        "--out", str(tmp_path / "two"), "--optimizer", "sgd", "--lr", "1", "--max-grad-norm", "0",
        "--prompts-per-step", "2", "--max-steps", "1",
    ]  # fmt: skip
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "ACCELERATE_USE_CPU": "true", "OMP_NUM_THREADS": "1"}
    done = subprocess.run(command, capture_output=True, text=True, env=env, timeout=300, check=False)
    assert done.returncode == 0, done.stderr[-3000:]
    state = json.loads((tmp_path / "two" / TRAIN_STATE_FILE).read_text())
    assert (state["distributed"], state["processes"]) == ("MULTI_CPU", 2)
    log = [json.loads(line) for line in (tmp_path / "two" / "train_log.jsonl").read_text().splitlines()]
    assert log[0]["processes"] == 2.0 and log[0]["rollouts"] == single.history[0]["rollouts"]
    assert log[0]["loss"] == pytest.approx(single.history[0]["loss"], rel=1e-5, abs=1e-9)
    base, one, two = weights(tiny_qwen25_dir), weights(tmp_path / "one"), weights(tmp_path / "two")
    largest = max(float((one[k] - base[k]).abs().max()) for k in base)
    assert largest > 0.1  # a real step
    for k in base:
        assert torch.allclose(one[k] - base[k], two[k] - base[k], atol=1e-5 * largest, rtol=0), k


def test_a_given_kl_reference_is_used_instead_of_the_policy_as_loaded(
    scored_store: Path, tiny_qwen25_dir: Path, tmp_path: Path
) -> None:
    step = {"optimizer": "sgd", "learning_rate": 1.0, "max_grad_norm": None, "prompts_per_step": 2, "max_steps": 1}
    moved = train(scored_store, f"hf:{tiny_qwen25_dir}", tmp_path / "round1", GRPOConfig(**step))  # type: ignore[arg-type]
    default = train(scored_store, f"hf:{tiny_qwen25_dir}", tmp_path / "a", GRPOConfig(**step))  # type: ignore[arg-type]
    assert default.history[0]["kl"] == 0.0  # the reference is the policy as loaded: identical at the first step
    config = GRPOConfig(**step, reference_model=f"hf:{moved.checkpoint}")  # type: ignore[arg-type]
    anchored = train(scored_store, f"hf:{tiny_qwen25_dir}", tmp_path / "b", config)
    assert anchored.history[0]["kl"] > 1e-6
    state = json.loads((tmp_path / "b" / TRAIN_STATE_FILE).read_text())
    assert state["config"]["reference_model"] == f"hf:{moved.checkpoint}"


def test_flat_groups_are_counted_warned_about_and_skipped_without_an_abort(
    scored_store: Path, tiny_qwen25_dir: Path, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    records = TrajectoryStore(scored_store)
    flat = [t.model_copy(update={"rewards": {**(t.rewards or {}), "total": 1.0}}) for t in records]
    with caplog.at_level("WARNING", logger="revseg.rl.train"):
        result = train(flat, f"hf:{tiny_qwen25_dir}", tmp_path / "flat", GRPOConfig(prompts_per_step=2, max_steps=1))
    assert result.history[0]["groups_with_signal"] == 0.0 and result.groups_with_signal == 0
    assert "has a reward spread" in caplog.text
    assert "nothing to learn" in caplog.text
    logged = json.loads((tmp_path / "flat" / "train_log.jsonl").read_text().splitlines()[0])
    assert logged["groups_with_signal"] == 0.0

    skip_all = GRPOConfig(prompts_per_step=2, max_steps=1, min_group_std=0.01, learning_rate=1e-2)
    skipped = train(flat, f"hf:{tiny_qwen25_dir}", tmp_path / "skip", skip_all)
    assert skipped.history[0]["updated"] == 0.0 and not changed(weights(tiny_qwen25_dir), weights(tmp_path / "skip"))

    one_step = GRPOConfig(prompts_per_step=2, max_steps=1)
    mixed = train(scored_store, f"hf:{tiny_qwen25_dir}", tmp_path / "mixed", one_step)
    assert mixed.history[0]["groups_with_signal"] == 2.0 and mixed.history[0]["updated"] == 1.0


def test_a_run_stopped_and_resumed_reaches_the_parameters_of_one_that_never_stopped(
    scored_store: Path, tiny_qwen25_dir: Path, tmp_path: Path
) -> None:
    # AdamW with warm-up: the resumed steps are only identical if moments and schedule come back too.
    base = {"learning_rate": 1e-2, "prompts_per_step": 1, "num_epochs": 2, "warmup_steps": 2, "save_steps": 1}
    whole = train(scored_store, f"hf:{tiny_qwen25_dir}", tmp_path / "whole", GRPOConfig(**base))  # type: ignore[arg-type]
    assert whole.steps == 4
    stopped = GRPOConfig(**base, max_steps=2)  # type: ignore[arg-type]
    train(scored_store, f"hf:{tiny_qwen25_dir}", tmp_path / "stopped", stopped)
    with pytest.raises(TrainingError, match="--resume"):
        train(scored_store, f"hf:{tiny_qwen25_dir}", tmp_path / "stopped", GRPOConfig(**base))  # type: ignore[arg-type]
    resumed = train(
        scored_store,
        f"hf:{tiny_qwen25_dir}",
        tmp_path / "stopped",
        GRPOConfig(**base),
        resume=True,  # type: ignore[arg-type]
    )
    assert [m["step"] for m in resumed.history] == [3.0, 4.0]
    final, reference = weights(tmp_path / "stopped"), weights(tmp_path / "whole")
    assert changed(weights(tiny_qwen25_dir), reference)
    assert not changed(final, reference)  # bit for bit
    for a, b in zip(resumed.history, whole.history[2:], strict=True):
        assert a["loss"] == b["loss"] and a["lr"] == b["lr"]
    log = [json.loads(line)["step"] for line in (tmp_path / "stopped" / "train_log.jsonl").read_text().splitlines()]
    assert log == [1, 2, 3, 4]


def test_a_run_resumed_from_a_mid_run_checkpoint_drops_the_later_log_lines(
    scored_store: Path, tiny_qwen25_dir: Path, tmp_path: Path
) -> None:
    config = GRPOConfig(learning_rate=1e-2, prompts_per_step=1, num_epochs=2, save_steps=3)
    train(scored_store, f"hf:{tiny_qwen25_dir}", tmp_path / "run", config)
    import shutil

    shutil.rmtree(tmp_path / "run" / "training_state")  # as if killed after checkpoint-3 was saved
    resumed = train(scored_store, f"hf:{tiny_qwen25_dir}", tmp_path / "run", config, resume=True)
    assert [m["step"] for m in resumed.history] == [4.0]
    log = [json.loads(line)["step"] for line in (tmp_path / "run" / "train_log.jsonl").read_text().splitlines()]
    assert log == [1, 2, 3, 4]


def test_lora_save_steps_checkpoints_load_as_hf_policies_with_the_merged_weights(
    scored_store: Path, tiny_qwen25_dir: Path, tmp_path: Path
) -> None:
    pytest.importorskip("peft", reason="LoRA needs peft (the rl extra)")
    config = GRPOConfig(learning_rate=1e-2, prompts_per_step=2, max_steps=1, use_lora=True, lora_r=4, save_steps=1)
    train(scored_store, f"hf:{tiny_qwen25_dir}", tmp_path / "lora", config)
    mid, final = weights(tmp_path / "lora" / "checkpoint-1"), weights(tmp_path / "lora")
    assert changed(weights(tiny_qwen25_dir), mid)
    assert set(mid) == set(final)
    for key in final:  # the same step: merged aside mid-run equals merged for good at the end
        assert torch.allclose(mid[key], final[key], atol=1e-6), key
    assert (tmp_path / "lora" / "checkpoint-1" / "adapter" / "adapter_config.json").exists()
    HFPolicy.from_spec(str(tmp_path / "lora" / "checkpoint-1"))


def test_optimizer_moments_carried_from_a_previous_round_change_the_next_update(
    scored_store: Path, tiny_qwen25_dir: Path, tmp_path: Path
) -> None:
    step = {"learning_rate": 1e-2, "prompts_per_step": 2, "max_steps": 1}
    first = train(scored_store, f"hf:{tiny_qwen25_dir}", tmp_path / "r1", GRPOConfig(**step))  # type: ignore[arg-type]
    fresh = train(scored_store, f"hf:{first.checkpoint}", tmp_path / "fresh", GRPOConfig(**step), assume_on_policy=True)  # type: ignore[arg-type]
    carried_config = GRPOConfig(**step, optimizer_state_from=str(first.checkpoint))  # type: ignore[arg-type]
    train(scored_store, f"hf:{first.checkpoint}", tmp_path / "carried", carried_config, assume_on_policy=True)
    assert fresh.steps == 1
    assert changed(weights(tmp_path / "fresh"), weights(tmp_path / "carried"))
    with pytest.raises(TrainingError, match="no training state"):
        bad = GRPOConfig(**step, optimizer_state_from=str(tmp_path))  # type: ignore[arg-type]
        train(scored_store, f"hf:{first.checkpoint}", tmp_path / "bad", bad, assume_on_policy=True)
