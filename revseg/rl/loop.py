"""The training loop as one command: R rounds of collect -> train -> evaluate (DESIGN.md 1.5).

Each round collects groups with the latest checkpoint, trains GRPO on them with the first
model as the KL reference (as on-policy GRPO has it), and evaluates the new checkpoint on
held-out items with sampled rollouts scored by the paper's reward. Round 0 evaluates the
first model. Everything lives under one folder::

    OUT/loop.json            the validated config the run was started with
    OUT/round-000/eval/      held-out rollouts of the first model
    OUT/round-001/data/      the round's training groups (a trajectory store)
    OUT/round-001/checkpoint the trained model (hf:OUT/round-001/checkpoint), with its training state
    OUT/round-001/eval/      held-out rollouts of that checkpoint
    OUT/round-NNN/round.json the round's figures, written last: a round with it is finished
    OUT/curve.png, OUT/runs/ the reward curve (PNG, TensorBoard)

Every stage resumes: collection skips whole groups already stored, training continues from
its latest checkpoint, and a finished round is never redone, so a run killed at any point
continues where it stopped when started again with the same config.
"""

from __future__ import annotations

import json
import logging
import math
import statistics
import tomllib
from collections.abc import Callable, Sequence
from dataclasses import fields
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from revseg.errors import InputError, TrainingError
from revseg.rl.collect import CollectItem
from revseg.rl.grpo import GRPOConfig

logger = logging.getLogger(__name__)

CONFIG_FILE = "loop.json"
ROUND_FILE = "round.json"
CURVE_FILE = "curve.png"
REWARD_KEYS = ("total", "format", "temporal", "spatial")


class LoopConfig(BaseModel):
    """One run of the loop, as one file (TOML or YAML). Defaults are the paper's where it has one."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    policy: str = Field(description="The first model, hf:PATH_OR_HUB_ID; also the KL reference of every round.")
    rounds: int = Field(ge=1, description="collect -> train -> evaluate rounds.")
    dataset: str = Field(description="Benchmark with local ground truth to collect from (revos, mevis, ...).")
    data_root: Path = Field(description="The benchmark's data folder.")
    split: str | None = Field(default=None, description="Training split (default: the reader's).")
    items_per_round: int = Field(ge=1, description="Fresh (video, query) items per round, taken in order.")
    group_size: int = Field(default=8, ge=2, description="Rollouts per item (paper: 8).")
    eval_dataset: str | None = Field(default=None, description="Held-out benchmark (default: dataset).")
    eval_data_root: Path | None = Field(default=None, description="Its data folder (default: data_root).")
    eval_split: str | None = Field(default=None, description="Held-out split; must not share items with split.")
    eval_items: int = Field(default=0, ge=0, description="Held-out items per evaluation; 0 skips evaluation.")
    eval_rollouts: int = Field(default=4, ge=1, description="Sampled rollouts per held-out item.")
    num_frames: int = Field(default=16, ge=1, description="Frames sampled for turn 1 (paper: 16).")
    frame_size: tuple[int, int] | None = Field(default=None, description="Turn-1 frame size (default: the chain's).")
    keyframe_size: tuple[int, int] | None = Field(default=None, description="Keyframe size (default: the chain's).")
    temperature: float = Field(default=1.0, gt=0.0, description="Sampling temperature of collection and evaluation.")
    max_new_tokens: int = Field(default=1024, ge=1, description="Token budget per turn.")
    temporal: Literal["soft", "binary", "none"] = Field(default="soft", description="Temporal reward for training.")
    seed: int = Field(default=0, description="Base seed of sampling and group order; each round offsets it.")
    carry_optimizer: bool = Field(default=False, description="Start each round from the last round's Adam moments.")
    device: str | None = Field(default=None, description="Device of the collecting policy (default: the backend's).")
    train: dict[str, Any] = Field(default_factory=dict, description="GRPOConfig fields (learning_rate, beta, ...).")

    @field_validator("policy")
    @classmethod
    def _hf_policy(cls, value: str) -> str:
        if not value.startswith("hf:"):
            raise ValueError(f"the loop trains an hf: policy, got {value!r}")
        return value

    @field_validator("train")
    @classmethod
    def _grpo_fields(cls, value: dict[str, Any]) -> dict[str, Any]:
        known = {f.name for f in fields(GRPOConfig)}
        unknown = sorted(set(value) - known)
        if unknown:
            raise ValueError(f"unknown train option(s) {unknown}; GRPOConfig has {sorted(known)}")
        for managed in ("reference_model", "optimizer_state_from", "num_generations"):
            if managed in value:
                raise ValueError(f"train.{managed} is set by the loop itself")
        GRPOConfig(**value)  # its own checks (positive rates, known algorithm, ...)
        return value

    @model_validator(mode="after")
    def _held_out_is_held_out(self) -> LoopConfig:
        same_root = self.eval_data_root in (None, self.data_root)
        same_set = (self.eval_dataset or self.dataset) == self.dataset and self.eval_split == self.split
        if self.eval_items and same_root and same_set:
            raise ValueError("evaluation would reuse the training items: set eval_split or eval_data_root")
        return self

    def grpo(self, round_: int, previous: Path | None) -> GRPOConfig:
        """This round's trainer config: KL to the first model, optionally the last round's moments."""
        carried = str(previous) if self.carry_optimizer and previous is not None else None
        return GRPOConfig(
            **{"seed": self.seed + round_, **self.train},
            num_generations=self.group_size,
            reference_model=self.policy,
            optimizer_state_from=carried,
        )


def load_config(path: str | Path) -> LoopConfig:
    """A :class:`LoopConfig` from a ``.toml`` or ``.yaml`` file; an InputError names what is wrong."""
    path = Path(path)
    try:
        text = path.read_text()
    except OSError as exc:
        raise InputError(f"cannot read loop config {path}: {exc}") from exc
    try:
        if path.suffix == ".toml":
            raw = tomllib.loads(text)
        elif path.suffix in (".yaml", ".yml"):
            import yaml

            raw = yaml.safe_load(text) or {}
        else:
            raise InputError(f"loop config {path} must end in .toml, .yaml or .yml")
        return LoopConfig.model_validate(raw)
    except ValidationError as exc:
        problems = "; ".join(f"{'.'.join(str(p) for p in e['loc'])}: {e['msg']}" for e in exc.errors())
        raise InputError(f"loop config {path}: {problems}") from exc
    except (tomllib.TOMLDecodeError, ValueError) as exc:
        raise InputError(f"loop config {path} is not valid {path.suffix[1:].upper()}: {exc}") from exc


def run_loop(
    config: LoopConfig,
    out: str | Path,
    *,
    train_items: Sequence[CollectItem] | None = None,
    eval_items: Sequence[CollectItem] | None = None,
    on_round: Callable[[dict[str, Any]], None] | None = None,
) -> list[dict[str, Any]]:
    """Run (or continue) the loop in ``out``; returns every round's figures, round 0 first.

    ``train_items`` and ``eval_items`` replace the benchmarks of the config (a synthetic
    task, say). A folder started with another config is refused, so a resumed run is the
    run that stopped.
    """
    out = Path(out)
    _pin_config(config, out)
    train_pool = list(train_items) if train_items is not None else _benchmark(config, out, held_out=False)
    held_out = list(eval_items) if eval_items is not None else _benchmark(config, out, held_out=True)
    if len(train_pool) < config.items_per_round:
        raise TrainingError(f"{len(train_pool)} training items, fewer than items_per_round={config.items_per_round}")
    rows = []
    checkpoint: Path | None = None
    for round_ in range(config.rounds + 1):
        folder = out / f"round-{round_:03d}"
        if (folder / ROUND_FILE).exists():
            row = json.loads((folder / ROUND_FILE).read_text())
        else:
            row = _round(config, folder, round_, checkpoint, train_pool, held_out)
            _write_atomic(folder / ROUND_FILE, json.dumps(row, indent=1) + "\n")
            _log_round(out, row)
            if on_round is not None:
                on_round(row)
        rows.append(row)
        if round_:
            checkpoint = folder / "checkpoint"
    plot_curve(rows, out / CURVE_FILE)
    return rows


def _round(
    config: LoopConfig,
    folder: Path,
    round_: int,
    previous: Path | None,
    train_pool: list[CollectItem],
    held_out: list[CollectItem],
) -> dict[str, Any]:
    from revseg.rl.collect import collect
    from revseg.rl.rewards import RewardConfig
    from revseg.rl.train import TRAIN_STATE_FILE, train

    row: dict[str, Any] = {"round": round_}
    policy = config.policy.removeprefix("hf:") if previous is None else str(previous)
    if round_:
        start = (round_ - 1) * config.items_per_round % len(train_pool)
        batch = [train_pool[(start + i) % len(train_pool)] for i in range(config.items_per_round)]
        report = collect(
            batch,
            _policy(config, policy),
            folder / "data",
            group_size=config.group_size,
            sampling=_sampling(config),
            settings=_settings(config),
            reward_config=RewardConfig(temporal=config.temporal),
            resume=True,
            seed=config.seed + round_,
        )
        checkpoint = folder / "checkpoint"
        if not (checkpoint / TRAIN_STATE_FILE).exists():
            result = train(folder / "data", f"hf:{policy}", checkpoint, config.grpo(round_, previous), resume=True)
            row["steps"] = result.steps
            row["groups_with_signal"] = result.groups_with_signal
        row["train_reward"] = report.mean_reward
        policy = str(checkpoint)
    if config.eval_items:
        row["eval"] = evaluate(config, policy, held_out[: config.eval_items], folder / "eval")
    return row


def evaluate(config: LoopConfig, policy: str, items: Sequence[CollectItem], store: Path) -> dict[str, dict[str, float]]:
    """Held-out mean and standard error (over items) of each reward component, from sampled rollouts."""
    from revseg.rl.collect import collect
    from revseg.trajectory_store import TrajectoryStore

    collect(
        items,
        _policy(config, policy),
        store,
        group_size=config.eval_rollouts,
        sampling=_sampling(config),
        settings=_settings(config),
        resume=True,
        seed=config.seed + 7,  # the same held-out rollout seeds for every checkpoint
    )
    per_item: dict[str, list[dict[str, float]]] = {}
    for record in TrajectoryStore(store):
        per_item.setdefault(str(record.query_id), []).append(record.rewards or {})
    figures = {}
    for key in REWARD_KEYS:
        means = [statistics.mean(r.get(key, 0.0) for r in rewards) for rewards in per_item.values()]
        se = statistics.stdev(means) / math.sqrt(len(means)) if len(means) > 1 else 0.0
        figures[key] = {"mean": statistics.mean(means) if means else 0.0, "se": se}
    return figures


def plot_curve(rows: Sequence[dict[str, Any]], path: Path) -> bool:
    """Held-out reward per round, one panel per component; False when matplotlib is missing or nothing to draw."""
    evaluated = [r for r in rows if "eval" in r]
    if not evaluated:
        return False
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        logger.info("matplotlib is not installed: no %s", path.name)
        return False
    fig, axes = plt.subplots(1, len(REWARD_KEYS), figsize=(4 * len(REWARD_KEYS), 3.2), constrained_layout=True)
    for ax, key in zip(axes, REWARD_KEYS, strict=True):
        xs = [r["round"] for r in evaluated]
        ys = [r["eval"][key]["mean"] for r in evaluated]
        ax.errorbar(xs, ys, yerr=[r["eval"][key]["se"] for r in evaluated], fmt="o-", capsize=2)
        ax.set_title(key)
        ax.set_xlabel("round (0 = first model)")
        ax.grid(alpha=0.3)
    axes[0].set_ylabel("held-out mean ± s.e.")
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return True


def _log_round(out: Path, row: dict[str, Any]) -> None:
    try:
        from torch.utils.tensorboard import SummaryWriter
    except Exception:  # noqa: BLE001 - tensorboard is optional; any import failure means "not installed"
        return
    writer = SummaryWriter(str(out / "runs"))
    step = int(row["round"])
    for key, value in row.get("eval", {}).items():
        writer.add_scalar(f"eval/{key}", value["mean"], step)
    for key in ("train_reward", "groups_with_signal"):
        if key in row:
            writer.add_scalar(f"train/{key}", row[key], step)
    writer.close()


def _pin_config(config: LoopConfig, out: Path) -> None:
    saved = out / CONFIG_FILE
    text = config.model_dump_json(indent=1) + "\n"
    if saved.exists():
        if LoopConfig.model_validate_json(saved.read_text()) != config:
            raise InputError(f"{out} holds a loop started with another config ({saved}); use another folder")
        return
    out.mkdir(parents=True, exist_ok=True)
    _write_atomic(saved, text)


def _write_atomic(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(path.suffix + ".tmp")
    tmp.write_text(text)
    tmp.replace(path)


def _benchmark(config: LoopConfig, out: Path, *, held_out: bool) -> list[CollectItem]:
    from revseg.rl.collect import benchmark_items

    if held_out and not config.eval_items:
        return []
    if held_out:
        name, root, split = (
            config.eval_dataset or config.dataset,
            config.eval_data_root or config.data_root,
            config.eval_split,
        )
    else:
        name, root, split = config.dataset, config.data_root, config.split
    return list(benchmark_items(name, root, split, link_dir=out / "frames"))


def _policy(config: LoopConfig, path: str) -> Any:
    from revseg.policies import build_policy

    return build_policy(f"hf:{path}", device=config.device)


def _sampling(config: LoopConfig) -> Any:
    from revseg.settings import SamplingParams

    return SamplingParams(temperature=config.temperature, top_p=1.0, max_new_tokens=config.max_new_tokens)


def _settings(config: LoopConfig) -> Any:
    from revseg.settings import ChainSettings

    sizes = {"frame_size": config.frame_size, "keyframe_size": config.keyframe_size}
    return ChainSettings(num_frames=config.num_frames, **{k: v for k, v in sizes.items() if v is not None})
