"""Long-RVOS (CVPR 2026): minute-long videos; J, F, J&F, tIoU and vIoU per description type.

Layout of the public release (github.com/iSEE-Laboratory/Long_RVOS; the Hugging Face dataset
``iSEE-Laboratory/Long-RVOS``), the data root being ``long_rvos/``::

    <split>/JPEGImages/<video>/<frame>.jpg
    <split>/Annotations/<video>/<obj_id>/<frame>.png     one mask per frame the object is in
    <split>/meta_expressions.json   {"videos": {"<video>": {"frames": [...], "expressions":
                                      {"<exp_id>": {"exp": str, "obj_id": int,
                                                    "type": "static" | "dynamic" | "static+dynamic"}}}}}

for the splits ``train``, ``valid`` and ``test``. The public release ships ``Annotations`` for
``train`` and ``valid`` only; without that folder a split has no local ground truth (the
predictions are exported, see below).

Scoring follows the official scripts ``eval/eval_long_rvos/eval_{static,dynamic,hybrid,overall}.py``:

- An expression refers to one object; its ground truth on a frame is
  ``Annotations/<video>/<obj_id>/<frame>.png`` (a nonzero pixel is foreground), and an empty
  mask where that file is absent (the object is out of view).
- Every frame of the video's ``frames`` list is scored. Per expression: J and F (the DAVIS
  measures; the script's ``metrics.py`` is the DAVIS code) as means over those frames, and
  tIoU and vIoU over the same frames (:mod:`revseg.evals.temporal_metrics`).
- Per description type (``static``, ``dynamic``, ``static+dynamic`` shown as ``hybrid``) the
  mean over its expressions; **overall = the mean over the expressions of all three types,
  pooled** (``eval_overall.py`` concatenates the three lists). J&F = (mean J + mean F) / 2.
- Only those three types are scored: an expression with another type is listed as excluded
  (the script never queues it); one without a ``type`` is an error (the script stops on it).

On the synthetic dataset of :func:`revseg.testing.benchmarks.write_longrvos` the official scripts
and this reader give the same per-expression J, F, tIoU and vIoU to the last bit (the numbers are
pinned in ``tests/evals/test_scoring.py``).

Failures. The script scores a video without any prediction folder as 0 on all four measures,
as we do. It fills a missing frame of an existing prediction folder with an empty mask and
stops on a missing expression folder; we score both 0 and count them, like every failed or
missing prediction (a run that says "no target" is scored as empty masks). The script also takes
the frame size from the prediction and stops when the ground truth differs; we score a
prediction of the wrong size 0 (invalid).

Without ``Annotations`` (``test`` as released) ``revseg eval longrvos --split test`` writes
``submission.zip`` holding ``<video>/<exp_id>/<frame>.png`` (0/255 PNGs, the layout the scripts
read); no evaluation server for it is known, and the report says so.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import TYPE_CHECKING, Any, ClassVar

import numpy as np

from revseg.errors import DatasetError
from revseg.evals.base import (
    Benchmark,
    GroundTruth,
    Sample,
    expression_text,
    expressions_of,
    inside,
    meta_videos,
    safe_name,
)
from revseg.evals.benchmarks._rle import image_shape

if TYPE_CHECKING:
    from revseg.evals.report import Table
    from revseg.evals.scoring import SampleScore

SUBSETS = {"static": "static", "dynamic": "dynamic", "static+dynamic": "hybrid"}
"""Description type in ``meta_expressions.json`` -> subset (row label)."""


class LongRVOS(Benchmark):
    """Long-RVOS ``valid`` (local ground truth), ``test`` or ``train``: J, F, J&F, tIoU, vIoU."""

    name: ClassVar[str] = "longrvos"
    title: ClassVar[str] = "Long-RVOS"
    splits: ClassVar[tuple[str, ...]] = ("valid", "test", "train")
    default_split: ClassVar[str] = "valid"
    split_aliases: ClassVar[dict[str, str]] = {"val": "valid"}
    extra_metrics: ClassVar[tuple[str, ...]] = ("tIoU", "vIoU")
    failure_rule: ClassVar[str] = (
        Benchmark.failure_rule + ". Long-RVOS's script also scores a video without predictions 0, but fills "
        "missing frames of a prediction with empty masks and stops on a missing expression folder: we score "
        "those 0 and count them"
    )

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.split_root = self.root / self.split
        self.meta_path = self.split_root / "meta_expressions.json"
        self.annotations = self.split_root / "Annotations"

    @property
    def has_ground_truth(self) -> bool:
        """True when the split has its ``Annotations`` folder (the public ``test`` split has none)."""
        return self.annotations.is_dir()

    def read_samples(self) -> Iterator[Sample]:
        """One sample per static, dynamic or hybrid expression of ``<split>/meta_expressions.json``."""
        videos = meta_videos(self.meta_path, f"Long-RVOS {self.split} meta expressions")
        if not self.has_ground_truth:
            self.notes.append(
                f"Long-RVOS {self.split} has no Annotations folder ({self.annotations}): the public release ships "
                "none for test. No evaluation server is known; submission.zip holds the predictions in the layout "
                "the official scripts read, to score wherever the annotations are."
            )
        images = self.split_root / "JPEGImages"
        for video_id, entry in videos.items():
            where = f"{self.split}/meta_expressions.json, video {video_id!r}"
            video = safe_name(video_id, where, "video id", nested=True)
            frames = self.frame_files_for(inside(images, video), entry.get("frames"), where)
            for exp_id, expression in expressions_of(video, entry, self.meta_path).items():
                here = f"{where}, expression {exp_id!r}"
                if not isinstance(expression, dict) or "type" not in expression:
                    raise DatasetError(f"{here}: no 'type' (static, dynamic or static+dynamic)")
                kind = expression["type"]
                expression_id = safe_name(exp_id, here, "expression id")
                if kind not in SUBSETS:
                    reason = f"type {kind!r} is not scored by the official script (static, dynamic, static+dynamic)"
                    self.excluded.append({"key": f"{video}/{expression_id}", "reason": reason})
                    continue
                obj_id = expression.get("obj_id")
                if self.has_ground_truth or obj_id is not None:
                    obj_id = safe_name(obj_id, here, "obj_id")
                yield Sample(
                    video=video,
                    expression=expression_id,
                    query=expression_text(expression, here),
                    subset=SUBSETS[kind],
                    frames_dir=inside(images, video),
                    frame_files=frames,
                    info={"obj_id": obj_id, "type": kind},
                )

    def ground_truth(self, sample: Sample) -> GroundTruth:
        """The object's mask on every listed frame: its PNG, or empty where the object has none."""
        if not self.has_ground_truth:
            raise DatasetError(f"Long-RVOS {self.split} has no local ground truth: {self.annotations} does not exist")
        from revseg.evals.scoring import read_mask_png

        where = f"Long-RVOS {self.split} {sample.key}"
        folder = inside(self.annotations, sample.video, sample.info["obj_id"])
        masks: list[np.ndarray | None] = []
        for name in sample.frame_names:
            path = folder / f"{name}.png"
            mask = read_mask_png(path) if path.is_file() else None
            if isinstance(mask, str):
                raise DatasetError(f"{where}: {mask}")
            masks.append(mask)
        present = [m for m in masks if m is not None]
        shape = present[0].shape if present else image_shape(sample.frames_dir / sample.frame_files[0], where)
        if any(m.shape != shape for m in present):
            raise DatasetError(f"{where}: the masks in {folder} differ in size")
        stack = np.zeros((len(masks), *shape), dtype=bool)
        for index, mask in enumerate(masks):
            if mask is not None:
                stack[index] = mask
        return GroundTruth(frame_names=sample.frame_names, masks=stack)

    def extra_scores(self, gt: GroundTruth, pred: np.ndarray) -> dict[str, float]:
        """tIoU and vIoU over the sample's frames."""
        from revseg.evals.temporal_metrics import temporal_scores

        scores = temporal_scores(gt.masks, pred)
        return {"tIoU": scores["tIoU"], "vIoU": scores["vIoU"]}

    def tables(self, scores: Sequence[SampleScore]) -> list[Table]:
        """Static, dynamic and hybrid expressions, then overall: the mean pooled over all three."""
        from revseg.evals.report import Table, mean_row

        rows = [
            mean_row(subset, [s for s in scores if s.subset == subset], self.extra_metrics)
            for subset in SUBSETS.values()
        ]
        rows.append(mean_row("overall", scores, self.extra_metrics))
        notes = [
            "Overall pools the expressions of the three types (eval_overall.py), it is not the mean of the three rows.",
            "tIoU: frames where both ground truth and prediction have the object over frames where either has it; "
            "vIoU: the same with each shared frame weighted by its J. Both are 100 when no frame has the object.",
            "The ReVSeg paper reports no Long-RVOS number: no paper row.",
        ]
        return [Table(f"Long-RVOS {self.split}", self.protocol, rows, metrics=self.metrics, notes=notes)]

    @property
    def protocol(self) -> str:
        """How Long-RVOS is scored."""
        return (
            f"Long-RVOS eval_long_rvos scripts on {self.split}: per expression, J and F (DAVIS) as means over every "
            "listed frame (absent object: empty ground truth), tIoU and vIoU; per type the mean over its "
            "expressions, overall pooled over the static, dynamic and hybrid ones; J&F = (J + F) / 2"
        )
