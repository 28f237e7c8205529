"""Benchmarks: ``revseg eval`` runs and scores the agent, ``revseg score`` scores predictions, ``revseg merge``
joins sharded runs."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer

from revseg.cli.options import (
    BaseUrlOpt,
    BenchmarkArg,
    BoxConventionOpt,
    DataRootOpt,
    DatasetVersionOpt,
    DeviceOpt,
    ExcludeOpt,
    FramesOpt,
    MaxNewTokensOpt,
    MaxTurnsOpt,
    PolicyOpt,
    ProgramChoice,
    ProgramOpt,
    SeedOpt,
    ShardOpt,
    SplitOpt,
    TemperatureOpt,
    TrackerOpt,
    _chain_options,
    _policy_options,
    _read_ids,
    _say,
)
from revseg.policies import DEFAULT_POLICY
from revseg.settings import DEFAULT_SAMPLING, PAPER_SETTINGS
from revseg.tools.trackers import DEFAULT_TRACKER


def eval_command(
    benchmark: BenchmarkArg,
    data_root: DataRootOpt,
    split: SplitOpt = None,
    policy: PolicyOpt = DEFAULT_POLICY,
    tracker: TrackerOpt = DEFAULT_TRACKER,
    out: Annotated[
        Path | None, typer.Option(help="Output folder (default: revseg-eval/<benchmark>-<split>).", show_default=False)
    ] = None,
    workers: Annotated[
        int, typer.Option(min=1, help="Worker processes (or Ray actors), each with its own models.")
    ] = 1,
    concurrency: Annotated[
        int, typer.Option(min=1, help="Queries in flight per worker; policy turns overlap (API / vLLM policies).")
    ] = 1,
    limit: Annotated[int | None, typer.Option(min=1, help="Only the first K samples (sorted by video).")] = None,
    resume: Annotated[bool, typer.Option("--resume", help="Continue an interrupted evaluation in OUT.")] = False,
    retry_errors: Annotated[
        bool, typer.Option("--retry-errors", help="With --resume, rerun samples that ended in an exception.")
    ] = False,
    ray_address: Annotated[
        str | None,
        typer.Option(
            "--ray", help="Fan out over a Ray cluster (ADDRESS as ray.init takes it, or 'local').", metavar="ADDRESS"
        ),
    ] = None,
    exclude_videos: ExcludeOpt = None,
    dataset_version: DatasetVersionOpt = None,
    shard: ShardOpt = None,
    frames: FramesOpt = PAPER_SETTINGS.num_frames,
    program: ProgramOpt = ProgramChoice.PAPER,
    max_turns: MaxTurnsOpt = None,
    base_url: BaseUrlOpt = None,
    box_convention: BoxConventionOpt = None,
    device: DeviceOpt = None,
    temperature: TemperatureOpt = DEFAULT_SAMPLING.temperature,
    max_new_tokens: MaxNewTokensOpt = DEFAULT_SAMPLING.max_new_tokens,
    seed: SeedOpt = None,
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="No per-sample progress lines.")] = False,
) -> None:
    """Run the agent on a benchmark and score it: predictions, report.md / report.json, resumable.

    Writes OUT/predictions/<video>/<expression>/<frame>.png as each sample finishes, a
    completion record per sample in OUT/results.jsonl, and at the end OUT/report.md and
    OUT/report.json (OUT/submission.zip for splits scored by a server). After a crash or
    Ctrl-C, rerun with --resume: finished samples are kept, the rest run.
    """
    from revseg.evals import AgentSpec, evaluate, get_benchmark
    from revseg.evals.shards import Shard

    bench = get_benchmark(
        benchmark, data_root, split, exclude_videos=_read_ids(exclude_videos), version=dataset_version
    )
    out_dir = out or Path("revseg-eval") / f"{bench.name}-{bench.split}"
    spec = AgentSpec(
        policy=policy,
        tracker=tracker,
        policy_options=_policy_options(policy, base_url=base_url, box_convention=box_convention, device=device),
        tracker_options={"device": device} if device else {},
        **_chain_options(frames, program, max_turns, temperature=temperature, max_new_tokens=max_new_tokens, seed=seed),
    )
    total = len(bench.samples())
    _say(not quiet, f"{bench.title} {bench.split}: {total} samples -> {out_dir}")

    def progress(done: int, count: int, record: dict[str, Any]) -> None:
        _say(not quiet, f"[{done}/{count}] {record['key']}: {record['status']} ({record['seconds']:.1f}s)")

    report = evaluate(
        bench,
        out_dir,
        spec,
        workers=workers,
        concurrency=concurrency,
        limit=limit,
        resume=resume,
        retry_errors=retry_errors,
        ray_address=ray_address,
        on_result=progress,
        shard=Shard.parse(shard) if shard else None,
    )
    typer.echo(report.to_markdown())
    typer.echo(f"wrote {out_dir}")


def score_command(
    benchmark: BenchmarkArg,
    data_root: DataRootOpt,
    pred: Annotated[
        Path,
        typer.Option(help="Predictions: <video>/<expression>/<frame>.png folders, or a revseg eval output folder."),
    ],
    split: SplitOpt = None,
    out: Annotated[
        Path | None, typer.Option(help="Where to write report.md / report.json (default: --pred).", show_default=False)
    ] = None,
    workers: Annotated[int, typer.Option(min=1, help="Threads scoring samples at once.")] = 1,
    exclude_videos: ExcludeOpt = None,
    dataset_version: DatasetVersionOpt = None,
) -> None:
    """Score existing predictions against a benchmark's ground truth, no models: report.md and report.json.

    A missing or failed prediction scores 0 and is counted. For splits scored by a server
    (mevis valid, ref-youtube-vos valid) this writes the submission zip instead.
    """
    from revseg.evals import get_benchmark, score

    bench = get_benchmark(
        benchmark, data_root, split, exclude_videos=_read_ids(exclude_videos), version=dataset_version
    )
    report = score(bench, pred, out, workers=workers)
    typer.echo(report.to_markdown())
    typer.echo(f"wrote {out or pred}")


def merge_command(
    sources: Annotated[list[Path], typer.Argument(help="The --out folders of the shards (eval runs or stores).")],
    out: Annotated[Path, typer.Option(help="The merged folder (a new one for eval runs).")],
) -> None:
    """Join the outputs of `--shard I/N` runs: evaluation folders, or trajectory stores.

    Evaluation folders (with run.json) are merged into a new OUT; score it with `revseg eval
    --resume --out OUT` (nothing is rerun). Trajectory stores are appended to OUT, each record once.
    """
    from revseg.evals.shards import merge_eval_runs, merge_stores

    if all((source / "run.json").is_file() for source in sources):
        typer.echo(f"merged {merge_eval_runs(sources, out)} samples into {out}")
    else:
        typer.echo(f"merged {merge_stores(sources, out)} trajectories into {out}")
