"""The ``revseg`` command: thin wrappers that parse options, call the Python API and print."""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Annotated, Any

import typer

from revseg.errors import RevsegError
from revseg.policies import DEFAULT_POLICY
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
        help="Tracker backend: sam2:HUB_ID, sam2:CONFIG:CHECKPOINT, or 'none' to stop after the box.",
    ),
]


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


def _default_out(video: Path) -> Path:
    return Path("revseg-out") / (video.stem if video.suffix else video.name)


@app.command()
def segment(
    video: Annotated[Path, typer.Argument(help="Video file (mp4/avi/mkv/webm/mov) or a folder of JPEG/PNG frames.")],
    query: Annotated[str, typer.Argument(help="What to segment, as free text; may be implicit reasoning.")],
    policy: PolicyOpt = DEFAULT_POLICY,
    tracker: TrackerOpt = DEFAULT_TRACKER,
    frames: Annotated[int, typer.Option(min=1, max=256, help="Frames sampled uniformly for turn 1 (paper: 16).")] = 16,
    out: Annotated[
        Path | None, typer.Option(help="Output folder (default: revseg-out/<video name>).", show_default=False)
    ] = None,
    base_url: Annotated[
        str | None, typer.Option(help="openai: endpoint URL, e.g. http://localhost:8000/v1 (vLLM).")
    ] = None,
    box_convention: Annotated[
        str | None,
        typer.Option(help="How the policy writes boxes: 'absolute' pixels of the image it saw, or 'norm1000'."),
    ] = None,
    device: Annotated[
        str | None, typer.Option(help="Device for local models (default: cuda if present, else cpu).")
    ] = None,
    temperature: Annotated[float, typer.Option(min=0.0, help="Sampling temperature; 0 is greedy.")] = 0.0,
    top_p: Annotated[float, typer.Option(min=0.0, max=1.0, help="Nucleus sampling mass.")] = 1.0,
    top_k: Annotated[int | None, typer.Option(min=1, help="Top-k sampling.")] = None,
    max_new_tokens: Annotated[int, typer.Option(min=1, help="Generation budget per turn.")] = 1024,
    seed: Annotated[int | None, typer.Option(help="Seed for sampling, for reproducible runs.")] = None,
    frame_backend: Annotated[str, typer.Option(help="Frame reader: auto, folder, decord or pyav.")] = "auto",
    overlay: Annotated[bool, typer.Option(help="Write overlay.mp4 with masks and the keyframe box.")] = True,
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="No progress output.")] = False,
) -> None:
    """Segment the object QUERY refers to in VIDEO: masks for every frame plus the reasoning trajectory.

    Writes OUT/masks/*.png (one DAVIS-style mask per frame), OUT/masks.json (COCO RLE),
    OUT/trajectory.json (the full record) and OUT/overlay.mp4.
    """
    from revseg.agents import ReVSegAgent
    from revseg.settings import ChainSettings, SamplingParams
    from revseg.tools.frames import open_video

    progress = not quiet
    out_dir = out or _default_out(video)
    open_video(video, backend=frame_backend).close()  # bad input fails before any model loads
    _say(progress, f"loading policy {policy} and tracker {tracker}")
    agent = ReVSegAgent(
        policy,
        tracker,
        settings=ChainSettings(num_frames=frames),
        sampling=SamplingParams(
            temperature=temperature, top_p=top_p, top_k=top_k, max_new_tokens=max_new_tokens, seed=seed
        ),
        frame_backend=frame_backend,
        progress=progress,
        overlay=overlay,
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


def _policy_options(policy: str, **options: Any) -> dict[str, Any]:
    """Pass each backend only the flags it understands."""
    if policy.startswith("openai:"):
        return {k: options[k] for k in ("base_url", "box_convention")}
    return {k: options[k] for k in ("box_convention", "device")}


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
