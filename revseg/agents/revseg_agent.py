"""ReVSegAgent: the compiled chain plus backends, output folder and trajectory recording."""

from __future__ import annotations

import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from time import perf_counter
from typing import TYPE_CHECKING, Any, Literal

from revseg.errors import OutputError, VideoError
from revseg.graphs import ChainContext, ChainInput, build_graph, trajectory_from_state
from revseg.policies import DEFAULT_POLICY, Policy, build_policy
from revseg.settings import ChainSettings, SamplingParams
from revseg.tools.trackers import DEFAULT_TRACKER, build_tracker
from revseg.tools.trackers.base import Tracker
from revseg.trajectory import Status, Trajectory

if TYPE_CHECKING:
    import numpy as np

    from revseg.tools.masks import MaskSequence

TRAJECTORY_FILE = "trajectory.json"
OVERLAY_FILE = "overlay.mp4"
STREAM_MODES: list[Literal["updates", "values", "tasks"]] = ["updates", "values", "tasks"]


@dataclass(frozen=True)
class SegmentationResult:
    """What one run produced: the trajectory and where its artefacts are on disk.

    Masks stay on disk (PNG per frame plus RLE in ``masks.json``) and are decoded on
    demand, so a long video's result costs no memory until a frame is asked for.
    """

    trajectory: Trajectory
    out_dir: Path

    @property
    def status(self) -> Status:
        """How the run ended."""
        return self.trajectory.status

    @property
    def ok(self) -> bool:
        """True when the run produced a prediction (a mask track or an explicit no-target)."""
        return not self.trajectory.status.failed

    @property
    def keyframe_index(self) -> int | None:
        """The keyframe in original-frame indices."""
        return self.trajectory.keyframe_index

    @property
    def boxes(self) -> list[tuple[float, float, float, float]]:
        """Every grounded box, in original-frame pixels."""
        return [t.box for t in self.trajectory.targets if t.box is not None]

    @property
    def has_masks(self) -> bool:
        """True when masks were written (not after a failure or with ``--tracker none``)."""
        return "masks_json" in self.trajectory.outputs

    @cached_property
    def masks(self) -> MaskSequence | None:
        """Every frame's masks, decoded on demand from ``masks.json``; None when no masks were written."""
        from revseg.tools.masks import read_masks_json

        return read_masks_json(self.trajectory.outputs["masks_json"]) if self.has_masks else None

    def mask(self, frame_index: int) -> np.ndarray:
        """The union mask (H, W) bool of every target on one frame."""
        if self.masks is None:
            raise OutputError(f"run in {self.out_dir} has no masks (status: {self.status.value})")
        return self.masks.union(frame_index)


class ReVSegAgent:
    """Runs the ReVSeg chain on (video, query) pairs and records every run.

    ``policy`` and ``tracker`` are spec strings (``hf:...``, ``openai:...``, ``sam2:...``,
    ``"none"``) or ready backend objects. Backends are built once and reused across runs.
    """

    def __init__(
        self,
        policy: Policy | str = DEFAULT_POLICY,
        tracker: Tracker | str | None = DEFAULT_TRACKER,
        *,
        settings: ChainSettings | None = None,
        sampling: SamplingParams | None = None,
        frame_backend: str = "auto",
        progress: bool = False,
        overlay: bool = True,
        policy_options: dict[str, Any] | None = None,
        tracker_options: dict[str, Any] | None = None,
    ) -> None:
        self.context = ChainContext(
            policy=build_policy(policy, **(policy_options or {})) if isinstance(policy, str) else policy,
            tracker=build_tracker(tracker, **(tracker_options or {})) if isinstance(tracker, str) else tracker,
            settings=settings or ChainSettings(),
            sampling=sampling or SamplingParams(),
            frame_backend=frame_backend,
            progress=progress,
        )
        self.overlay = overlay
        self.graph = build_graph()

    def run(
        self,
        video: str | Path,
        query: str,
        out_dir: str | Path | None = None,
        *,
        query_id: str | None = None,
        group_id: str | None = None,
        on_step: Callable[[str, dict[str, Any]], None] | None = None,
        on_start: Callable[[str], None] | None = None,
    ) -> SegmentationResult:
        """Segment the object ``query`` refers to in ``video``; write masks, trajectory and overlay.

        Without ``out_dir`` a fresh temporary folder is used. Bad input (a missing or
        undecodable video, an unwritable folder) raises a RevsegError; model answers that
        do not parse end the run with a failure status instead. ``on_start(node)`` and
        ``on_step(node, update)`` are called as each reasoning step starts and finishes.
        """
        video_path = Path(video)
        if not video_path.exists():
            raise VideoError(f"{video_path}: no such file or folder")
        out = Path(out_dir) if out_dir is not None else Path(tempfile.mkdtemp(prefix="revseg-"))
        try:
            out.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise OutputError(f"cannot create output folder {out}: {exc.strerror or exc}") from exc
        inputs = ChainInput(video_path=str(video_path), query=query, out_dir=str(out))
        state: dict[str, Any] = {}
        for part in self.graph.stream(inputs, context=self.context, stream_mode=STREAM_MODES, version="v2"):
            if part["type"] == "values":
                state = dict(part["data"])
            elif part["type"] == "updates" and on_step is not None:
                for node, update in part["data"].items():
                    on_step(node, update or {})
            elif part["type"] == "tasks" and on_start is not None and "input" in part["data"]:
                on_start(part["data"]["name"])
        trajectory = trajectory_from_state(state, self.context, query_id=query_id, group_id=group_id)
        if self.overlay and "masks_json" in trajectory.outputs:
            start = perf_counter()
            trajectory.outputs["overlay"] = str(self._write_overlay(trajectory, out))
            trajectory.timings["overlay"] = perf_counter() - start
        trajectory.outputs["trajectory"] = str(out / TRAJECTORY_FILE)
        trajectory.save(out / TRAJECTORY_FILE)
        return SegmentationResult(trajectory=trajectory, out_dir=out)

    def _write_overlay(self, trajectory: Trajectory, out: Path) -> Path:
        from revseg.tools.frames import open_video
        from revseg.tools.render import write_overlay

        reader = open_video(trajectory.video.path, backend=self.context.frame_backend)
        try:
            target = trajectory.targets[0] if trajectory.targets else None
            return write_overlay(
                reader,
                trajectory.outputs["masks_json"],
                out / OVERLAY_FILE,
                box=target.box if target else None,
                keyframe_index=target.frame_index if target else None,
            )
        finally:
            reader.close()


def segment(
    video: str | Path,
    query: str,
    out_dir: str | Path | None = None,
    *,
    policy: Policy | str = DEFAULT_POLICY,
    tracker: Tracker | str | None = DEFAULT_TRACKER,
    **options: Any,
) -> SegmentationResult:
    """One-shot convenience: build an agent and run it once (backends are not reused)."""
    return ReVSegAgent(policy, tracker, **options).run(video, query, out_dir)
