"""Run the chain or the tracker alone: ``revseg segment``, ``revseg segment-batch`` and ``revseg track``."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer

from revseg.cli.options import (
    BaseUrlOpt,
    BoxConventionOpt,
    DeviceOpt,
    FrameBackendOpt,
    FramesOpt,
    MaxNewTokensOpt,
    MaxTurnsOpt,
    PaperOpt,
    PolicyOpt,
    ProgramChoice,
    ProgramOpt,
    SeedOpt,
    TemperatureOpt,
    TopKOpt,
    TopPOpt,
    TrackerOpt,
    _chain_options,
    _default_out,
    _policy_options,
    _say,
    _tracker_choice,
)
from revseg.policies import DEFAULT_POLICY
from revseg.settings import DEFAULT_SAMPLING, PAPER_SETTINGS
from revseg.tools.trackers import DEFAULT_TRACKER


def segment(
    video: Annotated[Path, typer.Argument(help="Video file (mp4/avi/mkv/webm/mov) or a folder of JPEG/PNG frames.")],
    query: Annotated[str, typer.Argument(help="What to segment, as free text; may be implicit reasoning.")],
    policy: PolicyOpt = DEFAULT_POLICY,
    tracker: TrackerOpt = DEFAULT_TRACKER,
    frames: FramesOpt = PAPER_SETTINGS.num_frames,
    program: ProgramOpt = ProgramChoice.PAPER,
    max_turns: MaxTurnsOpt = None,
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
    from revseg.tools.frame_cache import ResizedFrameCache

    progress = not quiet
    out_dir = out or _default_out(video)
    frame_cache = ResizedFrameCache()
    frame_cache.probe(video, frame_backend)  # bad input fails before any model loads; the run finds the video open
    tracker = _tracker_choice(tracker, paper, device, progress)
    _say(progress, f"loading policy {policy} and tracker {tracker}")
    agent = ReVSegAgent(
        policy,
        tracker,
        **_chain_options(
            frames,
            program,
            max_turns,
            temperature=temperature,
            top_p=top_p,
            top_k=top_k,
            max_new_tokens=max_new_tokens,
            seed=seed,
        ),
        frame_backend=frame_backend,
        progress=progress,
        overlay=overlay,
        report=report,
        policy_options=_policy_options(policy, base_url=base_url, box_convention=box_convention, device=device),
        tracker_options={"device": device},
        frame_cache=frame_cache,
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
    program: ProgramOpt = ProgramChoice.PAPER,
    max_turns: MaxTurnsOpt = None,
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
            frames,
            program,
            max_turns,
            temperature=temperature,
            top_p=top_p,
            top_k=top_k,
            max_new_tokens=max_new_tokens,
            seed=seed,
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
