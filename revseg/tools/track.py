"""Tracking without a policy: boxes on one keyframe in, masks for every frame out (``revseg track``).

Useful on its own (you already know where the object is) and for data curation, where
ground-truth boxes stand in for the model's. It writes the same artefacts as a chain
run, so the same readers and scorers apply::

    OUT/masks/00000.png ...   one DAVIS-style palette PNG per frame (object ids 1..K)
    OUT/masks/masks.json      COCO RLE per frame: the union and each object
    OUT/overlay.mp4           the video with the masks and the keyframe boxes drawn
    OUT/track.json            what ran: video, keyframe, boxes, tracker spec, timings

The prompt is checked against the video before any model loads, so a zero-width box
or a keyframe past the end fails in a second with a TrackerError naming both.
"""

from __future__ import annotations

import json
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from time import perf_counter
from typing import TYPE_CHECKING, Any

from revseg.errors import OutputError, SpecError
from revseg.tools.frames import frame_names, open_video
from revseg.tools.masks import MaskWriter, read_masks_json
from revseg.tools.trackers import DEFAULT_TRACKER, build_tracker
from revseg.tools.trackers.base import Tracker, check_prompt
from revseg.trajectory import BoxXYXY, VideoRef

if TYPE_CHECKING:
    import numpy as np

__all__ = ["MASKS_DIR", "OVERLAY_FILE", "TRACK_FILE", "TrackResult", "parse_box", "track_video"]

MASKS_DIR = "masks"
OVERLAY_FILE = "overlay.mp4"
TRACK_FILE = "track.json"
TRACK_JSON_VERSION = 1


@dataclass(frozen=True)
class TrackResult:
    """What one tracking run wrote, and how long each stage took (seconds)."""

    out_dir: Path
    video: VideoRef
    keyframe_index: int
    boxes: list[BoxXYXY]
    tracker: str
    masks_json: Path
    overlay: Path | None
    timings: dict[str, float] = field(default_factory=dict)

    def mask(self, frame_index: int) -> np.ndarray:
        """The (H, W) bool union of every object's mask on one frame, read from ``masks.json``."""
        return read_masks_json(self.masks_json).union(frame_index)

    def object_masks(self, frame_index: int) -> np.ndarray:
        """The (K, H, W) bool per-object masks on one frame."""
        return read_masks_json(self.masks_json).object_masks(frame_index)

    def record(self) -> dict[str, Any]:
        """The JSON-ready record written to ``track.json``."""
        return {
            "version": TRACK_JSON_VERSION,
            "video": self.video.model_dump(),
            "keyframe_index": self.keyframe_index,
            "boxes": [list(b) for b in self.boxes],
            "tracker": self.tracker,
            "outputs": {"masks_json": str(self.masks_json), "overlay": str(self.overlay) if self.overlay else None},
            "timings": self.timings,
        }


def parse_box(text: str) -> BoxXYXY:
    """``"x1,y1,x2,y2"`` (commas or spaces) -> four floats; ValueError saying what was wrong."""
    parts = [p for p in text.replace(",", " ").split() if p]
    if len(parts) != 4:
        raise ValueError(f"box '{text}' must be four numbers x1,y1,x2,y2")
    try:
        x1, y1, x2, y2 = (float(p) for p in parts)
    except ValueError as exc:
        raise ValueError(f"box '{text}' must be four numbers x1,y1,x2,y2") from exc
    return (x1, y1, x2, y2)


def track_video(
    video: str | Path,
    keyframe_index: int,
    boxes: Sequence[BoxXYXY],
    tracker: Tracker | str = DEFAULT_TRACKER,
    out_dir: str | Path | None = None,
    *,
    frame_backend: str = "auto",
    overlay: bool = True,
    progress: bool = False,
    device: str | None = None,
    tracker_options: dict[str, Any] | None = None,
) -> TrackResult:
    """Track ``boxes`` (x1, y1, x2, y2 in original pixels on ``keyframe_index``) through ``video``.

    ``tracker`` is a spec (``sam2:...``, ``hf-sam2:...``; built here with ``device`` and
    ``tracker_options``) or a ready Tracker, reused across calls. Each box is one object;
    they are tracked jointly. Masks stream to ``out_dir/masks`` as they come (nothing
    full-size is held), then the overlay is rendered. Without ``out_dir`` a fresh
    temporary folder is used. Raises VideoError for bad input, TrackerError for a bad
    prompt (before any model loads) or a tracker failure, SpecError/ModelLoadError for a
    bad tracker spec.
    """
    timings: dict[str, float] = {}
    out = Path(out_dir) if out_dir is not None else Path(tempfile.mkdtemp(prefix="revseg-track-"))
    reader = open_video(video, backend=frame_backend)
    try:
        ref = reader.ref
        prompts = check_prompt(ref, keyframe_index, boxes)
        if isinstance(tracker, str):
            start = perf_counter()
            built = build_tracker(tracker, device=device, **(tracker_options or {}))
            if built is None:
                raise SpecError("tracker 'none' cannot track; give a tracker spec such as sam2:... or hf-sam2:...")
            tracker = built
            timings["load_tracker"] = perf_counter() - start
        _make_dir(out)
        writer = MaskWriter(out / MASKS_DIR, ref.num_frames, (ref.width, ref.height), frame_names(reader))
        start = perf_counter()
        for item in tracker.track(reader, keyframe_index, prompts, progress=progress):
            writer.write(item.frame_index, item.masks)
        masks_json = writer.close()
        timings["track"] = perf_counter() - start
        overlay_path = None
        if overlay:
            from revseg.tools.render import write_overlay

            start = perf_counter()
            overlay_path = write_overlay(
                reader, masks_json, out / OVERLAY_FILE, box=prompts, keyframe_index=keyframe_index, progress=progress
            )
            timings["overlay"] = perf_counter() - start
    finally:
        reader.close()
    result = TrackResult(out, ref, keyframe_index, prompts, tracker.spec, masks_json, overlay_path, timings)
    _write_record(out / TRACK_FILE, result.record())
    return result


def _make_dir(out: Path) -> None:
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise OutputError(f"cannot create output folder {out}: {exc.strerror or exc}") from exc


def _write_record(path: Path, record: dict[str, Any]) -> None:
    try:
        path.write_text(json.dumps(record, indent=2))
    except OSError as exc:
        raise OutputError(f"cannot write {path}: {exc.strerror or exc}") from exc
