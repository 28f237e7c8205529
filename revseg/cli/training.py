"""Training (DESIGN.md 1.4-1.5): ``revseg curate``, ``collect``, ``train``, ``rl loop`` and ``replay``."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Annotated, Any

import typer

from revseg.cli.options import (
    BaseUrlOpt,
    BenchmarkArg,
    BoxConventionOpt,
    DataRootOpt,
    DeviceOpt,
    ExcludeOpt,
    FramesOpt,
    MaxNewTokensOpt,
    MaxTurnsOpt,
    PolicyOpt,
    ProgramChoice,
    ProgramOpt,
    ShardOpt,
    TrackerOpt,
    _chain_options,
    _policy_options,
    _read_ids,
    _say,
)
from revseg.policies import DEFAULT_POLICY
from revseg.settings import DEFAULT_COLLECT_SAMPLING, DEFAULT_SAMPLING, PAPER_SETTINGS
from revseg.tools.trackers import DEFAULT_TRACKER


def collect_command(
    dataset: Annotated[str, typer.Option(help="Benchmark whose split has ground truth (revos, mevis, ...).")],
    data_root: Annotated[Path, typer.Option(help="The benchmark's data folder.")],
    out: Annotated[Path, typer.Option(help="Trajectory store folder (created; appended to).")],
    split: Annotated[str | None, typer.Option(help="Split with ground truth (default: the reader's).")] = None,
    policy: PolicyOpt = DEFAULT_POLICY,
    tracker: Annotated[
        str, typer.Option(help="Tracker spec; 'none' (default): rewards need only the keyframe and box.")
    ] = "none",
    group_size: Annotated[int, typer.Option(min=1, help="Rollouts per (video, query) (paper: 8).")] = 8,
    workers: Annotated[int, typer.Option(min=1, help="Groups in flight at once.")] = 1,
    resume: Annotated[bool, typer.Option("--resume", help="Skip items whose group is already whole in OUT.")] = False,
    limit: Annotated[int | None, typer.Option(min=1, help="Only the first K items not yet collected.")] = None,
    frames: FramesOpt = PAPER_SETTINGS.num_frames,
    program: ProgramOpt = ProgramChoice.PAPER,
    max_turns: MaxTurnsOpt = None,
    temperature: Annotated[
        float, typer.Option(min=0.0, help="Sampling temperature (on for GRPO groups).")
    ] = DEFAULT_COLLECT_SAMPLING.temperature,
    top_p: Annotated[
        float, typer.Option(min=0.0, max=1.0, help="Nucleus mass; below 1, truncated log-probs.")
    ] = DEFAULT_COLLECT_SAMPLING.top_p,
    max_new_tokens: MaxNewTokensOpt = DEFAULT_SAMPLING.max_new_tokens,
    seed: Annotated[int | None, typer.Option(help="Base seed: each rollout's seed derives from it.")] = None,
    temporal: Annotated[str, typer.Option(help="Temporal reward: soft (paper), binary or none.")] = "soft",
    base_url: BaseUrlOpt = None,
    box_convention: BoxConventionOpt = None,
    device: DeviceOpt = None,
    exclude_videos: ExcludeOpt = None,
    shard: ShardOpt = None,
    ray_address: Annotated[
        str | None,
        typer.Option(
            "--ray",
            help="Fan out over a Ray cluster (ADDRESS as ray.init takes it, or 'local'): --workers actors, "
            "each with its own models, one group in flight each.",
            metavar="ADDRESS",
        ),
    ] = None,
    tokenizer: Annotated[
        str | None,
        typer.Option(
            help="openai: the served model's tokenizer (folder or hub id), to re-tokenise answers when the server "
            "returns no token ids; such records are approximate: RFT only, not GRPO."
        ),
    ] = None,
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="No per-group progress lines.")] = False,
) -> None:
    """Roll out the chain GROUP_SIZE times per (video, query), score each run and append the groups to OUT.

    A group is written with one append once its rollouts finish: a crash loses only groups
    in flight, and --resume runs every item without a whole group in OUT.
    """
    from functools import partial

    from revseg.evals.shards import Shard, in_shard
    from revseg.policies import build_policy
    from revseg.rl.collect import benchmark_items, collect
    from revseg.rl.rewards import RewardConfig
    from revseg.tools.trackers import build_tracker

    selected = Shard.parse(shard) if shard else None  # parsed before any model loads
    items = benchmark_items(
        dataset, data_root, split, link_dir=out / "frames", exclude_videos=_read_ids(exclude_videos)
    )
    items = in_shard(items, selected, lambda item: item.key)
    options = _policy_options(
        policy, base_url=base_url, box_convention=box_convention, device=device, tokenizer=tokenizer
    )
    if ray_address is not None:  # each Ray actor builds its own models from these
        built: Any = partial(build_policy, policy, **options)
        built_tracker: Any = None if tracker == "none" else partial(build_tracker, tracker, device=device)
    else:
        _say(not quiet, f"loading policy {policy}")
        built = build_policy(policy, **options)
        built_tracker = None if tracker == "none" else build_tracker(tracker, device=device)
    counter = [0]

    def progress(key: str, group: list[Any]) -> None:
        counter[0] += 1
        totals = [t.rewards["total"] for t in group if t.rewards]
        mean = sum(totals) / len(totals) if totals else 0.0
        _say(not quiet, f"[{counter[0]}] {key}: mean reward {mean:.3f} over {len(group)} rollouts")

    report = collect(
        items,
        built,
        out,
        group_size=group_size,
        **_chain_options(
            frames, program, max_turns, temperature=temperature, top_p=top_p, max_new_tokens=max_new_tokens
        ),
        tracker=built_tracker,
        reward_config=RewardConfig(temporal=temporal),  # type: ignore[arg-type]
        workers=workers,
        resume=resume,
        seed=seed,
        limit=limit,
        on_group=progress,
        ray_address=ray_address,
    )
    typer.echo(
        f"wrote {report.groups_written} groups ({report.rollouts} rollouts, mean reward {report.mean_reward:.3f}) "
        f"to {out}; {report.skipped_done} already there; {len(report.failed)} failed"
    )
    for key, reason in report.failed:
        typer.echo(f"failed: {key}: {reason}", err=True)


def curate_command(
    benchmark: BenchmarkArg,
    data_root: DataRootOpt,
    out: Annotated[Path, typer.Option(help="Output folder: records, report.md / report.json, exclude_videos.txt.")],
    split: Annotated[str | None, typer.Option(help="Split with ground truth (default: the reader's).")] = None,
    tracker: TrackerOpt = DEFAULT_TRACKER,
    threshold: Annotated[
        float, typer.Option(min=0.0, max=1.0, help="Drop a video's queries below this mean mask IoU (paper: 0.6).")
    ] = 0.6,
    batch_size: Annotated[int, typer.Option(min=1, help="Frames per SAM2 call.")] = 8,
    keep_failed: Annotated[
        bool, typer.Option("--keep-failed", help="Keep videos whose check failed (default: exclude them).")
    ] = False,
    resume: Annotated[bool, typer.Option("--resume", help="Continue in OUT, skipping videos already checked.")] = False,
    retry_failed: Annotated[
        bool, typer.Option("--retry-failed", help="With --resume, check failed videos again.")
    ] = False,
    limit: Annotated[int | None, typer.Option(min=1, help="Check at most K more videos in this run.")] = None,
    exclude_videos: ExcludeOpt = None,
    device: DeviceOpt = None,
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="No per-video progress lines.")] = False,
) -> None:
    """Curate training data (DESIGN.md 1.5): SAM2 on every frame prompted with its GT box; drop low-IoU videos.

    Writes one line per checked video to OUT/results.jsonl as it finishes (--resume skips
    them), then OUT/report.md, OUT/report.json and OUT/exclude_videos.txt, the list to pass
    to `revseg collect --exclude-videos`.
    """
    from revseg.evals import get_benchmark
    from revseg.rl.curate import curate

    bench = get_benchmark(benchmark, data_root, split, exclude_videos=_read_ids(exclude_videos))

    def progress(done: int, count: int, record: dict[str, Any]) -> None:
        score = "failed" if record["mean_iou"] is None else f"mean IoU {record['mean_iou']:.3f}"
        _say(not quiet, f"[{done}/{count}] {record['video']}: {score} over {record['pairs']} (object, frame) pairs")

    report = curate(
        bench,
        tracker,
        out,
        threshold=threshold,
        batch_size=batch_size,
        drop_failed=not keep_failed,
        resume=resume,
        retry_failed=retry_failed,
        limit=limit,
        device=device,
        on_video=progress,
    )
    typer.echo(report.to_markdown())
    typer.echo(f"wrote {out}")


def train_command(
    trajectories: Annotated[Path, typer.Option(help="Trajectory store written by `revseg collect`.")],
    policy: Annotated[str, typer.Option(help="The model to train: hf:HUB_ID_OR_PATH.")],
    out: Annotated[Path, typer.Option(help="Checkpoint folder (Hugging Face format; load with --policy hf:OUT).")],
    algorithm: Annotated[str, typer.Option(help="grpo (paper) or rft (SFT on each group's best rollout).")] = "grpo",
    lora: Annotated[bool, typer.Option("--lora", help="Train LoRA adapters; saved merged into the weights.")] = False,
    lr: Annotated[float, typer.Option(min=0.0, help="Learning rate (paper: 1e-6).")] = 1e-6,
    beta: Annotated[float, typer.Option(min=0.0, help="KL coefficient (paper: 1e-3).")] = 1e-3,
    epsilon: Annotated[float, typer.Option(min=0.0, help="PPO clip range (0.2).")] = 0.2,
    prompts_per_step: Annotated[int, typer.Option(min=1, help="Groups per optimizer step (paper: 128).")] = 128,
    epochs: Annotated[int, typer.Option(min=1, help="Passes over the store.")] = 1,
    max_steps: Annotated[int | None, typer.Option(min=1, help="Stop after this many steps.")] = None,
    lora_r: Annotated[int, typer.Option(min=1, help="LoRA rank.")] = 64,
    save_steps: Annotated[int | None, typer.Option(min=1, help="Also save every this many steps.")] = None,
    seed: Annotated[int, typer.Option(help="Seed for the group order.")] = 0,
    optimizer: Annotated[str, typer.Option(help="adamw or sgd.")] = "adamw",
    max_grad_norm: Annotated[float | None, typer.Option(help="Gradient clipping norm (0: none).")] = 1.0,
    gradient_checkpointing: Annotated[bool, typer.Option(help="Recompute activations to save memory.")] = False,
    assume_on_policy: Annotated[
        bool, typer.Option("--assume-on-policy", help="Skip the check that the records come from this model.")
    ] = False,
    reference: Annotated[
        str | None,
        typer.Option(help="KL reference hf:PATH (default: --policy as loaded); round after round, the first model."),
    ] = None,
    resume: Annotated[
        bool, typer.Option("--resume", help="Continue the run in OUT from its latest checkpoint (same options).")
    ] = False,
    carry_optimizer_from: Annotated[
        Path | None, typer.Option(help="Start from the optimizer moments of a previous run's OUT (the next round).")
    ] = None,
) -> None:
    """Offline GRPO on recorded groups (or RFT), under `accelerate launch` for several GPUs.

    Refuses GRPO on trajectories of another policy (an API model, another checkpoint) and
    says to use --algorithm rft. Logs each step to OUT/train_log.jsonl (and TensorBoard).
    Checkpoints hold the optimizer, scheduler and RNG state: --resume continues a stopped run.
    """
    from revseg.rl.grpo import GRPOConfig
    from revseg.rl.train import train

    config = GRPOConfig(
        algorithm=algorithm,  # type: ignore[arg-type]
        learning_rate=lr,
        beta=beta,
        epsilon=epsilon,
        prompts_per_step=prompts_per_step,
        num_epochs=epochs,
        max_steps=max_steps,
        use_lora=lora,
        lora_r=lora_r,
        lora_alpha=2 * lora_r,
        save_steps=save_steps,
        seed=seed,
        optimizer=optimizer,  # type: ignore[arg-type]
        max_grad_norm=max_grad_norm or None,
        gradient_checkpointing=gradient_checkpointing,
        reference_model=reference,
        optimizer_state_from=None if carry_optimizer_from is None else str(carry_optimizer_from),
    )

    def show(metrics: dict[str, float]) -> None:
        keys = ("loss", "kl", "clip_fraction", "reward/total", "groups_with_signal", "response_length", "tokens_per_s")
        typer.echo(f"step {int(metrics['step'])}: " + "  ".join(f"{k}={metrics[k]:.4g}" for k in keys if k in metrics))

    result = train(trajectories, policy, out, config, assume_on_policy=assume_on_policy, resume=resume, log=show)
    if os.environ.get("RANK", "0") == "0":  # under accelerate launch, one line from the main process
        typer.echo(f"trained {result.steps} steps; checkpoint in {result.checkpoint} (--policy hf:{result.checkpoint})")
        if config.algorithm == "grpo" and result.steps and not result.groups_with_signal:
            typer.echo(
                "warning: no group had a reward spread (every rollout of a group scored the same), so there was "
                "nothing to learn and the weights moved only by the KL term; collect larger groups or sample "
                "at a higher temperature",
                err=True,
            )


def rl_loop_command(
    config: Annotated[Path, typer.Argument(help="Loop config (.toml or .yaml): see revseg.rl.loop.LoopConfig.")],
    out: Annotated[Path, typer.Option(help="Run folder: one sub-folder per round; rerun to resume after a stop.")],
) -> None:
    """R rounds of collect -> train (GRPO, KL to the first model) -> evaluate, resumable at any point.

    Writes OUT/round-NNN/{data,checkpoint,eval,round.json}, the reward curve OUT/curve.png
    and TensorBoard logs in OUT/runs. Run it again with the same config to continue.
    """
    from revseg.rl.loop import load_config, run_loop

    def show(row: dict[str, Any]) -> None:
        held = row.get("eval", {}).get("total")
        parts = [f"round {row['round']}:"]
        if "train_reward" in row:
            parts.append(f"train reward {row['train_reward']:.3f}")
        if "groups_with_signal" in row:
            parts.append(f"groups with signal {row['groups_with_signal']}")
        if held is not None:
            parts.append(f"held-out total {held['mean']:.3f} ± {held['se']:.3f}")
        typer.echo(" ".join(parts))

    rows = run_loop(load_config(config), out, on_round=show)
    typer.echo(
        f"{len(rows) - 1} rounds done in {out}; last checkpoint: hf:{out / f'round-{len(rows) - 1:03d}' / 'checkpoint'}"
    )


def replay_command(
    store: Annotated[Path, typer.Argument(help="Trajectory store folder.")],
    run_id: Annotated[str | None, typer.Option("--id", help="Run id (or unique prefix) to show turn by turn.")] = None,
) -> None:
    """List a store's trajectories, or show one turn by turn (prompts, answers, tokens, parses, rewards)."""
    from revseg.rl.replay import describe, list_lines
    from revseg.trajectory_store import TrajectoryStore

    trajectories = TrajectoryStore(store)
    if run_id is not None:
        typer.echo(describe(trajectories.get(run_id)))
        return
    records, skipped = trajectories.scan()
    for line in list_lines(records):
        typer.echo(line)
    for item in skipped:
        typer.echo(f"skipped {item.shard}:{item.line}: {item.reason}", err=True)
