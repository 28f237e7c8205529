"""The ``revseg`` command: thin wrappers that parse options, call the Python API and print."""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Annotated, Any

import typer

from revseg.errors import RevsegError
from revseg.policies import DEFAULT_POLICY
from revseg.settings import DEFAULT_COLLECT_SAMPLING, DEFAULT_SAMPLING, PAPER_SETTINGS
from revseg.tools.trackers import DEFAULT_TRACKER

app = typer.Typer(
    name="revseg",
    help="Reasoning video object segmentation: a VLM picks a keyframe and a box, SAM2 tracks it.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)

PolicyOpt = Annotated[
    str,
    typer.Option(
        envvar="REVSEG_POLICY",
        help="Policy backend: hf:HUB_ID_OR_PATH (local transformers VLM) or openai:MODEL (OpenAI-compatible API).",
    ),
]
TrackerOpt = Annotated[
    str,
    typer.Option(
        envvar="REVSEG_TRACKER",
        help="Tracker backend: sam2:HUB_ID, sam2:CONFIG:CHECKPOINT, hf-sam2:HUB_ID_OR_PATH, 'none' to stop"
        " after the box, or 'auto' (the paper's on a GPU, a smaller and faster one on a CPU); options after '?',"
        " e.g. sam2:HUB_ID?window=300&image_size=512.",
    ),
]


PaperOpt = Annotated[
    bool,
    typer.Option(
        "--paper", help="The paper's tracker, SAM2.1-hiera-large at 1024 px, on any hardware (the default on a GPU)."
    ),
]
FramesOpt = Annotated[int, typer.Option(min=1, max=256, help="Frames sampled uniformly for turn 1 (paper: 16).")]
BaseUrlOpt = Annotated[str | None, typer.Option(help="openai: endpoint URL, e.g. http://localhost:8000/v1 (vLLM).")]
BoxConventionOpt = Annotated[
    str | None,
    typer.Option(help="How the policy writes boxes: 'absolute' pixels of the image it saw, or 'norm1000'."),
]
DeviceOpt = Annotated[str | None, typer.Option(help="Device for local models (default: cuda if present, else cpu).")]
TemperatureOpt = Annotated[float, typer.Option(min=0.0, help="Sampling temperature; 0 is greedy.")]
TopPOpt = Annotated[float, typer.Option(min=0.0, max=1.0, help="Nucleus sampling mass.")]
TopKOpt = Annotated[int | None, typer.Option(min=1, help="Top-k sampling.")]
MaxNewTokensOpt = Annotated[int, typer.Option(min=1, help="Generation budget per turn.")]
SeedOpt = Annotated[int | None, typer.Option(help="Seed for sampling, for reproducible runs.")]
FrameBackendOpt = Annotated[str, typer.Option(help="Frame reader: auto, folder, torchcodec, decord or pyav.")]


def _version(value: bool) -> None:
    if value:
        from revseg import __version__

        typer.echo(f"revseg {__version__}")
        raise typer.Exit()


@app.callback()
def _root(
    version: Annotated[
        bool, typer.Option("--version", callback=_version, is_eager=True, help="Print the version and exit.")
    ] = False,
) -> None:
    """Reasoning video object segmentation: a VLM picks a keyframe and a box, SAM2 tracks it."""


def _tracker_choice(tracker: str, paper: bool, device: str | None, progress: bool) -> str:
    """The tracker spec to build: ``--paper`` forces the paper's; ``auto`` picks by hardware, saying why in one line."""
    from revseg.tools.trackers import PAPER_TRACKER, choose_tracker

    if paper:
        return PAPER_TRACKER
    if tracker.strip().lower() != "auto":
        return tracker
    chosen, why = choose_tracker(device)
    _say(progress, why)
    return chosen


def _default_out(video: Path) -> Path:
    return Path("revseg-out") / (video.stem if video.suffix else video.name)


@app.command()
def segment(
    video: Annotated[Path, typer.Argument(help="Video file (mp4/avi/mkv/webm/mov) or a folder of JPEG/PNG frames.")],
    query: Annotated[str, typer.Argument(help="What to segment, as free text; may be implicit reasoning.")],
    policy: PolicyOpt = DEFAULT_POLICY,
    tracker: TrackerOpt = DEFAULT_TRACKER,
    frames: FramesOpt = PAPER_SETTINGS.num_frames,
    out: Annotated[
        Path | None, typer.Option(help="Output folder (default: revseg-out/<video name>).", show_default=False)
    ] = None,
    base_url: BaseUrlOpt = None,
    box_convention: BoxConventionOpt = None,
    device: DeviceOpt = None,
    temperature: TemperatureOpt = DEFAULT_SAMPLING.temperature,
    top_p: TopPOpt = DEFAULT_SAMPLING.top_p,
    top_k: TopKOpt = None,
    max_new_tokens: MaxNewTokensOpt = DEFAULT_SAMPLING.max_new_tokens,
    seed: SeedOpt = None,
    frame_backend: FrameBackendOpt = "auto",
    overlay: Annotated[bool, typer.Option(help="Write overlay.mp4 with masks and the keyframe box.")] = True,
    report: Annotated[
        bool, typer.Option(help="Write report.html: the reasoning chain, keyframe, box and overlay on one page.")
    ] = True,
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="No progress output.")] = False,
    paper: PaperOpt = False,
) -> None:
    """Segment the object QUERY refers to in VIDEO: masks for every frame plus the reasoning trajectory.

    Writes OUT/masks/*.png (one DAVIS-style mask per frame), OUT/masks.json (COCO RLE),
    OUT/trajectory.json (the full record), OUT/overlay.mp4 and OUT/report.html (open it in a browser).
    """
    from revseg.agents import ReVSegAgent
    from revseg.tools.frames import open_video

    progress = not quiet
    out_dir = out or _default_out(video)
    open_video(video, backend=frame_backend).close()  # bad input fails before any model loads
    tracker = _tracker_choice(tracker, paper, device, progress)
    _say(progress, f"loading policy {policy} and tracker {tracker}")
    agent = ReVSegAgent(
        policy,
        tracker,
        **_chain_options(
            frames, temperature=temperature, top_p=top_p, top_k=top_k, max_new_tokens=max_new_tokens, seed=seed
        ),
        frame_backend=frame_backend,
        progress=progress,
        overlay=overlay,
        report=report,
        policy_options=_policy_options(policy, base_url=base_url, box_convention=box_convention, device=device),
        tracker_options={"device": device},
    )
    result = agent.run(
        video,
        query,
        out_dir,
        on_start=lambda node: _say(progress, f"[{node}] {_STARTING.get(node, 'running')} ..."),
        on_step=lambda node, update: _say(progress, _describe(node, update)),
    )
    trajectory = result.trajectory
    typer.echo(f"status: {trajectory.status.value}" + (f" ({trajectory.reason})" if trajectory.reason else ""))
    if trajectory.targets:
        for target in trajectory.targets:
            typer.echo(f"keyframe {target.frame_index}: {target.description!r} box={target.box}")
    typer.echo(f"wrote {out_dir}")
    if trajectory.status.failed:
        raise typer.Exit(1)


@app.command()
def track(
    video: Annotated[Path, typer.Argument(help="Video file (mp4/avi/mkv/webm/mov) or a folder of JPEG/PNG frames.")],
    frame: Annotated[int, typer.Option("--frame", "-k", help="Keyframe index (0-based) the boxes are drawn on.")],
    box: Annotated[
        list[str],
        typer.Option(help="x1,y1,x2,y2 in original pixels on the keyframe; repeat for several objects."),
    ],
    tracker: TrackerOpt = DEFAULT_TRACKER,
    out: Annotated[
        Path | None, typer.Option(help="Output folder (default: revseg-out/<video name>).", show_default=False)
    ] = None,
    device: Annotated[str | None, typer.Option(help="Tracker device (default: cuda if present, else cpu).")] = None,
    window: Annotated[
        int | None,
        typer.Option(min=2, help="sam2: track in stretches of this many frames (bounded memory; see README)."),
    ] = None,
    offload_video_to_cpu: Annotated[
        bool, typer.Option("--offload-video-to-cpu", help="sam2: keep the frame cache in host memory.")
    ] = False,
    offload_state_to_cpu: Annotated[
        bool, typer.Option("--offload-state-to-cpu", help="sam2: keep per-frame outputs in host memory.")
    ] = False,
    frame_backend: Annotated[
        str, typer.Option(help="Frame reader: auto, folder, decord, pyav or torchcodec.")
    ] = "auto",
    overlay: Annotated[bool, typer.Option(help="Write overlay.mp4 with the masks and the keyframe boxes.")] = True,
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="No progress output.")] = False,
    paper: PaperOpt = False,
) -> None:
    """Track boxes from one keyframe through VIDEO, without a policy: masks for every frame.

    Writes OUT/masks/*.png (one DAVIS-style mask per frame, object ids 1..K),
    OUT/masks/masks.json (COCO RLE, union and per object), OUT/overlay.mp4 and OUT/track.json.
    """
    from revseg.tools.track import parse_box, track_video

    try:
        boxes = [parse_box(text) for text in box]
    except ValueError as exc:
        raise typer.BadParameter(str(exc), param_hint="--box") from exc
    options: dict[str, Any] = {}
    if window is not None:
        options["window"] = window
    if offload_video_to_cpu:
        options["offload_video_to_cpu"] = True
    if offload_state_to_cpu:
        options["offload_state_to_cpu"] = True
    progress = not quiet
    out_dir = out or _default_out(video)
    tracker = _tracker_choice(tracker, paper, device, progress)
    _say(progress, f"tracking {len(boxes)} object(s) from frame {frame} with {tracker}")
    result = track_video(
        video,
        frame,
        boxes,
        tracker,
        out_dir,
        frame_backend=frame_backend,
        overlay=overlay,
        progress=progress,
        device=device,
        tracker_options=options,
    )
    seconds = result.timings.get("track", 0.0)
    typer.echo(f"tracked {result.video.num_frames} frames in {seconds:.1f}s")
    typer.echo(f"wrote {result.out_dir}")


@app.command("segment-batch")
def segment_batch(
    batch_file: Annotated[
        Path, typer.Argument(help='JSON Lines, one {"id": ..., "video": ..., "query": ...} per line.')
    ],
    out: Annotated[Path, typer.Option(help="Output folder: OUT/<id>/ per query and OUT/results.jsonl.")],
    concurrency: Annotated[
        int, typer.Option(min=1, max=1024, help="Queries in flight at once (each has one policy request open).")
    ] = 8,
    resume: Annotated[bool, typer.Option(help="Skip the ids already in OUT/results.jsonl.")] = False,
    policy: PolicyOpt = DEFAULT_POLICY,
    tracker: TrackerOpt = DEFAULT_TRACKER,
    frames: FramesOpt = PAPER_SETTINGS.num_frames,
    base_url: BaseUrlOpt = None,
    timeout: Annotated[float, typer.Option(min=0.01, help="openai: seconds before a request is retried.")] = 120.0,
    max_retries: Annotated[
        int, typer.Option(min=0, help="openai: retries of timeouts, dropped connections, 429 and 5xx.")
    ] = 3,
    box_convention: BoxConventionOpt = None,
    device: DeviceOpt = None,
    temperature: TemperatureOpt = DEFAULT_SAMPLING.temperature,
    top_p: TopPOpt = DEFAULT_SAMPLING.top_p,
    top_k: TopKOpt = None,
    max_new_tokens: MaxNewTokensOpt = DEFAULT_SAMPLING.max_new_tokens,
    seed: SeedOpt = None,
    frame_backend: FrameBackendOpt = "auto",
    overlay: Annotated[bool, typer.Option(help="Write overlay.mp4 per query (off in batches by default).")] = False,
    report: Annotated[bool, typer.Option(help="Write report.html per query (off in batches by default).")] = False,
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="No per-query progress lines.")] = False,
) -> None:
    """Segment every query of BATCH_FILE, many at once against one policy, each written as it finishes.

    Video paths are relative to BATCH_FILE's folder. Each query writes OUT/<id>/ (masks,
    trajectory.json) and appends one line to OUT/results.jsonl with its status and, for a
    failure, the reason (API faults are retried first). Exits 1 when any query failed.
    """
    import asyncio

    from revseg.agents import ReVSegAgent, run_batch_file
    from revseg.agents.batch import read_batch_file

    progress = not quiet
    total = len(read_batch_file(batch_file))  # a bad file fails before any model loads
    options = _policy_options(policy, base_url=base_url, box_convention=box_convention, device=device)
    if policy.startswith("openai:"):
        options.update(timeout_s=timeout, max_retries=max_retries)
    _say(progress, f"loading policy {policy} and tracker {tracker}")
    agent = ReVSegAgent(
        policy,
        tracker,
        **_chain_options(
            frames, temperature=temperature, top_p=top_p, top_k=top_k, max_new_tokens=max_new_tokens, seed=seed
        ),
        frame_backend=frame_backend,
        overlay=overlay,
        report=report,
        policy_options=options,
        tracker_options={"device": device},
    )
    finished = [0]

    def show(record: dict[str, Any]) -> None:
        finished[0] += 1
        reason = f" ({record['reason']})" if record.get("reason") and record["status"] != "ok" else ""
        took = f" in {record['seconds']:.1f}s" if "seconds" in record else ""
        _say(progress, f"[{finished[0]}] {record['id']}: {record['status']}{reason}{took}")

    summary = asyncio.run(
        run_batch_file(agent, batch_file, out, concurrency=concurrency, resume=resume, on_result=show)
    )
    counts = ", ".join(f"{n} {status}" for status, n in sorted(summary.statuses.items())) or "nothing to run"
    skipped = f", {summary.skipped} skipped (already done)" if summary.skipped else ""
    typer.echo(f"{summary.ran} of {total} queries ran: {counts}{skipped}")
    typer.echo(f"wrote {summary.results}")
    if summary.failed:
        raise typer.Exit(1)


def _chain_options(frames: int, **sampling: Any) -> dict[str, Any]:
    """The ``settings`` and ``sampling`` an agent, an eval spec or a collection gets from the flags.

    Sampling fields a command has no flag for keep :class:`~revseg.settings.SamplingParams`' defaults.
    """
    from revseg.settings import ChainSettings, SamplingParams

    return {"settings": ChainSettings(num_frames=frames), "sampling": SamplingParams(**sampling)}


def _policy_options(policy: str, **options: Any) -> dict[str, Any]:
    """Pass each backend only the flags it understands (a flag a command does not have counts as unset)."""
    if policy.startswith("openai:"):
        return {k: options.get(k) for k in ("base_url", "box_convention", "tokenizer")}
    return {k: options.get(k) for k in ("box_convention", "device")}


def _say(enabled: bool, message: str) -> None:
    if enabled:
        typer.echo(message, err=True)


_STARTING = {
    "sample": "decoding and sampling frames",
    "interpret": "turn 1: the policy reasons over the sampled frames",
    "select_frames": "parsing the keyframe answer",
    "ground": "turn 2: the policy boxes the target on the keyframe",
    "segment": "tracking the box through the video",
}


def _describe(node: str, update: dict[str, Any]) -> str:
    """One progress line per finished reasoning step."""
    seconds = sum(update.get("timings", {}).values())
    status = update.get("status")
    tail = f" -> {status}" if status else ""
    return f"[{node}] done in {seconds:.1f}s{tail}"


@app.command("report")
def report_command(
    source: Annotated[
        Path,
        typer.Argument(
            help="A folder tree of trajectory.json files (a segment output or an evaluation), a JSONL trajectory"
            " store or folder of shards, or one trajectory.json."
        ),
    ],
    out: Annotated[Path, typer.Option(help="Folder for index.html, index-2.html, ... and runs/<run id>.html.")],
    failures_first: Annotated[
        bool, typer.Option("--failures-first", help="List failed runs (unparseable turns, errors) first.")
    ] = False,
    page_size: Annotated[int, typer.Option(min=1, help="Rows per index page.")] = 200,
    force: Annotated[bool, typer.Option("--force", help="Rewrite every trajectory page, even unchanged ones.")] = False,
    frame_backend: Annotated[
        str, typer.Option(help="Frame reader for the pages' frames: auto, folder, decord, pyav.")
    ] = "auto",
    title: Annotated[str | None, typer.Option(help="Index page title (default: from the source name).")] = None,
    self_contained: Annotated[
        bool,
        typer.Option(
            "--self-contained",
            help="Embed frames and overlay in every run page (bigger; pages stand alone) instead of shared files.",
        ),
    ] = False,
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="No progress output.")] = False,
) -> None:
    """Build browsable HTML over many trajectories: a page per run and a sortable, paginated index.

    Pages of unchanged trajectories are kept from the last build, so rerunning on a
    growing store only renders the new runs. Open OUT/index.html in a browser.
    """
    from revseg.reports.index import build_index
    from revseg.reports.page import ReportOptions

    result = build_index(
        source,
        out,
        failures_first=failures_first,
        page_size=page_size,
        options=ReportOptions(frame_backend=frame_backend),
        force=force,
        title=title,
        self_contained=self_contained,
        progress=not quiet,
    )
    for skipped in result.skipped[:10]:
        _say(not quiet, f"skipped {skipped}")
    if len(result.skipped) > 10:
        _say(not quiet, f"... and {len(result.skipped) - 10} more unreadable records")
    typer.echo(
        f"{result.trajectories} trajectories: {result.pages_written} pages written,"
        f" {result.pages_up_to_date} up to date, {result.index_pages} index page(s)"
    )
    typer.echo(f"wrote {result.index}")


BenchmarkArg = Annotated[
    str, typer.Argument(help="Benchmark: revos, reasonvos, mevis, ref-youtube-vos or ref-davis17.")
]
DataRootOpt = Annotated[Path, typer.Option(help="The benchmark's folder, laid out as its public release ships it.")]
SplitOpt = Annotated[
    str | None,
    typer.Option(help="Split (default: revos valid, mevis valid_u, ref-youtube-vos valid, ref-davis17 valid)."),
]
ShardOpt = Annotated[
    str | None,
    typer.Option(
        help="Run only shard I of N (e.g. 0/4): disjoint shards by a hash of each key, whose union is the whole set.",
        metavar="I/N",
    ),
]
ExcludeOpt = Annotated[
    Path | None, typer.Option(help="A file of video ids to leave out (one per line), e.g. known-bad ReVOS videos.")
]
DatasetVersionOpt = Annotated[
    str | None,
    typer.Option(
        "--dataset-version",
        help="Force the dataset version (mevis: v1 or v2); by default it is detected from the files.",
        show_default=False,
    ),
]


@app.command("eval")
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
        **_chain_options(frames, temperature=temperature, max_new_tokens=max_new_tokens, seed=seed),
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


@app.command("score")
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


def _read_ids(path: Path | None) -> list[str]:
    """Ids from a file, one per line; blank lines and # comments skipped."""
    if path is None:
        return []
    try:
        lines = path.read_text().splitlines()
    except OSError as exc:
        raise typer.BadParameter(f"cannot read {path}: {exc.strerror or exc}") from exc
    return [line.split("#", 1)[0].strip() for line in lines if line.split("#", 1)[0].strip()]


# --- training: collect -> train -> collect (DESIGN.md 1.4-1.5) ---------------------------------


@app.command("collect")
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
        **_chain_options(frames, temperature=temperature, top_p=top_p, max_new_tokens=max_new_tokens),
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


@app.command("merge")
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


@app.command("curate")
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


@app.command("train")
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


rl_app = typer.Typer(help="Training loops (DESIGN.md 1.5).", no_args_is_help=True)
app.add_typer(rl_app, name="rl")


@rl_app.command("loop")
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


@app.command("replay")
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


def main(argv: list[str] | None = None) -> None:
    """Entry point: run the app, turning revseg errors into one line and a non-zero exit."""
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    try:
        app(args=argv, prog_name="revseg", standalone_mode=True)
    except RevsegError as exc:
        typer.echo(f"revseg: error: {exc}", err=True)
        sys.exit(2)
    except KeyboardInterrupt:
        typer.echo("revseg: interrupted", err=True)
        sys.exit(130)


if __name__ == "__main__":
    main()
