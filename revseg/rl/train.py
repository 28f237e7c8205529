"""Offline GRPO (or rejection-sampling fine-tuning) on recorded groups, under accelerate.

One optimizer step takes ``prompts_per_step`` groups, rebuilds every rollout's turns through
the real processor (:mod:`revseg.rl.sequences`), scores their answer tokens under the model
(and, for the KL term, under the frozen reference) and accumulates the gradient of the
GRPO loss (:mod:`revseg.rl.grpo`) one rollout sequence at a time. Token weights are fixed
for the whole step before any forward pass, so the accumulated gradient is the full-batch
gradient whatever the micro-batching and however many processes share the step: each
process takes every W-th rollout and scales its loss by W, which DDP's gradient average
turns back into the sum.

GRPO needs on-policy behaviour log-probs: :func:`check_behaviour` refuses records whose
policy is not the model being trained (an API model, another checkpoint) and points at
``algorithm="rft"``, supervised fine-tuning on each group's best rollout.

Under ``accelerate launch`` (DDP, FSDP or DeepSpeed; configs in ``configs/accelerate``) the
same function runs on every process. With LoRA the reference model is the base with its
adapters disabled, so no second copy is loaded.
"""

from __future__ import annotations

import json
import logging
import math
import random
import time
from collections.abc import Callable, Iterable, Sequence
from contextlib import nullcontext
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from revseg.errors import ModelLoadError, TrainingError
from revseg.policies.tokens import placeholder_token_ids
from revseg.provenance import model_revision, template_sha256
from revseg.rl.grpo import GRPOConfig, LossStats, group_advantages, grpo_loss, sft_loss, token_weights
from revseg.rl.rebuild import check_rebuild
from revseg.rl.sequences import answer_logps, has_placeholder_tokens, rollout_sequences, turn_tokens
from revseg.tools.frame_cache import ResizedFrameCache
from revseg.trajectory import Status, Trajectory
from revseg.trajectory_store import TrajectoryStore

logger = logging.getLogger(__name__)

TRAIN_STATE_FILE = "revseg_train.json"
LOG_FILE = "train_log.jsonl"
STATE_DIR = "training_state"
"""accelerate's save_state folder inside each checkpoint: weights as trained, optimizer, scheduler, RNG."""
STEP_FILE = "revseg_step.json"


@dataclass
class TrainResult:
    """Where the checkpoint went and what each step logged."""

    checkpoint: Path
    steps: int
    history: list[dict[str, float]] = field(default_factory=list)

    @property
    def groups_with_signal(self) -> int:
        """Groups, over all steps, whose rollouts' rewards differed (the only ones GRPO learns from)."""
        return int(sum(m.get("groups_with_signal", 0.0) for m in self.history))


@dataclass
class _Rollout:
    trajectory: Trajectory
    advantage: float
    tokens: int
    weight: float = 0.0


def load_groups(source: TrajectoryStore | str | Path | Iterable[Trajectory]) -> list[list[Trajectory]]:
    """Scored groups from a store (whole groups only) or from records, without policy-error runs.

    Raises TrainingError when a record has no rewards (score it first) or nothing is left.
    """
    if isinstance(source, str | Path):
        source = TrajectoryStore(source)
    if isinstance(source, TrajectoryStore):
        raw = list(source.groups(complete=True).values())
    else:
        by_group: dict[str, list[Trajectory]] = {}
        for record in source:
            by_group.setdefault(record.group_id or record.run_id, []).append(record)
        raw = list(by_group.values())
    groups = []
    for group in raw:
        kept = [t for t in group if t.status != Status.POLICY_ERROR and t.turns and t.turns[0].response is not None]
        for t in kept:
            if t.rewards is None or "total" not in t.rewards:
                raise TrainingError(f"trajectory {t.run_id} has no rewards; score it against ground truth first")
        if kept:
            groups.append(kept)
    if not groups:
        raise TrainingError("no scored groups to train on (the store is empty or holds only policy errors)")
    return groups


def check_behaviour(groups: Sequence[Sequence[Trajectory]], policy_ref: str, model_dir: Path) -> list[str]:
    """Why GRPO cannot use these records for this model: one line per distinct problem, [] when on-policy."""
    problems: dict[str, None] = {}
    for group in groups:
        for t in group:
            info = t.policy
            if not _same_model(info.backend, info.model, policy_ref.removeprefix("hf:"), model_dir):
                problems[f"recorded with {info.spec}, not {policy_ref}"] = None
            elif any(turn.logprobs_approximate for turn in t.turns):
                problems[f"{info.spec}: approximate (re-scored) log-probs"] = None
    return list(problems)


def _same_model(backend: str, model: str, ref: str, model_dir: Path) -> bool:
    if backend != "hf":
        return False
    if model == ref:
        return True
    path = Path(model).expanduser()
    return path.exists() and path.resolve() == model_dir.resolve()


def best_rollouts(groups: Sequence[Sequence[Trajectory]], min_reward: float | None = None) -> list[list[Trajectory]]:
    """RFT data: each group's highest-reward rollout (first on ties), as one-rollout groups."""
    out = []
    for group in groups:
        best = max(group, key=lambda t: (t.rewards or {}).get("total", -math.inf))
        if min_reward is None or (best.rewards or {}).get("total", -math.inf) >= min_reward:
            out.append([best])
    return out


def train(
    trajectories: TrajectoryStore | str | Path | Iterable[Trajectory],
    policy: str,
    out_dir: str | Path,
    config: GRPOConfig | None = None,
    *,
    assume_on_policy: bool = False,
    resume: bool = False,
    log: Callable[[dict[str, float]], None] | None = None,
) -> TrainResult:
    """Train ``policy`` (``hf:PATH_OR_HUB_ID``) on recorded groups; save an HF checkpoint in ``out_dir``.

    ``assume_on_policy`` skips the behaviour-policy check (say, records from a vLLM server
    serving these very weights). ``log`` receives each step's metrics (the main process's).
    Every checkpoint (``save_steps`` ones and the final one) also holds the training state
    (weights as trained, optimizer, scheduler, RNG; accelerate's ``save_state``), so
    ``resume=True`` continues from the latest one with the same policy, data and config and
    reaches the parameters an uninterrupted run would; without it, a folder that already
    holds a run is refused rather than mixed into.
    """
    import torch
    from accelerate import Accelerator

    config = config or GRPOConfig()
    ref = policy.removeprefix("hf:")
    from revseg.hub import resolve_model_dir

    model_dir = resolve_model_dir(ref, what="policy", hint="--policy hf:/path/to/checkpoint")
    groups = load_groups(trajectories)
    if config.algorithm == "grpo":
        problems = [] if assume_on_policy else check_behaviour(groups, f"hf:{ref}", model_dir)
        if problems:
            raise TrainingError(
                "GRPO needs the behaviour policy's own log-probs, but these trajectories were "
                + "; ".join(problems[:3])
                + ". Train with --algorithm rft (supervised fine-tuning on each group's best rollout) instead, "
                "or pass --assume-on-policy if they really come from these weights"
            )
    else:
        groups = best_rollouts(groups, config.rft_min_reward)
        if not groups:
            raise TrainingError(f"no group's best rollout reaches rft_min_reward={config.rft_min_reward}")

    out = Path(out_dir)
    resume_from = _latest_state(out) if resume else None
    if not resume and (out / LOG_FILE).exists():
        raise TrainingError(
            f"{out} already holds a training run ({LOG_FILE}); pass --resume to continue it, or choose another folder"
        )
    if resume_from is not None:
        trained = json.loads((resume_from / STATE_DIR / STEP_FILE).read_text()).get("policy")
        if trained not in (None, f"hf:{ref}"):
            raise TrainingError(
                f"{resume_from} was trained from {trained}, not hf:{ref}; resume with --policy {trained}"
            )

    accelerator = Accelerator()
    torch.manual_seed(config.seed)
    model, processor, build_inputs = _load(model_dir, accelerator.device, config)
    # Before any step: a record whose video or template changed would train on inputs the policy never saw.
    check_rebuild(
        (t for group in groups for t in group),
        chat_template_sha256=template_sha256(getattr(processor, "chat_template", None)),
        model_revision=model_revision(model_dir),
    )
    reference = None
    if config.algorithm == "grpo" and config.beta != 0.0 and config.reference_model is not None:
        reference_dir = resolve_model_dir(
            config.reference_model.removeprefix("hf:"), what="KL reference", hint="--reference hf:/path/to/checkpoint"
        )
        reference, _, _ = _load(reference_dir, accelerator.device, config, frozen=True)
    elif config.algorithm == "grpo" and config.beta != 0.0 and not config.use_lora:
        reference, _, _ = _load(model_dir, accelerator.device, config, frozen=True)
    trainable = [p for p in model.parameters() if p.requires_grad]
    if config.optimizer == "sgd":
        optimizer: Any = torch.optim.SGD(trainable, lr=config.learning_rate, weight_decay=config.weight_decay)
    else:
        optimizer = torch.optim.AdamW(trainable, lr=config.learning_rate, weight_decay=config.weight_decay)
    if config.optimizer_state_from is not None and resume_from is None:
        _carry_moments(optimizer, Path(config.optimizer_state_from), config.learning_rate)
    warmup = max(config.warmup_steps, 0)
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda s: min(1.0, (s + 1) / (warmup + 1)))
    model, optimizer = accelerator.prepare(model, optimizer)
    # Registered rather than prepared: a prepared scheduler steps once per process under DDP.
    accelerator.register_for_checkpointing(scheduler)
    done = 0
    if resume_from is not None:
        accelerator.load_state(str(resume_from / STATE_DIR))
        done = int(json.loads((resume_from / STATE_DIR / STEP_FILE).read_text())["step"])
        logger.info("resuming from %s after step %d", resume_from, done)
    tokenizer = processor.tokenizer
    logger.info(
        "training under accelerate: %s, %d process(es)", accelerator.distributed_type.value, accelerator.num_processes
    )

    placeholders = placeholder_token_ids(tokenizer)
    kept = [[t for t in group if not has_placeholder_tokens(t, placeholders)] for group in groups]
    dropped = sum(len(g) for g in groups) - sum(len(g) for g in kept)
    if dropped:
        logger.warning("left out %d rollout(s) whose answers hold a vision placeholder token", dropped)
    groups = [g for g in kept if g]
    if not groups:
        raise TrainingError("every rollout holds a vision placeholder token in an answer; nothing to train on")

    if accelerator.is_main_process:
        _truncate_log(out, done)
    writer = (
        _tensorboard(config.logging_dir or str(out / "runs"), purge_step=done + 1 if done else None)
        if accelerator.is_main_process
        else None
    )
    history: list[dict[str, float]] = []
    step = 0
    rng = random.Random(config.seed)
    for _epoch in range(config.num_epochs):
        order = list(range(len(groups)))
        rng.shuffle(order)  # replayed from the seed on resume, so the batches after the stop are the same
        for start in range(0, len(order), config.prompts_per_step):
            if config.max_steps is not None and step >= config.max_steps:
                break
            if step < done:
                step += 1
                continue
            batch = [groups[i] for i in order[start : start + config.prompts_per_step]]
            lr = float(scheduler.get_last_lr()[0])
            metrics = _step(model, reference, optimizer, accelerator, batch, build_inputs, tokenizer, config)
            if metrics["updated"]:
                scheduler.step()
            step += 1
            metrics = {"step": float(step), "lr": lr, **metrics}
            history.append(metrics)
            if accelerator.is_main_process:
                _write_log(out, metrics, writer)
                if log is not None:
                    log(metrics)
            if config.save_steps and step % config.save_steps == 0:
                _save(accelerator, model, processor, out / f"checkpoint-{step}", config, merge=False)
                _save_state(accelerator, out / f"checkpoint-{step}", step, f"hf:{ref}")
    if writer is not None:
        writer.close()
    if config.algorithm == "grpo" and history and not any(m.get("groups_with_signal", 0.0) for m in history):
        logger.warning(
            "no step had a group with a reward spread: every group's rollouts scored alike, so GRPO had "
            "nothing to learn from (collect larger groups, sample at a higher temperature, or use easier queries)"
        )
    _save_state(accelerator, out, step, f"hf:{ref}")  # before the merge: LoRA's state is the adapters'
    _save(accelerator, model, processor, out, config, merge=True)
    return TrainResult(checkpoint=out, steps=step, history=history)


def _latest_state(out: Path) -> Path | None:
    """The checkpoint folder under ``out`` (``out`` itself or ``checkpoint-N``) with the most steps, if any."""
    found = []
    for folder in [out, *out.glob("checkpoint-*")]:
        marker = folder / STATE_DIR / STEP_FILE
        if marker.exists():
            found.append((int(json.loads(marker.read_text())["step"]), folder))
    return max(found, key=lambda x: x[0])[1] if found else None


def _save_state(accelerator: Any, folder: Path, step: int, policy: str) -> None:
    """The training state beside a checkpoint; its step file is written last, so a half-saved state is ignored."""
    accelerator.save_state(str(folder / STATE_DIR))
    if accelerator.is_main_process:
        (folder / STATE_DIR / STEP_FILE).write_text(json.dumps({"step": step, "policy": policy}) + "\n")
    accelerator.wait_for_everyone()


def _carry_moments(optimizer: Any, previous: Path, learning_rate: float) -> None:
    """Start ``optimizer`` from a previous run's moments (Adam's running averages), at this run's rate."""
    import torch

    folder = _latest_state(previous)
    if folder is None:
        raise TrainingError(f"{previous} holds no training state to carry optimizer moments from")
    saved = torch.load(folder / STATE_DIR / "optimizer.bin", map_location="cpu", weights_only=True)
    optimizer.load_state_dict(saved)
    for group in optimizer.param_groups:
        group["lr"] = learning_rate
        group.pop("initial_lr", None)


def _truncate_log(out: Path, done: int) -> None:
    """Keep the log lines of steps up to ``done`` (all of them when resuming a whole run; none on a fresh one)."""
    path = out / LOG_FILE
    if not path.exists():
        return
    kept = [line for line in path.read_text().splitlines() if line.strip() and json.loads(line)["step"] <= done]
    path.write_text("".join(line + "\n" for line in kept))


def _load(model_dir: Path, device: Any, config: GRPOConfig, *, frozen: bool = False) -> tuple[Any, Any, Any]:
    """(model, processor, build_inputs) in float32 on ``device``; LoRA-wrapped when asked (not for references)."""
    import torch
    from transformers import AutoModelForImageTextToText, AutoProcessor

    from revseg.policies.hf import HFPolicy
    from revseg.trajectory import PolicyInfo

    try:
        processor = AutoProcessor.from_pretrained(model_dir)
        model = AutoModelForImageTextToText.from_pretrained(model_dir, dtype=torch.float32).to(device)
    except Exception as exc:  # report any load failure as one line naming the folder
        raise ModelLoadError(f"could not load {model_dir} for training: {type(exc).__name__}: {exc}") from exc
    info = PolicyInfo(spec=f"hf:{model_dir}", backend="hf", model=str(model_dir))
    build_inputs = HFPolicy(model, processor, info).build_inputs
    if frozen:
        model.eval().requires_grad_(False)
        return model, processor, build_inputs
    if config.gradient_checkpointing:
        model.gradient_checkpointing_enable()
    if config.use_lora:
        from peft import LoraConfig, get_peft_model

        if config.gradient_checkpointing:
            model.enable_input_require_grads()
        lora = LoraConfig(
            r=config.lora_r,
            lora_alpha=config.lora_alpha,
            lora_dropout=config.lora_dropout,
            target_modules=config.lora_target_modules,
        )
        model = get_peft_model(model, lora)
    model.train()
    return model, processor, build_inputs


def _step(
    model: Any,
    reference: Any,
    optimizer: Any,
    accelerator: Any,
    groups: Sequence[Sequence[Trajectory]],
    build_inputs: Any,
    tokenizer: Any,
    config: GRPOConfig,
) -> dict[str, float]:
    """One optimizer step over ``groups``; returns the step's metrics (reduced over processes)."""
    import torch

    started = time.perf_counter()
    grpo = config.algorithm == "grpo"
    rollouts: list[_Rollout] = []
    signal = 0
    for group in groups:
        rewards = [t.rewards["total"] if t.rewards else 0.0 for t in group]
        spread = _std(rewards) if len(group) > 1 else 0.0
        signal += spread > 0.0
        if grpo and len(group) > 1 and spread <= config.min_group_std and config.min_group_std > 0:
            continue
        advantages = group_advantages(rewards, eps=config.advantage_eps, scale=config.scale_rewards).tolist()
        for t, a in zip(group, advantages, strict=True):
            rollouts.append(_Rollout(t, float(a), _token_count(t, tokenizer, need_logprobs=grpo)))
    for r, w in zip(rollouts, token_weights([r.tokens for r in rollouts], config.loss_aggregation), strict=True):
        r.weight = w
    world, rank = accelerator.num_processes, accelerator.process_index
    if grpo and not signal:
        logger.warning(
            "none of this step's %d group(s) has a reward spread: every rollout of a group scored the same, "
            "so no advantage is non-zero and only the KL term acts (nothing to learn from these groups)",
            len(groups),
        )
    if grpo and not any(r.tokens > 0 for r in rollouts):  # every group skipped by min_group_std: no update
        return {"groups": float(len(groups)), "groups_with_signal": float(signal), "rollouts": 0.0, "updated": 0.0}
    local = [r for i, r in enumerate(rollouts) if i % world == rank and r.tokens > 0]
    stats = LossStats()
    if not local:  # every process must take part in each step's gradient all-reduce
        raise TrainingError(
            f"process {rank} of {world} got no rollout in a step of {len(rollouts)}; "
            "use fewer processes or more prompts per step"
        )
    model.train()
    frames = ResizedFrameCache()  # the step's rollouts share their groups' frames: each decoded once
    for number, rollout in enumerate(local):
        sequences = rollout_sequences(
            rollout.trajectory, build_inputs, tokenizer, need_logprobs=grpo, frame_cache=frames
        )
        for index, seq in enumerate(sequences):
            last = number == len(local) - 1 and index == len(sequences) - 1
            # Only the step's last backward synchronises gradients (DDP all-reduce, DeepSpeed's boundary).
            accelerator.gradient_state._set_sync_gradients(last)
            with nullcontext() if last else accelerator.no_sync(model):
                loss, part = _sequence_loss(model, reference, accelerator, rollout, seq, config)
                accelerator.backward(loss * world)
            stats.add(part)
    accelerator.gradient_state._set_sync_gradients(True)
    frames.close()
    grad_norm = None
    if config.max_grad_norm is not None:
        grad_norm = accelerator.clip_grad_norm_(model.parameters(), config.max_grad_norm)
    optimizer.step()
    optimizer.zero_grad(set_to_none=True)
    totals = torch.tensor(
        [stats.tokens, stats.kl_sum, stats.clipped, stats.ratio_sum, stats.pg_loss, stats.kl_loss],
        device=accelerator.device,
        dtype=torch.float64,
    )
    totals = accelerator.reduce(totals, reduction="sum") if world > 1 else totals
    summed = LossStats(*(float(x) for x in totals.tolist()))
    summary = summed.summary()
    elapsed = time.perf_counter() - started
    metrics = {
        "loss": summed.pg_loss + summed.kl_loss,
        **summary,
        "processes": float(world),
        "groups": float(len(groups)),
        "groups_with_signal": float(signal),
        "rollouts": float(len(rollouts)),
        "updated": 1.0,
        "tokens": summed.tokens,
        "tokens_per_s": summed.tokens / elapsed if elapsed > 0 else 0.0,
        "response_length": sum(r.tokens for r in rollouts) / max(len(rollouts), 1),
        "seconds": elapsed,
    }
    if grad_norm is not None:
        metrics["grad_norm"] = float(grad_norm)
    for key in ("total", "format", "temporal", "spatial", "verify"):
        values = [r.trajectory.rewards[key] for r in rollouts if r.trajectory.rewards and key in r.trajectory.rewards]
        if values:
            metrics[f"reward/{key}"] = sum(values) / len(values)
    return metrics


def _sequence_loss(
    model: Any, reference: Any, accelerator: Any, rollout: _Rollout, seq: Any, config: GRPOConfig
) -> tuple[Any, LossStats]:
    import torch

    trajectory = rollout.trajectory
    temperature = trajectory.sampling.temperature if trajectory.sampling.temperature > 0 else 1.0
    logps = answer_logps(model, seq, temperature=temperature)[None]
    weights = torch.full_like(logps, rollout.weight)
    if config.algorithm == "rft":
        return sft_loss(logps, weights)
    ref_logps = None
    if config.beta != 0.0:
        with torch.no_grad():
            if reference is not None:
                ref_logps = answer_logps(reference, seq, temperature=temperature)[None]
            else:
                with accelerator.unwrap_model(model).disable_adapter():
                    ref_logps = answer_logps(model, seq, temperature=temperature)[None]
    assert seq.behaviour_logps is not None
    return grpo_loss(
        logps,
        seq.behaviour_logps[None],
        torch.tensor([rollout.advantage], device=logps.device),
        weights,
        ref_logps=ref_logps,
        beta=config.beta,
        epsilon=config.epsilon,
        epsilon_high=config.epsilon_high,
    )


def _token_count(trajectory: Trajectory, tokenizer: Any, *, need_logprobs: bool) -> int:
    """Answer tokens the loss will see for this rollout (what :func:`rollout_sequences` puts in its masks)."""
    turns = trajectory.turns
    if not turns or turns[0].name != "interpret" or turns[0].response is None:
        return 0
    if trajectory.settings.program == "look_again":  # one conversation: every answered turn is scored
        scored = [t for t in turns if t.response is not None]
    else:
        scored = [turns[0], *(t for t in turns[1:] if t.name == "ground" and t.response is not None)]
    return sum(len(turn_tokens(t, tokenizer, need_logprobs=need_logprobs)[0]) for t in scored)


def _std(values: Sequence[float]) -> float:
    mean = sum(values) / len(values)
    return math.sqrt(sum((v - mean) ** 2 for v in values) / max(len(values) - 1, 1))


def _tensorboard(folder: str, purge_step: int | None = None) -> Any:
    try:
        from torch.utils.tensorboard import SummaryWriter
    except Exception:  # noqa: BLE001 - tensorboard is optional; any import failure means "not installed"
        return None
    return SummaryWriter(folder, purge_step=purge_step)  # on resume, drop events logged after the checkpoint


def _write_log(out: Path, metrics: dict[str, float], writer: Any) -> None:
    out.mkdir(parents=True, exist_ok=True)
    with (out / LOG_FILE).open("a") as f:
        f.write(json.dumps(metrics) + "\n")
    if writer is not None:
        step = int(metrics["step"])
        for key, value in metrics.items():
            if key != "step":
                writer.add_scalar(f"train/{key}", value, step)
    logger.info("step %d: %s", int(metrics["step"]), {k: round(v, 5) for k, v in metrics.items() if k != "step"})


def _save(accelerator: Any, model: Any, processor: Any, out: Path, config: GRPOConfig, *, merge: bool) -> None:
    """Save in Hugging Face format, loadable as ``hf:OUT``; with LoRA also the adapters.

    ``merge`` merges LoRA into the model for good (the end of a run); otherwise the merged
    weights are computed aside and the model keeps training its adapters.
    """
    accelerator.wait_for_everyone()
    state = accelerator.get_state_dict(model)
    if not accelerator.is_main_process:
        return
    out.mkdir(parents=True, exist_ok=True)
    unwrapped = accelerator.unwrap_model(model)
    if config.use_lora:
        unwrapped.save_pretrained(out / "adapter")
        if merge:
            unwrapped, state = unwrapped.merge_and_unload(), None
        else:  # mid-run: merged weights computed aside, the adapters left training
            unwrapped, state = unwrapped.get_base_model(), _merged_lora_state(unwrapped)
    unwrapped.save_pretrained(out, state_dict=state, safe_serialization=True)
    processor.save_pretrained(out)
    state_file = {
        "config": config.to_dict(),
        "distributed": accelerator.distributed_type.value,  # how the run was launched: NO, MULTI_CPU, FSDP, ...
        "processes": accelerator.num_processes,
    }
    (out / TRAIN_STATE_FILE).write_text(json.dumps(state_file, indent=2, default=str) + "\n")


def _merged_lora_state(peft_model: Any) -> dict[str, Any]:
    """The base model's state dict with each LoRA layer's delta added, leaving ``peft_model`` untouched."""
    from peft.tuners.lora import LoraLayer

    base = peft_model.get_base_model()
    merged = {}
    for name, module in base.named_modules():
        if isinstance(module, LoraLayer):
            layer: Any = module  # peft's Linear; its get_delta_weight is not on the LoraLayer base type
            weight = layer.get_base_layer().weight.detach().clone()
            for adapter in layer.active_adapters:
                weight += layer.get_delta_weight(adapter).detach()
            merged[f"{name}.weight"] = weight
    state = {}
    for key, value in base.state_dict().items():
        if "lora_" in key:
            continue
        key = key.replace(".base_layer.", ".")
        state[key] = merged.get(key, value)
    return state
