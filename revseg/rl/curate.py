"""Training-data curation (DESIGN.md 1.5): drop every query of a video whose ground truth SAM2 cannot reproduce.

For each video of a benchmark split, each ground-truth object's mask on each frame where
it is visible becomes its box; SAM2 segments that box on that frame alone (image mode:
no memory, no propagation, :class:`~revseg.tools.trackers.base.BoxSegmenter`), and the
mask IoU with the ground truth is recorded. A video's score is the mean IoU over all its
(object, frame) pairs; below the threshold (0.6, the paper's) every query of the video is
dropped. Low scores flag masks that drift from their frames, boxes that cannot single out
their object, and objects too small or ambiguous for a box prompt: training on those
would reward the policy for boxes SAM2 cannot use.

Objects come from the readers of ``revseg.evals``, whose samples are queries: a query's
``anno_id`` list (ReVOS, MeViS) names its objects, each checked once per video; an
``obj_id`` (Ref-DAVIS17) names one; otherwise (ReasonVOS) each query's ground truth is
its object.

The output folder::

    run.json             benchmark, split, data root and tracker (checked on resume)
    results.jsonl        one line per finished video, appended and fsynced as it finishes
    report.json          per-video mean IoU, pairs evaluated, kept or dropped; the totals
    report.md            the short summary
    exclude_videos.txt   dropped videos, one a line: ``revseg collect/eval --exclude-videos``

A crash loses at most the video in flight: ``resume`` skips every video recorded in
``results.jsonl`` (``retry_failed`` reruns those that failed), and the report is rebuilt
from the records, so rerunning with ``resume`` and another threshold only re-decides.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

from revseg.errors import DatasetError, OutputError, RevsegError, SpecError, VideoError
from revseg.evals.base import Benchmark, Sample, natural_key
from revseg.evals.runner import RunStore
from revseg.tools.trackers.base import BoxSegmenter

if TYPE_CHECKING:
    import numpy as np

    from revseg.trajectory import BoxXYXY

logger = logging.getLogger(__name__)

__all__ = [
    "DEFAULT_THRESHOLD",
    "CurationReport",
    "VideoScore",
    "curate",
    "score_video",
    "video_objects",
]

DEFAULT_THRESHOLD = 0.6
"""Mean mask IoU below which a video's queries are dropped (the paper's value)."""
REPORT_JSON = "report.json"
REPORT_MD = "report.md"
EXCLUDE_FILE = "exclude_videos.txt"
SCORED, FAILED = "scored", "failed"

VideoCallback = Callable[[int, int, dict[str, Any]], None]


@dataclass(frozen=True)
class VideoScore:
    """One video's check: mean IoU over its (object, frame) pairs, and each object's own mean and frame count."""

    video: str
    mean_iou: float
    pairs: int
    objects: dict[str, tuple[int, float]]


# --------------------------------------------------------------------------- one video


def video_objects(samples: Sequence[Sample]) -> list[tuple[str, Sample]]:
    """The distinct ground-truth objects of one video's samples, each as (name, a sample whose ground truth is it).

    ``anno_id`` lists (ReVOS, MeViS) give one object per annotation id, read through a copy
    of the sample that names only that id; an ``obj_id`` number (Ref-DAVIS17) gives one per
    object; otherwise each sample is its own object. No-target queries add none.
    """
    objects: dict[str, Sample] = {}
    for sample in samples:
        anno_ids = sample.info.get("anno_id")
        obj_id = sample.info.get("obj_id")
        if isinstance(anno_ids, list):
            for anno_id in anno_ids:
                name = f"anno {anno_id}"
                if name not in objects:
                    objects[name] = replace(sample, info={**sample.info, "anno_id": [anno_id]})
        elif isinstance(obj_id, int) and not isinstance(obj_id, bool):
            objects.setdefault(f"object {obj_id}", sample)
        else:
            objects.setdefault(f"expression {sample.expression}", sample)
    return list(objects.items())


def score_video(
    benchmark: Benchmark, samples: Sequence[Sample], segmenter: BoxSegmenter, *, batch_size: int = 8
) -> VideoScore:
    """Prompt every visible object on every frame with its ground-truth box and score the masks (IoU).

    ``samples`` are one video's samples. Frames are read and segmented ``batch_size`` at a
    time, all of a frame's objects in one prompt. Raises DatasetError or VideoError for
    broken input: no object visible on any frame, a frame missing or unreadable, a mask
    whose size differs from its frame's.
    """
    from revseg.evals.metrics import jaccard

    video = samples[0].video
    files = {Path(name).stem: sample.frames_dir / name for sample in samples for name in sample.frame_files}
    visible: dict[str, list[tuple[str, np.ndarray]]] = {}
    ious: dict[str, list[float]] = {}
    for name, sample in video_objects(samples):
        truth = benchmark.ground_truth(sample)
        ious[name] = []
        for frame, mask in zip(truth.frame_names, truth.masks, strict=True):
            if mask.any():
                visible.setdefault(frame, []).append((name, mask))
    if not visible:
        raise DatasetError(f"{benchmark.title} video {video!r}: every ground-truth mask is empty, nothing to check")
    missing = sorted(set(visible) - set(files), key=natural_key)
    if missing:
        raise DatasetError(f"{benchmark.title} video {video!r}: frame {missing[0]} has ground truth but no image")
    order = sorted(visible, key=natural_key)
    for start in range(0, len(order), batch_size):
        names = order[start : start + batch_size]
        frames = [_read_frame(files[name], visible[name][0][1].shape) for name in names]
        boxes = [[_box(mask) for _, mask in visible[name]] for name in names]
        predicted = segmenter.segment_boxes(frames, boxes)
        for name, masks in zip(names, predicted, strict=True):
            for (obj, truth_mask), mask in zip(visible.pop(name), masks, strict=True):
                ious[obj].append(float(jaccard(truth_mask, mask)[0]))
    values = [v for per_object in ious.values() for v in per_object]
    objects = {obj: (len(v), sum(v) / len(v)) for obj, v in ious.items() if v}
    return VideoScore(video, sum(values) / len(values), len(values), objects)


def _box(mask: np.ndarray) -> BoxXYXY:
    """The box of a mask known to be non-empty."""
    from revseg.tools.boxes import mask_to_box

    box = mask_to_box(mask)
    assert box is not None, "only visible (non-empty) masks are prompted"
    return box


def _read_frame(path: Path, shape: tuple[int, ...]) -> np.ndarray:
    """A frame as (H, W, 3) uint8 RGB, checked to be the size of its ground-truth masks."""
    import numpy as np
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(path) as image:
            frame = np.array(image.convert("RGB"))  # writable: torch warns on read-only arrays
    except (OSError, UnidentifiedImageError) as exc:
        raise VideoError(f"{path}: missing or unreadable frame ({exc})") from exc
    if frame.shape[:2] != tuple(shape):
        raise DatasetError(
            f"{path}: the frame is {frame.shape[1]}x{frame.shape[0]} but its ground-truth mask is "
            f"{shape[1]}x{shape[0]} (masks that do not match their frames)"
        )
    return frame


# --------------------------------------------------------------------------- the run


class _CurationStore(RunStore):
    """The evaluation runner's folder discipline (lock, run.json check, fsynced JSONL), one record per video."""

    def add(self, record: Mapping[str, Any]) -> None:
        """Append one finished video's record (one line, flushed and fsynced)."""
        self._append(record)


def curate(
    benchmark: Benchmark,
    segmenter: BoxSegmenter | str,
    out: str | Path,
    *,
    threshold: float = DEFAULT_THRESHOLD,
    batch_size: int = 8,
    drop_failed: bool = True,
    resume: bool = False,
    retry_failed: bool = False,
    limit: int | None = None,
    device: str | None = None,
    on_video: VideoCallback | None = None,
) -> CurationReport:
    """Check every video of ``benchmark`` with ``segmenter``; write the records, the report and the exclusion list.

    ``segmenter`` is a BoxSegmenter or a tracker spec (``sam2:...``, ``hf-sam2:...``, built
    on ``device``). ``limit`` checks at most K videos in this call. A video whose input is
    broken is recorded as failed and the run goes on; ``drop_failed`` puts failed videos
    in the exclusion list too (they could not be shown to be good). ``on_video(done,
    total, record)`` is called after each video is recorded.
    """
    if not 0.0 <= threshold <= 1.0:
        raise ValueError(f"threshold must be in [0, 1], got {threshold}")
    if batch_size < 1:
        raise ValueError("batch_size must be at least 1")
    if not benchmark.has_ground_truth:
        raise DatasetError(
            f"{benchmark.title} {benchmark.split} has no local ground truth (it is scored by its server); "
            "curation needs ground truth: choose a training or local-GT split"
        )
    spec = segmenter if isinstance(segmenter, str) else segmenter.spec
    videos = _by_video(benchmark.samples())
    config = {
        "kind": "curate",
        "benchmark": benchmark.name,
        "split": benchmark.split,
        "data_root": str(benchmark.root.resolve()),
        "tracker": spec,
    }
    store = _CurationStore(out)
    with store:
        records = store.open(config, resume=resume)
        done = {v for v, r in records.items() if not (retry_failed and r.get("status") == FAILED)}
        todo = [v for v in videos if v not in done][:limit]
        if todo:  # load the model only when there is work
            built = _build_segmenter(segmenter, device) if isinstance(segmenter, str) else segmenter
            for count, video in enumerate(todo, start=1):
                record = _check(benchmark, videos[video], built, batch_size)
                store.add(record)
                records[video] = record
                if on_video is not None:
                    on_video(count, len(todo), record)
        report = CurationReport.build(benchmark, spec, threshold, drop_failed, videos, records)
        report.save(store.out)
    return report


def _by_video(samples: Sequence[Sample]) -> dict[str, list[Sample]]:
    grouped: dict[str, list[Sample]] = {}
    for sample in samples:
        grouped.setdefault(sample.video, []).append(sample)
    return grouped


def _build_segmenter(spec: str, device: str | None) -> BoxSegmenter:
    from revseg.tools.trackers import build_tracker

    tracker = build_tracker(spec, device=device)
    if not isinstance(tracker, BoxSegmenter):
        raise SpecError(
            f"tracker '{spec}' cannot segment box prompts on single frames; curation needs a sam2: or hf-sam2: spec"
        )
    return tracker


def _check(benchmark: Benchmark, samples: list[Sample], segmenter: BoxSegmenter, batch_size: int) -> dict[str, Any]:
    """One video's record: its score, or the reason it could not be checked."""
    video = samples[0].video
    started = time.perf_counter()
    record: dict[str, Any] = {"key": video, "video": video, "queries": [s.key for s in samples]}
    try:
        scored = score_video(benchmark, samples, segmenter, batch_size=batch_size)
    except (RevsegError, OSError) as exc:  # one broken video must not stop a long curation
        logger.warning("curate: %s failed: %s", video, exc)
        record |= {"status": FAILED, "reason": str(exc), "mean_iou": None, "pairs": 0, "objects": {}}
    else:
        objects = {k: {"frames": n, "mean_iou": round(iou, 6)} for k, (n, iou) in scored.objects.items()}
        record |= {"status": SCORED, "mean_iou": round(scored.mean_iou, 6), "pairs": scored.pairs, "objects": objects}
    record["seconds"] = round(time.perf_counter() - started, 3)
    return record


# --------------------------------------------------------------------------- the report


@dataclass
class CurationReport:
    """What curation decided: one row per checked video, the totals, and the videos to exclude."""

    benchmark: str
    title: str
    split: str
    tracker: str
    threshold: float
    drop_failed: bool
    rows: list[dict[str, Any]]
    total_videos: int
    total_queries: int
    pending_videos: int
    pending_queries: int
    files: dict[str, str] = field(default_factory=dict)

    @classmethod
    def build(
        cls,
        benchmark: Benchmark,
        tracker: str,
        threshold: float,
        drop_failed: bool,
        videos: Mapping[str, Sequence[Sample]],
        records: Mapping[str, Mapping[str, Any]],
    ) -> CurationReport:
        """Decide each recorded video of the split against ``threshold``; count the ones not yet checked."""
        rows = []
        for video, samples in videos.items():
            record = records.get(video)
            if record is None:
                continue
            scored = record.get("status") == SCORED
            kept = float(record["mean_iou"]) >= threshold if scored else not drop_failed
            rows.append(
                {
                    "video": video,
                    "status": record.get("status"),
                    "mean_iou": record.get("mean_iou"),
                    "pairs": record.get("pairs", 0),
                    "queries": len(samples),
                    "kept": kept,
                    "objects": record.get("objects", {}),
                    "reason": record.get("reason"),
                }
            )
        pending = [v for v in videos if v not in records]
        return cls(
            benchmark=benchmark.name,
            title=benchmark.title,
            split=benchmark.split,
            tracker=tracker,
            threshold=threshold,
            drop_failed=drop_failed,
            rows=rows,
            total_videos=len(videos),
            total_queries=sum(len(s) for s in videos.values()),
            pending_videos=len(pending),
            pending_queries=sum(len(videos[v]) for v in pending),
        )

    @property
    def dropped(self) -> list[str]:
        """Videos whose queries are dropped (the exclusion list)."""
        return [row["video"] for row in self.rows if not row["kept"]]

    def counts(self) -> dict[str, dict[str, int]]:
        """Videos and queries: checked, kept, dropped for a low IoU, dropped for a failure, not yet checked."""

        def count(rows: Iterator[dict[str, Any]]) -> dict[str, int]:
            chosen = list(rows)
            return {"videos": len(chosen), "queries": sum(r["queries"] for r in chosen)}

        return {
            "checked": count(r for r in self.rows),
            "kept": count(r for r in self.rows if r["kept"]),
            "dropped_low_iou": count(r for r in self.rows if not r["kept"] and r["status"] == SCORED),
            "dropped_failed": count(r for r in self.rows if not r["kept"] and r["status"] != SCORED),
            "failed": count(r for r in self.rows if r["status"] != SCORED),
            "pending": {"videos": self.pending_videos, "queries": self.pending_queries},
            "total": {"videos": self.total_videos, "queries": self.total_queries},
        }

    def mean_iou(self) -> float | None:
        """Mean over checked videos of their mean IoU (None when none was scored)."""
        values = [float(r["mean_iou"]) for r in self.rows if r["status"] == SCORED]
        return sum(values) / len(values) if values else None

    def to_json(self) -> dict[str, Any]:
        """The report as JSON-ready data."""
        return {
            "benchmark": self.benchmark,
            "split": self.split,
            "tracker": self.tracker,
            "threshold": self.threshold,
            "drop_failed": self.drop_failed,
            "counts": self.counts(),
            "mean_iou": self.mean_iou(),
            "videos": self.rows,
        }

    def to_markdown(self, max_failures: int = 20) -> str:
        """The short summary: what was dropped, under which threshold and tracker."""
        counts = self.counts()
        labels = [
            ("in the split", "total"),
            ("checked", "checked"),
            ("kept", "kept"),
            (f"dropped: mean IoU < {self.threshold:g}", "dropped_low_iou"),
            ("dropped: check failed", "dropped_failed") if self.drop_failed else ("failed, kept unchecked", "failed"),
            ("not yet checked", "pending"),
        ]
        mean = self.mean_iou()
        lines = [
            f"# Curation: {self.title} {self.split}",
            "",
            f"SAM2 box-prompt filter (DESIGN.md 1.5): each ground-truth object's box on every frame where it is "
            f"visible prompts `{self.tracker}` on that frame alone; a video whose mean mask IoU over its "
            f"(object, frame) pairs is below {self.threshold:g} has all its queries dropped.",
            "",
            "| | videos | queries |",
            "|---|---:|---:|",
            *(f"| {label} | {counts[key]['videos']} | {counts[key]['queries']} |" for label, key in labels),
            "",
            f"Mean IoU over scored videos: {'n/a' if mean is None else f'{mean:.3f}'}. "
            f"{len(self.dropped)} videos to exclude in `{EXCLUDE_FILE}` "
            "(pass it to `revseg collect --exclude-videos` or `revseg eval --exclude-videos`).",
        ]
        failures = [r for r in self.rows if r["status"] != SCORED]
        if failures:
            lines += ["", "Failed videos:", ""]
            lines += [f"- {r['video']}: {r['reason']}" for r in failures[:max_failures]]
            if len(failures) > max_failures:
                lines.append(f"- ... and {len(failures) - max_failures} more (see {REPORT_JSON})")
        return "\n".join(lines) + "\n"

    def exclusion_list(self) -> str:
        """The dropped videos, one a line, after a ``#`` header (the format ``--exclude-videos`` reads)."""
        header = (
            f"# revseg curate: {self.title} {self.split}, tracker {self.tracker}, threshold {self.threshold:g}: "
            f"{len(self.dropped)} videos dropped\n"
        )
        return header + "".join(f"{video}\n" for video in self.dropped)

    def save(self, out_dir: str | Path) -> dict[str, str]:
        """Write report.json, report.md and exclude_videos.txt (each replaced whole); return their paths."""
        out = Path(out_dir)
        texts = {
            REPORT_JSON: json.dumps(self.to_json(), indent=1),
            REPORT_MD: self.to_markdown(),
            EXCLUDE_FILE: self.exclusion_list(),
        }
        for name, text in texts.items():
            path, tmp = out / name, out / f".{name}.tmp"
            try:
                tmp.write_text(text, encoding="utf-8")
                tmp.replace(path)
            except OSError as exc:
                raise OutputError(f"cannot write {path}: {exc.strerror or exc}") from exc
            self.files[name] = str(path)
        return dict(self.files)
