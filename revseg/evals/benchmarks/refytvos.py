"""Ref-YouTube-VOS (URVOS, ECCV 2020): the ``valid`` split, scored by the benchmark's server.

Layout of the public release (the CodaLab competition's download, organised as ReferFormer's
``docs/data.md`` describes), the data root being ``ref-youtube-vos/``::

    valid/JPEGImages/<video>/<frame>.jpg
    meta_expressions/valid/meta_expressions.json   {"videos": {"<video>": {"frames": [...],
                                                       "expressions": {"<exp_id>": {"exp": str}}}}}
    meta_expressions/test/meta_expressions.json    (optional: the test videos, see below)

The competition's valid expressions file also lists the 305 test videos; ReferFormer (and
everyone after it) drops the videos that appear in ``meta_expressions/test`` to keep the 202
valid ones. We do the same when that file is there, and say so in a note when it is not.
Only the frames the meta file lists (every fifth frame of ``valid``) are segmented.

``valid`` has no local ground truth: ``revseg eval ref-youtube-vos`` writes ``submission.zip``
holding ``Annotations/<video>/<exp_id>/<frame>.png`` (0/255 greyscale PNGs), the layout the
server expects. That server (CodaLab) is reported unavailable since its host's migration, so
``valid`` may not be scorable at all today; every report on ``valid`` says so.

What a user can score locally instead: the ``train`` split, which ships ground truth::

    train/JPEGImages/<video>/<frame>.jpg
    train/Annotations/<video>/<frame>.png          palette PNGs, pixel value = object id
    meta_expressions/train/meta_expressions.json   expressions carry "obj_id" (a string)

An expression's ground truth is the pixels equal to its ``obj_id`` in the listed frames.
Score a part of ``train`` held out of training: pass the videos used for training as
``exclude_videos`` (``--exclude-videos FILE``), and they are listed in the report as
excluded. Numbers on that part are not comparable with published ``valid`` numbers.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import ClassVar

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

VALID_VIDEOS = 202


class RefYouTubeVOS(Benchmark):
    """Ref-YouTube-VOS ``valid`` (202 videos, scored by the server) or ``train`` (local ground truth)."""

    name: ClassVar[str] = "ref-youtube-vos"
    title: ClassVar[str] = "Ref-YouTube-VOS"
    splits: ClassVar[tuple[str, ...]] = ("valid", "train")
    default_split: ClassVar[str] = "valid"
    split_aliases: ClassVar[dict[str, str]] = {"val": "valid"}
    server_splits: ClassVar[frozenset[str]] = frozenset({"valid"})
    submission_prefix: ClassVar[str] = "Annotations"
    paper: ClassVar[tuple[PaperRow, ...]] = (PaperRow("valid", J=71.1, F=75.2, JF=73.1),)

    def read_samples(self) -> Iterator[Sample]:
        """One sample per expression of the valid videos (test videos removed when the test meta is present)."""
        meta_path = self.root / "meta_expressions" / self.split / "meta_expressions.json"
        videos = meta_videos(meta_path, f"Ref-YouTube-VOS {self.split} meta expressions")
        test_path = self.root / "meta_expressions" / "test" / "meta_expressions.json"
        if self.split == "valid":
            self.notes.append(
                "The Ref-YouTube-VOS evaluation server (CodaLab) is reported unavailable since its host's "
                "migration: submission.zip may have nowhere to go. To score locally, evaluate a part of the "
                "train split held out of training (--split train, training videos passed to --exclude-videos)."
            )
        if self.split == "valid" and test_path.is_file():
            test_videos = set(meta_videos(test_path, "Ref-YouTube-VOS test meta expressions"))
            videos = {k: v for k, v in videos.items() if k not in test_videos}
        elif self.split == "valid":
            self.notes.append(
                f"{test_path} not found: every video of the valid meta file is used ({len(videos)}); the "
                f"server's valid split has {VALID_VIDEOS} (the file also lists the test videos)."
            )
        images = self.root / self.split / "JPEGImages"
        for video_id, entry in videos.items():
            where = f"meta_expressions/{self.split}/meta_expressions.json, video {video_id!r}"
            video = safe_name(video_id, where, "video id", nested=True)
            frames = self.frame_files_for(inside(images, video), entry.get("frames"), where)
            for exp_id, expression in expressions_of(video, entry, meta_path).items():
                here = f"{where}, expression {exp_id!r}"
                obj_id = expression.get("obj_id") if isinstance(expression, dict) else None
                if self.has_ground_truth and not str(obj_id).isdigit():
                    raise DatasetError(f"{here}: obj_id must be an object id (a number), got {obj_id!r}")
                yield Sample(
                    video=video,
                    expression=safe_name(exp_id, here, "expression id"),
                    query=expression_text(expression, here),
                    subset="all",
                    frames_dir=inside(images, video),
                    frame_files=frames,
                    info={"obj_id": int(str(obj_id))} if self.has_ground_truth else {},
                )

    def ground_truth(self, sample: Sample) -> GroundTruth:
        """``train``: the pixels of ``Annotations/<video>/<frame>.png`` equal to the expression's ``obj_id``."""
        if not self.has_ground_truth:
            return super().ground_truth(sample)
        from PIL import Image

        folder = inside(self.root / self.split / "Annotations", sample.video)
        masks = []
        for name in sample.frame_names:
            path = folder / f"{name}.png"
            try:
                with Image.open(path) as image:
                    masks.append(np.asarray(image) == sample.info["obj_id"])
            except OSError as exc:
                raise DatasetError(f"Ref-YouTube-VOS {sample.key}: cannot read annotation {path}: {exc}") from exc
        if len({m.shape for m in masks}) != 1 or masks[0].ndim != 2:
            raise DatasetError(f"Ref-YouTube-VOS {sample.key}: annotations in {folder} differ in size or are not 2-D")
        return GroundTruth(frame_names=sample.frame_names, masks=np.stack(masks))

    @property
    def protocol(self) -> str:
        """How the split is scored."""
        if self.split == "valid":
            return "scored by the benchmark's server (reported unavailable): no local ground truth"
        return (
            "train split with ground truth (a held-out part; not comparable with valid numbers): mean over "
            "expressions of per-frame-mean J and F on the listed frames"
        )
