"""ReasonVOS (VideoLISA, NeurIPS 2024): zero-shot reasoning queries over videos from four datasets.

Layout of the public release (github.com/showlab/VideoLISA, ``BENCHMARK.md`` and
``benchmark_check.py``), the data root being ``ReasonVOS/``::

    JPEGImages/<video>/<frame>.jpg
    Annotations/<source>_<video>_<obj_id>/<frame>.png       one binary mask per frame
    meta_expressions.json   {"videos": {"<video>": {"source": "MOSE" | "MeViS" | "BURST" | "VIPSeg",
                              "frames": [...], "is_sent": bool,
                              "expressions": {"<n>": {"exp_text": str, "obj_id": int}}}}}

VideoLISA's ``eval_reason_vos.py`` names predictions ``<pred>/<video>/<obj_id>/<frame>.png``:
the expression id in the standard layout is the expression's ``obj_id``, and a video
with two expressions on one object is scored once (the script's results dict keeps one
entry per (video, obj_id)); we keep the first and note the others. Ground truth is the
mask folder of ``<source>_<video>_<obj_id>`` (tried with the source as written, then
lower-cased), scored on the frames that folder holds; a nonzero pixel is foreground. The
score is the mean over expressions of J and F, J&F their mean. The official script skips
expressions whose ground truth or prediction is missing; we list missing ground truth as
excluded and score missing predictions 0.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, ClassVar

import numpy as np

from revseg.errors import DatasetError
from revseg.evals.base import (
    Benchmark,
    GroundTruth,
    PaperRow,
    Sample,
    expression_text,
    expressions_of,
    inside,
    meta_videos,
    natural_key,
    safe_name,
)

if TYPE_CHECKING:
    from revseg.evals.report import Table
    from revseg.evals.scoring import SampleScore


class ReasonVOS(Benchmark):
    """ReasonVOS: 91 videos, 458 reasoning and referring expressions; one split."""

    name: ClassVar[str] = "reasonvos"
    title: ClassVar[str] = "ReasonVOS"
    splits: ClassVar[tuple[str, ...]] = ("test",)
    default_split: ClassVar[str] = "test"
    split_aliases: ClassVar[dict[str, str]] = {"valid": "test", "val": "test", "all": "test"}
    paper: ClassVar[tuple[PaperRow, ...]] = (PaperRow("all", J=61.8, F=67.7, JF=64.8),)

    def read_samples(self) -> Iterator[Sample]:
        """One sample per (video, obj_id) of ``meta_expressions.json`` that has a ground-truth folder."""
        meta_path = self.root / "meta_expressions.json"
        videos = meta_videos(meta_path, "ReasonVOS meta expressions")
        images = self.root / "JPEGImages"
        for video_id, entry in videos.items():
            where = f"meta_expressions.json, video {video_id!r}"
            video = safe_name(video_id, where, "video id", nested=True)
            source = safe_name(entry.get("source", ""), where, "source")
            frames = self.frame_files_for(inside(images, video), entry.get("frames"), where)
            seen: set[str] = set()
            for exp_key, expression in expressions_of(video, entry, meta_path).items():
                here = f"{where}, expression {exp_key!r}"
                obj_id = safe_name(expression.get("obj_id") if isinstance(expression, dict) else None, here, "obj_id")
                key = f"{video}/{obj_id}"
                if obj_id in seen:
                    reason = "a second expression on one object: the official script scores (video, obj_id) once"
                    self.excluded.append({"key": f"{key} (expression {exp_key})", "reason": reason})
                    continue
                seen.add(obj_id)
                gt_dir = self._gt_dir(source, video, obj_id)
                if gt_dir is None:
                    self.excluded.append({"key": key, "reason": f"no ground truth folder {source}_{video}_{obj_id}"})
                    continue
                yield Sample(
                    video=video,
                    expression=obj_id,
                    query=expression_text(expression, here, keys=("exp_text", "exp")),
                    subset="all",
                    frames_dir=inside(images, video),
                    frame_files=frames,
                    info={"source": source, "is_sent": entry.get("is_sent"), "gt_dir": str(gt_dir)},
                )

    def _gt_dir(self, source: str, video: str, obj_id: str) -> str | None:
        annotations = self.root / "Annotations"
        for name in dict.fromkeys((f"{source}_{video}_{obj_id}", f"{source.lower()}_{video}_{obj_id}")):
            folder = inside(annotations, name)
            if folder.is_dir():
                return str(folder)
        return None

    def ground_truth(self, sample: Sample) -> GroundTruth:
        """The sample's mask folder, every PNG in it (sorted by name), nonzero = foreground."""
        from revseg.evals.scoring import read_mask_png

        folder = Path(sample.info["gt_dir"])
        files = sorted(
            (p for p in folder.glob("*.png") if not p.name.startswith(".")), key=lambda p: natural_key(p.name)
        )
        if not files:
            raise DatasetError(f"ReasonVOS {sample.key}: no ground-truth PNGs in {folder}")
        masks: list[np.ndarray] = []
        for file in files:
            mask = read_mask_png(file)
            if isinstance(mask, str):
                raise DatasetError(f"ReasonVOS ground truth: {mask}")
            if masks and mask.shape != masks[0].shape:
                raise DatasetError(f"{file}: ground-truth mask size differs from the video's other masks")
            masks.append(mask)
        return GroundTruth(frame_names=tuple(p.stem for p in files), masks=np.stack(masks))

    def tables(self, scores: Sequence[SampleScore]) -> list[Table]:
        """All expressions (the benchmark's number), then a breakdown by source dataset for information."""
        from revseg.evals.report import Table, mean_row

        tables = super().tables(scores)
        source_of = {sample.key: str(sample.info.get("source", "?")) for sample in self.samples()}
        by_source: dict[str, list[SampleScore]] = {}
        for score in scores:
            by_source.setdefault(source_of.get(score.key, "?"), []).append(score)
        rows = [mean_row(source, group) for source, group in sorted(by_source.items())]
        tables.append(Table(f"ReasonVOS {self.split}: by source dataset", "informational breakdown", rows))
        return tables
