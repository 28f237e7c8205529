"""The request of one run of the chain, and what the run produced: the agent's small public types."""

from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from typing import TYPE_CHECKING, Any

from revseg.errors import InputError, OutputError
from revseg.settings import SamplingParams
from revseg.trajectory import Status, Trajectory

if TYPE_CHECKING:
    import numpy as np

    from revseg.tools.masks import MaskSequence


@dataclass(frozen=True)
class RunRequest:
    """One run of the chain: a video, what to segment in it, and optionally where to write and under which ids.

    The request of a single :meth:`~revseg.agents.ReVSegAgent.arun` and of each item of a batch alike.
    ``sampling`` overrides the agent's sampling parameters for this run only (rollout
    collection gives each rollout of a group its own seed); None keeps the agent's.
    """

    video: str | Path
    query: str
    out_dir: str | Path | None = None
    query_id: str | None = None
    group_id: str | None = None
    sampling: SamplingParams | None = None

    @classmethod
    def coerce(cls, item: RunRequest | tuple[Any, ...]) -> RunRequest:
        """Accept a ``RunRequest`` or a ``(video, query)`` / ``(video, query, out_dir)`` tuple."""
        if isinstance(item, RunRequest):
            return item
        if isinstance(item, tuple) and len(item) in (2, 3):
            return cls(*item)
        raise InputError(f"a batch item must be (video, query), (video, query, out_dir) or RunRequest, not {item!r}")


@dataclass(frozen=True)
class SegmentationResult:
    """What one run produced: the trajectory and where its artefacts are on disk.

    Masks stay on disk (PNG per frame plus RLE in ``masks.json``) and are decoded on
    demand, so a long video's result costs no memory until a frame is asked for.
    """

    trajectory: Trajectory
    out_dir: Path
    thread_id: str | None = None
    review: dict[str, Any] | None = None  # what a paused run asks a person (status pending_review)

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
