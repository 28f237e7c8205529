"""The flags several commands share, and the helpers that turn flags into Python API arguments."""

from __future__ import annotations

from enum import StrEnum
from pathlib import Path
from typing import Annotated, Any

import typer

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


class ProgramChoice(StrEnum):
    """The chain programs (``ChainSettings.program``), as the CLI offers them."""

    PAPER = "paper"
    LOOK_AGAIN = "look_again"


ProgramOpt = Annotated[
    ProgramChoice,
    typer.Option(
        help="Chain program: paper (two turns, the default) or look_again (may zoom into a stretch of the video, "
        "verify the tracked mask and re-select a keyframe, within --max-turns).",
    ),
]
MaxTurnsOpt = Annotated[
    int | None,
    typer.Option(min=2, help="look_again: most model turns per run (default 8); the graph enforces it."),
]
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


BenchmarkArg = Annotated[
    str, typer.Argument(help="Benchmark: revos, reasonvos, mevis, ref-youtube-vos, ref-davis17 or longrvos.")
]
DataRootOpt = Annotated[Path, typer.Option(help="The benchmark's folder, laid out as its public release ships it.")]
SplitOpt = Annotated[
    str | None,
    typer.Option(
        help="Split (default: revos valid, mevis valid_u, ref-youtube-vos valid, ref-davis17 valid, longrvos valid)."
    ),
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


def _chain_options(
    frames: int, program: str = ProgramChoice.PAPER, max_turns: int | None = None, **sampling: Any
) -> dict[str, Any]:
    """The ``settings`` and ``sampling`` an agent, an eval spec or a collection gets from the flags.

    Settings and sampling fields a command has no flag for keep :class:`~revseg.settings.ChainSettings`'
    and :class:`~revseg.settings.SamplingParams`' defaults.
    """
    from revseg.settings import ChainSettings, SamplingParams

    chain: dict[str, Any] = {"num_frames": frames, "program": str(program)}
    if max_turns is not None:
        chain["max_turns"] = max_turns
    return {"settings": ChainSettings(**chain), "sampling": SamplingParams(**sampling)}


def _policy_options(policy: str, **options: Any) -> dict[str, Any]:
    """Pass each backend only the flags it understands (a flag a command does not have counts as unset)."""
    if policy.startswith("openai:"):
        return {k: options.get(k) for k in ("base_url", "box_convention", "tokenizer")}
    return {k: options.get(k) for k in ("box_convention", "device")}


def _say(enabled: bool, message: str) -> None:
    if enabled:
        typer.echo(message, err=True)


def _read_ids(path: Path | None) -> list[str]:
    """Ids from a file, one per line; blank lines and # comments skipped."""
    if path is None:
        return []
    try:
        lines = path.read_text().splitlines()
    except OSError as exc:
        raise typer.BadParameter(f"cannot read {path}: {exc.strerror or exc}") from exc
    return [line.split("#", 1)[0].strip() for line in lines if line.split("#", 1)[0].strip()]
