"""ReVOS (VISA, ECCV 2024): referring, reasoning and no-target expressions; J, F, J&F, R and A.

Layout of the public release (github.com/cilinyan/ReVOS-api), the data root being ``ReVOS/``::

    JPEGImages/<video>/<frame>.jpg       every frame of the train and valid videos
    mask_dict.json                       {"<anno_id>": [RLE or null, one per frame], ...}
    mask_dict_foreground.json            {"<video>": {"masks_rle": [RLE, one per frame]}, ...}
    meta_expressions_train_.json         {"videos": {"<video>": {"frames": [...], "expressions": {
    meta_expressions_valid_.json             "<exp_id>": {"exp": str, "obj_id": [...], "anno_id": [...],
                                                          "type_id": 0 | 1 | 2}}}}}

``type_id`` 0 is a referring expression, 1 a reasoning one, 2 a no-target one (no object
matches; ``anno_id`` empty). Video ids may contain ``/``; they are checked to stay under
the root like every name. An expression's ground truth is the union of its ``anno_id``
masks; ``mask_dict_foreground.json`` holds, per frame, the union of every annotated
object (a list of RLEs is unioned).

Aggregation, as VISA's ``tools/eval_revos.py`` (which every peer copies) does it:

- J, F, A, R per expression are means over its frames; J&F = (J + F) / 2.
- Referring and reasoning subsets: the mean over their expressions. **Overall = the mean of
  the referring mean and the reasoning mean**, not a mean pooled over expressions.
- No-target expressions are kept out of J&F (VISA scores them but reports only the two
  subsets) and reported on their own (:func:`revseg.evals.report.no_target_table`): N-acc.
  and T-acc. as GREx defines them (the share of no-target expressions answered with a
  prediction empty on every frame; the share of expressions with a target answered with a
  non-empty one), the false "no target" rate, and J&F with and without them. VISA's paper
  defines no no-target metric, so this is our choice; a failed run is not an answer.
- R (robustness) per frame = max(1 - FP / (foreground + 1e-6), 0) with FP the predicted
  pixels outside the ground truth and foreground the pixels of the foreground mask; A
  (accuracy) per frame = the share of pixels where prediction and ground truth agree. Both on
  binary masks. VISA's script multiplies the raw PNG values instead (``(1 - gt) * pred``
  with gt a per-pixel object count and pred 0/255 or an object id, and ``gt == pred`` on the
  raw values), so its R and A depend on how masks were saved; they equal ours only for
  0/1 masks without overlapping objects. We also count foreground pixels once where VISA
  sums overlapping objects.

Some ReVOS videos have masks that drift from their frames (reported upstream); pass their
ids as ``exclude_videos`` (``--exclude-videos FILE`` on the command line) and they are
listed in the report as excluded.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import TYPE_CHECKING, Any, ClassVar

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
    safe_name,
)
from revseg.evals.benchmarks._rle import MaskDict, decode_entry, first_size, image_shape, rle_size, union_masks

if TYPE_CHECKING:
    from revseg.evals.report import Table
    from revseg.evals.scoring import SampleScore

SUBSETS = {0: "referring", 1: "reasoning", 2: "no_target"}
R_EPSILON = 1e-6  # VISA's get_r2vos_robustness: 1 - neg / (pos + 1e-6)


class ReVOS(Benchmark):
    """ReVOS valid (or train): referring, reasoning and no-target expressions over 1,042 videos."""

    name: ClassVar[str] = "revos"
    title: ClassVar[str] = "ReVOS"
    splits: ClassVar[tuple[str, ...]] = ("valid", "train")
    default_split: ClassVar[str] = "valid"
    split_aliases: ClassVar[dict[str, str]] = {"val": "valid"}
    extra_metrics: ClassVar[tuple[str, ...]] = ("R", "A")
    paper: ClassVar[tuple[PaperRow, ...]] = (
        PaperRow("referring", JF=65.7),
        PaperRow("reasoning", JF=58.6),
        PaperRow("overall", JF=62.1),
    )
    known_bad_videos: ClassVar[tuple[str, ...]] = ()
    """Videos to leave out by default; empty: pass the upstream-reported ones via ``exclude_videos``."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.exclude_videos = self.exclude_videos | set(self.known_bad_videos)
        self.meta_path = self.root / f"meta_expressions_{self.split}_.json"
        self.masks = MaskDict(self.root / "mask_dict.json", "ReVOS mask_dict.json")
        self.foreground = MaskDict(self.root / "mask_dict_foreground.json", "ReVOS mask_dict_foreground.json")

    def read_samples(self) -> Iterator[Sample]:
        """One sample per expression of the split's ``meta_expressions_<split>_.json``."""
        videos = meta_videos(self.meta_path, "ReVOS meta expressions")
        images = self.root / "JPEGImages"
        for video_id, entry in videos.items():
            where = f"{self.meta_path.name}, video {video_id!r}"
            video = safe_name(video_id, where, "video id", nested=True)
            frames = self.frame_files_for(inside(images, video), entry.get("frames"), where)
            for exp_id, expression in expressions_of(video, entry, self.meta_path).items():
                here = f"{where}, expression {exp_id!r}"
                type_id = expression.get("type_id") if isinstance(expression, dict) else None
                if type_id not in SUBSETS:
                    raise DatasetError(f"{here}: type_id must be 0, 1 or 2, got {type_id!r}")
                anno_ids = expression.get("anno_id") or []
                if not isinstance(anno_ids, list):
                    raise DatasetError(f"{here}: anno_id must be a list")
                yield Sample(
                    video=video,
                    expression=safe_name(exp_id, here, "expression id"),
                    query=expression_text(expression, here),
                    subset=SUBSETS[type_id],
                    frames_dir=inside(images, video),
                    frame_files=frames,
                    info={"type_id": type_id, "anno_id": anno_ids, "obj_id": expression.get("obj_id")},
                )

    def ground_truth(self, sample: Sample) -> GroundTruth:
        """Union of the expression's ``anno_id`` masks, plus the video's foreground mask."""
        frames = sample.frame_names
        where = f"ReVOS {sample.key}"
        tracks = self.masks.tracks(sample.info["anno_id"], len(frames), where)
        fg_entry = self.foreground.data.get(sample.video)
        fg_track = fg_entry.get("masks_rle") if isinstance(fg_entry, dict) else None
        if not isinstance(fg_track, list) or len(fg_track) != len(frames):
            raise DatasetError(
                f"{where}: mask_dict_foreground.json has no 'masks_rle' list of {len(frames)} frames for this video"
            )
        shape = first_size(tracks) or next((s for s in map(rle_size, fg_track) if s), None)
        if shape is None:
            shape = image_shape(sample.frames_dir / sample.frame_files[0], where)
        masks = union_masks(tracks, len(frames), shape, where)
        foreground = np.stack(
            [decode_entry(rle, shape, f"{where} foreground, frame {t}") for t, rle in enumerate(fg_track)]
        )
        return GroundTruth(frame_names=frames, masks=masks, foreground=foreground)

    def extra_scores(self, gt: GroundTruth, pred: np.ndarray) -> dict[str, float]:
        """R and A, frame means, on binary masks."""
        assert gt.foreground is not None
        pixels = gt.masks.shape[1] * gt.masks.shape[2]
        false_positive = (pred & ~gt.masks).sum(axis=(1, 2))
        foreground = gt.foreground.sum(axis=(1, 2))
        robustness = np.maximum(1.0 - false_positive / (foreground + R_EPSILON), 0.0)
        accuracy = (pred == gt.masks).sum(axis=(1, 2)) / pixels
        return {"R": float(np.mean(robustness)), "A": float(np.mean(accuracy))}

    def tables(self, scores: Sequence[SampleScore]) -> list[Table]:
        """Referring, reasoning, overall (mean of the two), the paper's rows; no-target expressions apart."""
        from revseg.evals.report import Table, mean_of_rows, mean_row, no_target_table, paper_rows

        referring = mean_row("referring", [s for s in scores if s.subset == "referring"], self.extra_metrics)
        reasoning = mean_row("reasoning", [s for s in scores if s.subset == "reasoning"], self.extra_metrics)
        overall = mean_of_rows("overall", [referring, reasoning], self.metrics)
        main = Table(
            title=f"ReVOS {self.split}",
            protocol="VISA eval_revos.py: per-expression frame means; overall = mean of the referring and "
            "reasoning means (not pooled); R and A on binary masks",
            rows=[referring, reasoning, overall, *paper_rows(self.paper)],
            metrics=self.metrics,
            notes=[
                "R = per frame max(1 - FP pixels / foreground pixels, 0); VISA's script multiplies raw PNG "
                "values, so its R (and A) depend on how masks were saved: compare R only with that in mind.",
                "No-target expressions (type_id 2) are not in J&F; see the no-target table.",
            ],
        )
        table = no_target_table(f"ReVOS {self.split}: no-target expressions", scores)
        return [main, table]
