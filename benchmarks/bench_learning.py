"""Does the training loop learn? Offline GRPO on a synthetic shapes task: soft vs binary temporal reward, stale data.

A tiny random Qwen2.5-VL (revseg.testing, widened to 128 x 4 layers by default) is taught
the chain on clips of coloured shapes (revseg.testing.shapes: exact masks, queries such as
"the shape that disappears"). By default the clips' background is a pale colour ramp
(``--background gradient``): Qwen2.5-VL's vision tower has rotary positions only, so on a
flat background nothing in a patch tells where it is. The shapes are 1.5x their default
sizes, two per clip (``--shape-scale``, ``--max-shapes``): a tiny model learns where a shape
is only once it spans a few merged visual tokens (28 px each). With the default shapes
(14-52 px, up to three) boxes stayed unlearnt after 12,000 supervised examples of the box
turn alone; at 1.5x, two shapes and clear keyframes about a quarter had IoU > 0.5 after
8,000 (inside the chain's warm-up, with turn 1 to learn too: 9% greedy, 6% sampled).

1. SFT warm-up: a teacher policy answers each warm-up clip's two turns from the ground
   truth in the strict format; ``train(algorithm="rft")`` fine-tunes on those records
   (answers re-tokenised, images rebuilt). By default its keyframe is any sampled frame that
   shows the target clearly (its box at least half the largest) and its box coordinates are
   rounded to a 14-px grid, so the warm-up teaches the format, the description and a coarse
   box, and leaves the choice of the best keyframe (what the soft temporal reward pays for)
   to GRPO.
2. Three arms from the same warm-up checkpoint, same seeds, same clips: R rounds of
   collect (``group_size`` rollouts per clip, temperature 1) -> ``train`` (GRPO, the
   checkpoint of the previous round as ``hf:PATH``, KL to the warm-up model) -> evaluate on
   held-out clips. ``soft`` and ``binary`` differ only in the temporal reward used for
   training (paper Eq. 7 or ``1(present at k)``); ``stale`` trains with the soft reward on
   rollouts collected by the checkpoint :data:`STALE_LAG` rounds older (clip fraction and
   KL reported).
3. Every checkpoint is evaluated the same way: a fixed number of sampled rollouts
   (temperature 1, fixed seeds) per held-out clip, scored with the paper's reward (soft);
   "present at k" is the binary temporal reward of the same rollouts. Gains over the
   warm-up are given in standard errors, also paired over the held-out clips.

Prints a Markdown table with the time of each phase, records it in benchmarks/RESULTS.md,
writes benchmarks/learning.json (held-out means and standard errors per arm and round) and
draws the curves to benchmarks/learning_curve.png (none of it with ``--dry``). The arms and
the two round-0 evaluations run in processes of their own, one torch thread each. A rerun
with the same ``--work`` folder keeps the warm-up (and reports its original times). Run:
``.venv/bin/python benchmarks/bench_learning.py`` (on 2 cores: about 14 minutes of
warm-up, 2,000 teacher chains x 4 epochs, then 3 arms x 5 rounds side by side; ``--quick``
is a smoke check of a few minutes).
"""

from __future__ import annotations

import argparse
import functools
import json
import os
import shutil
import statistics
import sys
import tempfile
import time
from concurrent.futures import ProcessPoolExecutor
from dataclasses import asdict, dataclass, field
from multiprocessing import get_context
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

from _common import LoadSampler, PhaseClock, record

from revseg.settings import COMPACT_PROMPT_SET, PAPER_PROMPT_SET
from revseg.testing.shapes import BACKGROUNDS, KEYFRAME_RULES

CURVE = Path(__file__).with_name("learning_curve.png")
ARMS = ("soft", "binary", "stale")
"""Arms: on-policy GRPO with the soft (paper) or binary temporal reward, and soft on stale rollouts."""
STALE_LAG = 2
"""The stale arm trains each round on rollouts collected by the checkpoint this many rounds older."""
LEARNING_JSON = Path(__file__).with_name("learning.json")
SEEDS = {"sft": 101, "train": 202, "heldout": 303}
"""Clip seeds of the three splits: warm-up, RL training and held-out evaluation never share a clip."""


@dataclass(frozen=True)
class Plan:
    """Everything a run depends on (passed whole to the arm processes)."""

    work: str
    rounds: int
    items: int
    group_size: int
    eval_items: int
    eval_rollouts: int
    sft_clips: int
    sft_epochs: int
    sft_lr: float
    lr: float
    beta: float
    prompts_per_step: int
    max_new_tokens: int
    frame_size: int
    keyframe_size: int
    threads: int
    hidden_size: int
    num_layers: int
    sft_keyframe: str
    seed: int
    num_frames: int = 4
    box_grid: int = 1
    background: str = "plain"
    shape_scale: float = 1.0
    max_shapes: int = 3
    prompt_set: str = PAPER_PROMPT_SET
    sft_threads: int = 1
    warmup_steps: int = 4
    loss_aggregation: str = "sequence"


@dataclass
class Row:
    """One evaluation of one checkpoint on the held-out clips (means over all rollouts)."""

    arm: str
    round: int
    total: float
    total_se: float
    format: float
    temporal: float
    keyframe: float
    present: float
    spatial: float
    iou: float
    parsed: float
    train_reward: float | None = None
    seconds: float = 0.0
    keyframe_by_kind: dict[str, float] = field(default_factory=dict)
    se: dict[str, float] = field(default_factory=dict)
    """Standard error over held-out clips of each component's per-clip mean."""
    phases: dict[str, float] = field(default_factory=dict)
    """Wall and process-CPU seconds of the round's phases (collect, train, evaluate)."""
    clip_fraction: float | None = None
    kl: float | None = None
    clip_totals: dict[str, float] = field(default_factory=dict)
    """Mean total reward per held-out clip: the same clips for every checkpoint, so gains can be paired."""


# --------------------------------------------------------------------------- data


def settings(plan: Plan) -> Any:
    """The chain at CPU size: 4 sampled frames, small turn-1 frames, a 112-px keyframe, the plan's prompt set."""
    from revseg.settings import ChainSettings

    return ChainSettings(
        prompt_set=plan.prompt_set,
        num_frames=plan.num_frames,
        frame_size=(plan.frame_size, plan.frame_size),
        keyframe_size=(plan.keyframe_size, plan.keyframe_size),
    )


def split(plan: Plan, name: str) -> list[Any]:
    """The clips of one split (deterministic from the split's seed), written as PNG folders once."""
    from revseg.testing.shapes import make_clips

    count = {"sft": plan.sft_clips, "train": plan.rounds * plan.items, "heldout": plan.eval_items}[name]
    clips = make_clips(
        SEEDS[name] + 1000 * plan.seed,
        count,
        background=plan.background,
        shape_scale=plan.shape_scale,
        max_shapes=plan.max_shapes,
    )
    for clip in clips:
        folder = Path(plan.work) / "clips" / clip.name
        if not folder.exists():
            clip.write(folder)
    return clips


def items(plan: Plan, clips: list[Any]) -> list[Any]:
    """CollectItems whose ground truth is the clip's exact target masks."""
    from revseg.rl.collect import CollectItem
    from revseg.rl.groundtruth import MaskGroundTruth

    return [
        CollectItem(
            key=clip.name,
            video=str(Path(plan.work) / "clips" / clip.name),
            query=clip.query,
            truth=functools.partial(MaskGroundTruth, clip.target_mask),
        )
        for clip in clips
    ]


def load_policy(checkpoint: Path) -> Any:
    """``hf:checkpoint`` on the CPU.

    The hf backend never samples the vision placeholder tokens (a barely trained model
    would, and its answers could not be rebuilt for training) and the trainer scores
    answers without them, so the behaviour log-probs are exact.
    """
    from revseg.policies.hf import HFPolicy

    return HFPolicy.from_spec(str(checkpoint), device="cpu")


def sampling(plan: Plan) -> Any:
    """Temperature 1, untruncated (the collection default), with a short token budget."""
    from revseg.settings import SamplingParams

    return SamplingParams(temperature=1.0, top_p=1.0, max_new_tokens=plan.max_new_tokens)


# --------------------------------------------------------------------------- stages


def warm_up(plan: Plan, base: Path, clock: PhaseClock) -> tuple[Path, float, float]:
    """SFT on teacher chains of the warm-up clips; returns (checkpoint, teacher's mean reward, seconds)."""
    from revseg.rl.grpo import GRPOConfig
    from revseg.rl.train import train
    from revseg.trajectory_store import TrajectoryStore

    started = time.perf_counter()
    out = Path(plan.work) / "sft"
    shards = [Path(plan.work) / "sft-data" / f"shard-{i}" for i in range(max(plan.sft_threads, 1))]
    timing = out / "warm_up_timing.json"

    def records() -> list[Any]:
        return [t for folder in shards for t in TrajectoryStore(folder)]

    if (out / "revseg_train.json").exists():  # a rerun in the same --work folder keeps its warm-up, and its times
        before = json.loads(timing.read_text()) if timing.exists() else {"seconds": 0.0, "phases": {}}
        clock.phases.update(before["phases"], sft_reused=1.0)
        return out, statistics.mean((t.rewards or {})["total"] for t in records()), before["seconds"]
    clips = split(plan, "sft")
    with clock("sft_data"), ProcessPoolExecutor(len(shards), mp_context=get_context("spawn")) as pool:
        # One teacher chain per clip through the whole agent: ~0.1 s each, so thousands take minutes on one core.
        done = [pool.submit(teacher_chains, plan, clips[i :: len(shards)], str(f)) for i, f in enumerate(shards)]
        for future in done:
            future.result()
    data = records()
    rewards = [(t.rewards or {})["total"] for t in data]
    config = GRPOConfig(
        algorithm="rft",
        learning_rate=plan.sft_lr,
        prompts_per_step=8,
        num_epochs=plan.sft_epochs,
        warmup_steps=10,
        seed=plan.seed,
    )
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(plan.sft_threads)  # the warm-up runs alone: it may use every core
    try:
        with clock("sft_train"):
            train(data, f"hf:{base}", out, config)
    finally:
        torch.set_num_threads(threads)
    seconds = time.perf_counter() - started
    phases = {k: v for k, v in clock.phases.items() if k.startswith("sft_")}
    timing.write_text(json.dumps({"seconds": seconds, "phases": phases}) + "\n")
    return out, statistics.mean(rewards) if rewards else 0.0, seconds


def teacher_chains(plan: Plan, clips: list[Any], folder: str) -> None:
    """One worker's share of the warm-up data: the teacher's chain for each clip, into a store of its own."""
    from revseg.rl.collect import collect
    from revseg.testing.shapes import ShapesTeacher
    from revseg.trajectory_store import TrajectoryStore

    store = TrajectoryStore(folder)
    for clip, item in zip(clips, items(plan, clips), strict=True):
        teacher = ShapesTeacher(clip, keyframe=plan.sft_keyframe, seed=plan.seed, grid=plan.box_grid)
        collect([item], teacher, store, group_size=1, settings=settings(plan), resume=True)


def evaluate(plan: Plan, checkpoint: Path, arm: str, round_: int, name: str) -> Row:
    """Sampled rollouts of ``checkpoint`` on the held-out clips, scored with the soft (paper) reward."""
    from revseg.rl.collect import collect
    from revseg.rl.groundtruth import MaskGroundTruth
    from revseg.rl.rewards import RewardConfig, compute_rewards
    from revseg.trajectory_store import TrajectoryStore

    started = time.perf_counter()
    clips = split(plan, "heldout")
    by_key = {clip.name: clip for clip in clips}
    folder = Path(plan.work) / "eval" / name
    shutil.rmtree(folder, ignore_errors=True)  # stores append: a rerun must not mix in old rollouts
    store = TrajectoryStore(folder)
    collect(
        items(plan, clips),
        load_policy(checkpoint),
        store,
        group_size=plan.eval_rollouts,
        sampling=sampling(plan),
        settings=settings(plan),
        seed=plan.seed + 7,
    )
    records = list(store)
    binary = RewardConfig(temporal="binary")
    present = [compute_rewards(t, MaskGroundTruth(by_key[t.query_id].target_mask), binary).temporal for t in records]
    kinds: dict[str, list[float]] = {}
    per_clip: dict[str, list[float]] = {}
    for t in records:
        if (t.rewards or {})["turn1_parsed"]:
            kinds.setdefault(by_key[t.query_id].query_kind, []).append((t.rewards or {})["temporal"])
        per_clip.setdefault(str(t.query_id), []).append((t.rewards or {})["total"])
    clip_means = [statistics.mean(v) for v in per_clip.values()]
    se = {}
    for key in ("total", "format", "temporal", "spatial"):
        means = [statistics.mean((t.rewards or {})[key] for t in records if t.query_id == q) for q in per_clip]
        se[key] = statistics.stdev(means) / len(means) ** 0.5 if len(means) > 1 else 0.0

    def mean(key: str) -> float:
        return statistics.mean((t.rewards or {})[key] for t in records)

    parsed = [(t.rewards or {})["temporal"] for t in records if (t.rewards or {})["turn1_parsed"]]

    return Row(
        arm=arm,
        round=round_,
        total=mean("total"),
        total_se=statistics.stdev(clip_means) / len(clip_means) ** 0.5 if len(clip_means) > 1 else 0.0,
        format=mean("format"),
        temporal=mean("temporal"),
        keyframe=statistics.mean(parsed) if parsed else 0.0,
        present=statistics.mean(present),
        spatial=mean("spatial"),
        iou=mean("iou"),
        parsed=mean("both_parsed"),
        seconds=time.perf_counter() - started,
        keyframe_by_kind={k: statistics.mean(v) for k, v in sorted(kinds.items())},
        se=se,
        clip_totals={q: statistics.mean(v) for q, v in per_clip.items()},
    )


def evaluate_alone(plan: Plan, checkpoint: str, arm: str, name: str) -> Row:
    """:func:`evaluate` in a worker process of its own, with its wall and process-CPU seconds in ``phases``."""
    import torch

    torch.set_num_threads(plan.threads)
    phases: dict[str, float] = {}
    with PhaseClock(phases)("evaluate"):
        row = evaluate(plan, Path(checkpoint), arm, 0, name)
    row.phases = phases
    return row


def run_arm(plan: Plan, arm: str, start: str) -> list[Row]:
    """R rounds of collect -> GRPO -> evaluate from ``start``.

    ``soft`` and ``binary`` train on fresh rollouts of the latest checkpoint with that
    temporal reward; ``stale`` trains with the soft reward on rollouts that the checkpoint
    :data:`STALE_LAG` rounds older collected (the warm-up model for the first rounds), as an
    offline trainer fed from a lagging collector would: the PPO ratio corrects for the lag.
    """
    import torch

    torch.set_num_threads(plan.threads)
    from revseg.rl.collect import collect
    from revseg.rl.grpo import GRPOConfig
    from revseg.rl.rewards import RewardConfig
    from revseg.rl.train import train

    train_clips = split(plan, "train")
    checkpoints = [Path(start)]
    shutil.rmtree(Path(plan.work) / arm, ignore_errors=True)
    temporal = "binary" if arm == "binary" else "soft"
    rows = []
    for round_ in range(1, plan.rounds + 1):
        started = time.perf_counter()
        phases: dict[str, float] = {}
        clock = PhaseClock(phases)
        batch = train_clips[(round_ - 1) * plan.items : round_ * plan.items]
        data = Path(plan.work) / arm / f"round{round_}-data"
        collector = checkpoints[max(len(checkpoints) - 1 - (STALE_LAG if arm == "stale" else 0), 0)]
        with clock("collect"):
            report = collect(
                items(plan, batch),
                load_policy(collector),
                data,
                group_size=plan.group_size,
                sampling=sampling(plan),
                settings=settings(plan),
                reward_config=RewardConfig(temporal=temporal),  # type: ignore[arg-type]
                seed=plan.seed + round_,
            )
        config = GRPOConfig(
            learning_rate=plan.lr,
            num_generations=plan.group_size,
            prompts_per_step=plan.prompts_per_step,
            beta=plan.beta,
            seed=plan.seed + round_,
            reference_model=f"hf:{start}",  # KL to the warm-up model in every round, as on-policy GRPO has it
            # Adam's first step from zero moments moves every weight by about lr whatever its gradient: at
            # lr 1e-3 one such step broke the warm-up model's format (held-out total 1.40 -> 0.3-0.7). So
            # the first round warms the rate up and later rounds carry the previous round's moments.
            loss_aggregation=plan.loss_aggregation,  # type: ignore[arg-type]
            warmup_steps=plan.warmup_steps if round_ == 1 else 0,
            optimizer_state_from=str(checkpoints[-1]) if round_ > 1 else None,
        )
        out = Path(plan.work) / arm / f"round{round_}"
        with clock("train"):
            result = train(data, f"hf:{checkpoints[-1]}", out, config, assume_on_policy=arm == "stale")
        checkpoints.append(out)
        with clock("evaluate"):
            row = evaluate(plan, out, arm, round_, f"{arm}-round{round_}")
        row.train_reward = report.mean_reward
        row.seconds = time.perf_counter() - started
        row.phases = phases
        steps = [m for m in result.history if m.get("updated")]
        row.clip_fraction = statistics.mean(m["clip_fraction"] for m in steps) if steps else 0.0
        row.kl = statistics.mean(m["kl"] for m in steps) if steps else 0.0
        rows.append(row)
        print(f"[{arm}] round {round_}: {json.dumps(asdict(row))}", flush=True)
    return rows


# --------------------------------------------------------------------------- report


def table(rows: list[Row]) -> str:
    """One Markdown row per (arm, round)."""
    header = (
        "arm",
        "round",
        "train reward (own)",
        "total ± s.e. over clips",
        "format",
        "temporal (soft)",
        "soft temporal if turn 1 parsed",
        "present at k",
        "spatial",
        "box IoU",
        "both turns parsed",
        "train clip fraction",
        "train KL",
    )
    lines = ["| " + " | ".join(header) + " |", "|---|" + "---:|" * (len(header) - 1)]
    for r in rows:
        cells = [
            r.arm,
            str(r.round),
            "" if r.train_reward is None else f"{r.train_reward:.3f}",
            f"{r.total:.3f} ± {r.total_se:.3f}",
            *(f"{v:.3f}" for v in (r.format, r.temporal, r.keyframe, r.present, r.spatial, r.iou, r.parsed)),
            *("" if v is None else f"{v:.4f}" for v in (r.clip_fraction, r.kl)),
        ]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def plot(rows: list[Row], path: Path) -> bool:
    """Held-out reward per round (error bars: s.e. over clips), one panel per component, every arm.

    False when matplotlib is missing.
    """
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return False
    keys = [
        ("total", "total reward"),
        ("format", "format"),
        ("temporal", "temporal (soft)"),
        ("keyframe", "soft temporal, turn 1 parsed"),
        ("present", "present at k"),
        ("spatial", "spatial"),
    ]
    fig, grid = plt.subplots(2, 3, figsize=(13, 7), constrained_layout=True)
    axes = list(grid.flat)
    start = [r for r in rows if r.round == 0 and r.arm == "sft"]
    for arm, colour in zip(ARMS, ("tab:blue", "tab:orange", "tab:green"), strict=True):
        series = start + [r for r in rows if r.arm == arm]
        for ax, (key, title) in zip(axes, keys, strict=True):
            ys = [getattr(r, key) for r in series]
            errors = [r.total_se if key == "total" else r.se.get(key, 0.0) for r in series]
            ax.errorbar([r.round for r in series], ys, yerr=errors, fmt="o-", color=colour, label=arm, capsize=2)
            ax.set_title(title)
            ax.set_xlabel("GRPO round (0 = after SFT)")
            ax.grid(alpha=0.3)
    axes[0].set_ylabel("held-out mean")
    axes[0].legend(title="trained with temporal =")
    fig.suptitle("Offline GRPO on synthetic shapes (tiny Qwen2.5-VL, CPU): held-out reward per round")
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return True


def late_mean(rows: list[Row], arm: str, key: str) -> float:
    """The mean of ``key`` over the second half of an arm's rounds: steadier than any one round."""
    arm_rows = [r for r in rows if r.arm == arm]
    late = arm_rows[len(arm_rows) // 2 :]
    return statistics.mean(getattr(r, key) for r in late)


def kinds_text(rows: list[Row], start: Row) -> str:
    """Keyframe choice by query kind: the warm-up's, then each arm's mean over its late rounds."""

    def text(values: dict[str, float]) -> str:
        return " ".join(f"{k} {v:.2f}" for k, v in sorted(values.items()))

    parts = [f"warm-up {text(start.keyframe_by_kind)}"]
    for arm in ARMS:
        arm_rows = [r for r in rows if r.arm == arm]
        late = arm_rows[len(arm_rows) // 2 :]
        kinds = {k for r in late for k in r.keyframe_by_kind}
        means = {k: statistics.mean(r.keyframe_by_kind[k] for r in late if k in r.keyframe_by_kind) for k in kinds}
        parts.append(f"{arm} {text(means)}")
    return "; ".join(parts)


def verdict(rows: list[Row], start: Row) -> str:
    """Plain words on what moved from the warm-up checkpoint to the late rounds, and soft vs binary."""
    rounds = max(r.round for r in rows)
    late = f"rounds {rounds // 2 + 1}-{rounds}"
    parts = []
    keys = ("total", "format", "temporal", "keyframe", "present", "spatial")
    for arm in ARMS:
        moves = [f"{k} {getattr(start, k):.2f} -> {late_mean(rows, arm, k):.2f}" for k in keys]
        parts.append(f"{arm} arm, warm-up -> mean of {late}: " + ", ".join(moves) + ".")
    soft, binary = (late_mean(rows, arm, "total") for arm in ("soft", "binary"))
    noise = statistics.mean(r.total_se for r in rows) * 2**0.5
    if abs(soft - binary) <= 2 * noise:
        better = "is within noise (2 s.e. of one round's difference) of"
    else:
        better = "beats" if soft > binary else "is beaten by"
    kf_soft, kf_binary = (late_mean(rows, arm, "keyframe") for arm in ("soft", "binary"))
    last = {arm: [r for r in rows if r.arm == arm][-1] for arm in ARMS}
    parts.append(
        f"Held-out total (soft reward) over {late}: soft {better} binary ({soft:.3f} vs {binary:.3f}, "
        f"s.e. of one round's difference about {noise:.3f}); keyframe choice of parsed answers "
        f"{kf_soft:.3f} vs {kf_binary:.3f}. Last round alone: {last['soft'].total:.3f} vs {last['binary'].total:.3f}."
    )
    for arm in ARMS:
        diff, se, paired = gain(start, last[arm])
        parts.append(
            f"{arm}: last round - warm-up = {diff:+.3f} = {diff / start.total_se if start.total_se else 0.0:+.1f} "
            f"s.e. of the warm-up's mean ({start.total_se:.3f}); {diff / se if se else 0.0:+.1f} s.e. of the "
            f"difference taken as independent ({se:.3f}), {diff / paired if paired else 0.0:+.1f} paired over "
            f"the same held-out clips ({paired:.3f})."
        )
    stale = [r for r in rows if r.arm == "stale"]
    fresh = [r for r in rows if r.arm == "soft"]
    if stale and fresh:
        clip_stale, clip_fresh = (statistics.mean(r.clip_fraction or 0.0 for r in rs) for rs in (stale, fresh))
        kl_stale, kl_fresh = (statistics.mean(r.kl or 0.0 for r in rs) for rs in (stale, fresh))
        parts.append(
            f"Stale data (rollouts {STALE_LAG} rounds older than the trained checkpoint): mean clip fraction "
            f"{clip_stale:.4f} vs {clip_fresh:.4f} on-policy, KL to the warm-up model {kl_stale:.4f} vs {kl_fresh:.4f}."
        )
    return " ".join(parts)


def gain(start: Row, row: Row) -> tuple[float, float, float]:
    """(row's total - start's, its s.e. as if independent, its s.e. paired over the held-out clips both scored)."""
    diff = row.total - start.total
    independent = (row.total_se**2 + start.total_se**2) ** 0.5
    shared = [row.clip_totals[q] - start.clip_totals[q] for q in start.clip_totals if q in row.clip_totals]
    paired = statistics.stdev(shared) / len(shared) ** 0.5 if len(shared) > 1 else independent
    return diff, independent, paired


def learning_record(start: Row, rows: list[Row]) -> dict[str, Any]:
    """benchmarks/learning.json: held-out mean and s.e. of each component, after SFT and per arm and round."""

    def figures(row: Row) -> dict[str, Any]:
        return {
            k: {"mean": getattr(row, k), "se": row.se.get(k, 0.0)} for k in ("total", "format", "temporal", "spatial")
        }

    arms: dict[str, list[dict[str, Any]]] = {}
    for row in rows:
        entry = {"round": row.round, **figures(row), "clip_fraction": row.clip_fraction, "kl": row.kl}
        arms.setdefault(row.arm, []).append(entry)
    return {"sft": figures(start), "arms": arms}


def phase_table(warm: dict[str, float], rows: list[Row]) -> str:
    """Wall and process-CPU seconds per phase: the warm-up's, then each arm's summed over its rounds."""
    lines = ["| phase | wall s | process CPU s |", "|---|---:|---:|"]
    for name in ("base eval", "sft data", "sft train", "sft eval"):
        key = name.replace(" ", "_")
        lines.append(f"| {name} | {warm.get(key + '_wall_s', 0.0):.0f} | {warm.get(key + '_cpu_s', 0.0):.0f} |")
    for arm in ARMS:
        arm_rows = [r for r in rows if r.arm == arm]
        for phase in ("collect", "train", "evaluate"):
            wall = sum(r.phases.get(f"{phase}_wall_s", 0.0) for r in arm_rows)
            cpu = sum(r.phases.get(f"{phase}_cpu_s", 0.0) for r in arm_rows)
            lines.append(f"| {arm} arm: {phase} (all rounds) | {wall:.0f} | {cpu:.0f} |")
    return "\n".join(lines)


# --------------------------------------------------------------------------- main


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=5, help="collect -> train -> evaluate rounds per arm")
    parser.add_argument("--items", type=int, default=24, help="training clips per round (fresh clips each round)")
    parser.add_argument("--group-size", type=int, default=8, help="rollouts per clip (GRPO group)")
    parser.add_argument("--eval-items", type=int, default=80, help="held-out clips")
    parser.add_argument("--eval-rollouts", type=int, default=3, help="sampled rollouts per held-out clip")
    parser.add_argument("--sft-clips", type=int, default=2000, help="warm-up clips (one teacher chain each)")
    parser.add_argument("--sft-epochs", type=int, default=4, help="passes over the warm-up chains")
    parser.add_argument("--sft-lr", type=float, default=1e-3, help="warm-up AdamW learning rate")
    parser.add_argument("--lr", type=float, default=2e-4, help="GRPO AdamW learning rate (paper: 1e-6, for a 7B)")
    parser.add_argument("--beta", type=float, default=0.02, help="KL coefficient (paper: 1e-3)")
    parser.add_argument(
        "--loss-aggregation",
        choices=("sequence", "token"),
        default="sequence",
        help="GRPO loss: mean over each answer's tokens then rollouts (paper), or over all tokens",
    )
    parser.add_argument(
        "--warmup-steps", type=int, default=4, help="GRPO warm-up steps in round 1 (later rounds carry Adam's moments)"
    )
    parser.add_argument("--prompts-per-step", type=int, default=4, help="groups per GRPO optimizer step")
    parser.add_argument("--max-new-tokens", type=int, default=64, help="token budget per turn")
    parser.add_argument("--frame-size", type=int, default=56, help="turn-1 frame side (px)")
    parser.add_argument("--keyframe-size", type=int, default=112, help="turn-2 keyframe side (px)")
    parser.add_argument("--hidden-size", type=int, default=128, help="tiny model width (language model)")
    parser.add_argument("--layers", type=int, default=4, help="tiny model depth (language model and vision tower)")
    parser.add_argument(
        "--sft-keyframe",
        choices=KEYFRAME_RULES,
        default="clear",
        help="warm-up keyframes: any frame showing the target clearly (half its largest box or more), any showing "
        "it at all, or the largest (already optimal for soft)",
    )
    parser.add_argument("--num-frames", type=int, default=4, help="frames sampled for turn 1")
    parser.add_argument(
        "--box-grid", type=int, default=14, help="the teacher rounds box coordinates to multiples of this (px seen)"
    )
    parser.add_argument(
        "--background",
        choices=BACKGROUNDS,
        default="gradient",
        help="clip background: a colour ramp that tells each pixel where it is, or plain grey",
    )
    parser.add_argument(
        "--shape-scale", type=float, default=1.5, help="shape sizes x this (revseg.testing.shapes: 0.5-2)"
    )
    parser.add_argument("--max-shapes", type=int, choices=(2, 3), default=2, help="shapes per clip: 2 to this")
    parser.add_argument(
        "--prompt-set",
        choices=(COMPACT_PROMPT_SET, PAPER_PROMPT_SET),
        default=COMPACT_PROMPT_SET,
        help="the chain's prompts: the paper's turns cut short (a third of the tokens per rollout), or verbatim",
    )
    parser.add_argument("--threads", type=int, default=1, help="torch threads per process")
    parser.add_argument(
        "--sft-threads", type=int, default=os.cpu_count() or 1, help="torch threads of the warm-up (it runs alone)"
    )
    parser.add_argument("--seed", type=int, default=0, help="offsets every clip seed and sampling seed")
    parser.add_argument("--work", type=Path, default=None, help="working folder (default: a new temporary one)")
    parser.add_argument("--quick", action="store_true", help="smoke check: 1 round, few clips, short warm-up")
    parser.add_argument("--dry", action="store_true", help="print only: no RESULTS.md entry, no curve PNG")
    args = parser.parse_args()
    if args.quick:
        args.rounds, args.items, args.group_size = 1, 4, 4
        args.eval_items, args.eval_rollouts, args.sft_clips, args.sft_epochs = 8, 2, 60, 4
        args.rounds = 3  # the stale arm needs rounds older than the trained one

    started = time.perf_counter()
    load = LoadSampler()
    work = args.work or Path(tempfile.mkdtemp(prefix="revseg-learning-"))
    plan = Plan(
        work=str(work),
        rounds=args.rounds,
        items=args.items,
        group_size=args.group_size,
        eval_items=args.eval_items,
        eval_rollouts=args.eval_rollouts,
        sft_clips=args.sft_clips,
        sft_epochs=args.sft_epochs,
        sft_lr=args.sft_lr,
        lr=args.lr,
        beta=args.beta,
        prompts_per_step=args.prompts_per_step,
        max_new_tokens=args.max_new_tokens,
        frame_size=args.frame_size,
        keyframe_size=args.keyframe_size,
        threads=args.threads,
        hidden_size=args.hidden_size,
        num_layers=args.layers,
        sft_keyframe=args.sft_keyframe,
        seed=args.seed,
        num_frames=args.num_frames,
        box_grid=args.box_grid,
        background=args.background,
        shape_scale=args.shape_scale,
        max_shapes=args.max_shapes,
        prompt_set=args.prompt_set,
        sft_threads=args.sft_threads,
        warmup_steps=args.warmup_steps,
        loss_aggregation=args.loss_aggregation,
    )
    import torch

    torch.set_num_threads(max(plan.threads, 1))
    from revseg.testing import build_tiny_qwen_vl

    base = build_tiny_qwen_vl(
        work / "base", family="qwen2.5-vl", seed=plan.seed, hidden_size=plan.hidden_size, num_layers=plan.num_layers
    )
    for name in SEEDS:
        split(plan, name)
    warm: dict[str, float] = {}
    checkpoint, teacher_reward, sft_seconds = warm_up(plan, base, PhaseClock(warm))
    print(f"warm-up: {sft_seconds:.0f} s, teacher reward {teacher_reward:.3f}", flush=True)

    # The two evaluations of round 0 run beside the arms: the arms need only the warm-up checkpoint.
    with ProcessPoolExecutor(max_workers=len(ARMS) + 2, mp_context=get_context("spawn")) as pool:
        firsts = [
            pool.submit(evaluate_alone, plan, str(base), "random init", "base"),
            pool.submit(evaluate_alone, plan, str(checkpoint), "sft", "sft"),
        ]
        futures = [pool.submit(run_arm, plan, arm, str(checkpoint)) for arm in ARMS]
        rows = [future.result() for future in firsts]
        print(f"warm-up evaluated: {json.dumps(asdict(rows[1]))}", flush=True)
        arm_rows = [row for future in futures for row in future.result()]
    start = rows[1]
    for row, phase in zip(rows, ("base_eval", "sft_eval"), strict=True):
        warm[f"{phase}_wall_s"], warm[f"{phase}_cpu_s"] = row.phases["evaluate_wall_s"], row.phases["evaluate_cpu_s"]
    rows += arm_rows
    elapsed = time.perf_counter() - started
    load.stop()
    (work / "rows.json").write_text(json.dumps([asdict(r) for r in rows], indent=1) + "\n")

    text = (
        table(rows)
        + "\n\nTime per phase (the arms ran side by side, one process each):\n\n"
        + phase_table(warm, arm_rows)
    )

    per_kind = kinds_text(arm_rows, start)
    reused = " (this warm-up was made by an earlier run in the same --work folder; its times are that run's)"
    reused = reused if warm.get("sft_reused") else ""
    keyframe_rule = {
        "visible": "any sampled frame showing the target",
        "clear": "any sampled frame whose target box is at least half the largest",
        "largest": "largest GT box",
    }[plan.sft_keyframe]
    notes = (
        f"Tiny random Qwen2.5-VL (revseg.testing, hidden {plan.hidden_size}, {plan.num_layers} layers) on "
        f"revseg.testing.shapes clips "
        f"(8 frames of 112x112, {'2' if plan.max_shapes == 2 else '2-3'} shapes at {plan.shape_scale:g}x the "
        f"default sizes on a "
        f"{plan.background} background; queries: name, grows, shrinks, disappears, moves). "
        f"Chain: {plan.num_frames} sampled "
        f"frames at {plan.frame_size}px, keyframe at {plan.keyframe_size}px, {plan.max_new_tokens} new tokens per "
        f"turn, temperature 1. Warm-up: {plan.sft_clips} teacher chains (strict format, keyframe = {keyframe_rule}, "
        f"GT box on a {plan.box_grid}-px grid; teacher reward {teacher_reward:.2f}) x {plan.sft_epochs} epochs "
        f"of SFT (`train(algorithm='rft')`) "
        f"at lr {plan.sft_lr:g} with {plan.sft_threads} torch threads, {sft_seconds:.0f} s{reused}. "
        f"GRPO: {plan.rounds} rounds x {plan.items} fresh clips x "
        f"{plan.group_size} rollouts, {plan.prompts_per_step} groups per step, loss averaged per "
        f"{plan.loss_aggregation}, AdamW lr {plan.lr:g} (the paper's "
        f"1e-6 is for a pretrained 7B; a tiny random model needs far larger steps), beta {plan.beta:g} (reference = "
        f"the warm-up checkpoint in every round), PPO clip 0.2; round 1 warms the rate up over "
        f"{plan.warmup_steps} steps, later rounds start from the previous round's Adam moments. "
        f"Evaluation: {plan.eval_items} held-out clips x "
        f"{plan.eval_rollouts} sampled rollouts, scored with the soft (paper) reward whatever the arm trained with; "
        f"'train reward (own)' is the mean reward of that round's training rollouts under the arm's own reward. "
        f"Keyframe choice (soft temporal of parsed answers) by query kind, warm-up and the late-round mean of each "
        f"arm: {per_kind}. {verdict(arm_rows, start)} "
        f"{len(ARMS)} arm processes, {plan.threads} torch thread each; whole run {elapsed / 60:.1f} min wall, "
        f"{load.text()}, on a "
        f"machine shared with other engineers' jobs (2 cores): wall times are inflated, process CPU times are not. "
        f"The fast check of the same trainer is the CI learning test (tests/rl/test_learning.py, marker "
        f"`learning`): its expected reward rises 0.119 -> 0.980 in 4 GRPO steps, see 'Learning test in CI'. "
        f"Curves: [learning_curve.png](learning_curve.png)."
    )
    if args.dry:
        print(text + "\n\n" + notes)
        return
    LEARNING_JSON.write_text(json.dumps(learning_record(start, arm_rows), indent=1) + "\n")
    plotted = plot(rows, CURVE)
    if not plotted:
        notes = notes.replace(" Curves: [learning_curve.png](learning_curve.png).", " (matplotlib missing: no curve.)")
    record("Offline GRPO on synthetic shapes: soft vs binary vs stale temporal reward (tiny model, CPU)", text, notes)


if __name__ == "__main__":
    main()
