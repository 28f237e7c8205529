"""MeViS (ICCV 2023): motion expressions, often referring to several objects; ``valid_u`` scored locally.

Layout of the public release (github.com/henghuiding/MeViS), the data root being ``mevis/``::

    train/    JPEGImages/<video>/<frame>.jpg, meta_expressions.json, mask_dict.json
    valid_u/  JPEGImages/<video>/<frame>.jpg, meta_expressions.json, mask_dict.json
    valid/    JPEGImages/<video>/<frame>.jpg, meta_expressions.json        (no ground truth)

``meta_expressions.json`` is ``{"videos": {"<video>": {"frames": [...], "expressions":
{"<exp_id>": {"exp": str, "obj_id": [...], "anno_id": [...]}}}}}`` and ``mask_dict.json``
maps each ``anno_id`` to one COCO RLE (or null) per frame of the video's ``frames`` list.
An expression's ground truth is the union of its ``anno_id`` masks (MeViS' own
``eval_mevis.py``); the score is the mean over expressions of J and F, J&F their mean.

``valid_u`` (50 videos) has local ground truth; ``valid`` (140 videos) is scored by the
benchmark's CodaLab server: ``revseg eval mevis --split valid`` writes ``submission.zip``
with ``<video>/<exp_id>/<frame>.png`` at its top level (0/255 greyscale PNGs, what the
reference submissions hold). Numbers on the two splits differ by several points, so every
table names its split; the paper's 59.8 J&F is on ``valid``.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any, ClassVar

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
from revseg.evals.benchmarks._rle import MaskDict, first_size, image_shape, union_masks


class MeViS(Benchmark):
    """MeViS ``valid_u`` (local ground truth), ``valid`` (server) or ``train``."""

    name: ClassVar[str] = "mevis"
    title: ClassVar[str] = "MeViS"
    splits: ClassVar[tuple[str, ...]] = ("valid_u", "valid", "train")
    default_split: ClassVar[str] = "valid_u"
    server_splits: ClassVar[frozenset[str]] = frozenset({"valid"})
    paper: ClassVar[tuple[PaperRow, ...]] = (
        PaperRow("valid", J=56.1, F=63.4, JF=59.8, note="the paper's number is on valid (server)"),
    )
    paper_split: ClassVar[str | None] = "valid"

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.split_root = self.root / self.split
        self.meta_path = self.split_root / "meta_expressions.json"
        self.masks = MaskDict(self.split_root / "mask_dict.json", f"MeViS {self.split}/mask_dict.json")

    def read_samples(self) -> Iterator[Sample]:
        """One sample per expression of ``<split>/meta_expressions.json``."""
        videos = meta_videos(self.meta_path, f"MeViS {self.split} meta expressions")
        images = self.split_root / "JPEGImages"
        for video_id, entry in videos.items():
            where = f"{self.split}/meta_expressions.json, video {video_id!r}"
            video = safe_name(video_id, where, "video id", nested=True)
            frames = self.frame_files_for(inside(images, video), entry.get("frames"), where)
            for exp_id, expression in expressions_of(video, entry, self.meta_path).items():
                here = f"{where}, expression {exp_id!r}"
                anno_ids = expression.get("anno_id") if isinstance(expression, dict) else None
                if self.has_ground_truth and not isinstance(anno_ids, list):
                    raise DatasetError(f"{here}: anno_id must be a list")
                yield Sample(
                    video=video,
                    expression=safe_name(exp_id, here, "expression id"),
                    query=expression_text(expression, here),
                    subset="all",
                    frames_dir=inside(images, video),
                    frame_files=frames,
                    info={"anno_id": anno_ids or [], "obj_id": expression.get("obj_id")},
                )

    def ground_truth(self, sample: Sample) -> GroundTruth:
        """Union of the expression's ``anno_id`` masks on every frame."""
        if not self.has_ground_truth:
            return super().ground_truth(sample)
        frames = sample.frame_names
        where = f"MeViS {self.split} {sample.key}"
        tracks = self.masks.tracks(sample.info["anno_id"], len(frames), where)
        shape = first_size(tracks) or image_shape(sample.frames_dir / sample.frame_files[0], where)
        return GroundTruth(frame_names=frames, masks=union_masks(tracks, len(frames), shape, where))

    @property
    def protocol(self) -> str:
        """How MeViS is scored."""
        return (
            f"MeViS eval_mevis.py on {self.split}: mean over expressions of per-frame-mean J and F "
            "(ground truth: union of the expression's objects)"
        )
