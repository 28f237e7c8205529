"""MeViS v1 (ICCV 2023) and v2 (TPAMI 2025, the PVUW 2026 track): motion expressions; ``valid_u`` scored locally.

Layout of the public releases (github.com/henghuiding/MeViS; v2 on the Hugging Face Hub as
``FudanCVL/MeViSv2``), the data root being ``mevis/``::

    train/    JPEGImages/<video>/<frame>.jpg, <meta file>, mask_dict.json
    valid_u/  JPEGImages/<video>/<frame>.jpg, <meta file>, mask_dict.json
    valid/    JPEGImages/<video>/<frame>.jpg, <meta file>                  (no ground truth)

The meta file is ``meta_expressions.json`` in v1. v2 renamed it: ``meta_expressions_v2.json``
in ``train`` and ``valid_u``, ``meta_expressions_v2_release.json`` in ``valid`` (the names
the Hub release lists and v2 users' loaders read; no official v2 scoring script is public).
Either way it is ``{"videos": {"<video>": {"frames": [...], "expressions": {"<exp_id>":
{"exp": str, "obj_id": [...], "anno_id": [...]}}}}}`` and ``mask_dict.json`` maps each
``anno_id`` to one COCO RLE (or null) per frame of the video's ``frames`` list.
An expression's ground truth is the union of its ``anno_id`` masks (MeViS' own
``eval_mevis.py``); the score is the mean over expressions of J and F, J&F their mean.

``valid_u`` has local ground truth; ``valid`` is scored by the benchmark's server:
``revseg eval mevis --split valid`` writes ``submission.zip`` with
``<video>/<exp_id>/<frame>.png`` at its top level (0/255 greyscale PNGs). Numbers on the two
splits differ by several points, so every table names its split.

Versions. v2 changes the splits (valid_u 907 expressions against v1's 793, valid 2,523
against 2,236, train 27,502 against 23,051) and adds no-target expressions (no object matches: ``anno_id`` empty, the
ground truth empty on every frame) and motion-reasoning ones. Every published MeViS number,
the paper's 59.8 J&F included, is on v1, so the version is part of every result: it is
detected from the files, in this order, and can be forced (``version="v1"`` or ``"v2"``,
``--dataset-version`` on the command line):

1. the meta file's name: a ``meta_expressions_v2*.json`` is v2 (when it sits beside a
   ``meta_expressions.json``, the v2 file is read and a note says how to read the other);
2. the split's expression count, when it is one of the published counts above;
3. otherwise, a split with ground truth that has a no-target expression is v2, one without is v1;
4. otherwise (``valid`` with an unpublished count: no ``anno_id`` to look at) v1 is assumed,
   and the report says so.

A no-target expression is one whose ``anno_id`` list is empty: v2 marks no other field, and
the loaders and local scorers of v2 users select no-target expressions the same way.

The version and how it was found are in every report and in every trajectory of the run.
The paper's row is shown only beside v1; on v2 the report adds the no-target table
(N-acc., T-acc., false "no target" rate, J&F with and without no-target expressions;
:func:`revseg.evals.report.no_target_table`). No-target expressions of v2 are in the main
J&F, scored against their empty ground truth (an empty answer scores 100), as the v2
protocol does; a row without them is beside it.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

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

if TYPE_CHECKING:
    from revseg.evals.report import Table
    from revseg.evals.scoring import SampleScore

V1_META = "meta_expressions.json"
V2_META = ("meta_expressions_v2.json", "meta_expressions_v2_release.json")
"""v2's meta file names: ``train`` and ``valid_u`` ship the first, ``valid`` the second."""

PUBLISHED_COUNTS: dict[tuple[str, int], str] = {
    ("valid_u", 793): "v1",
    ("valid", 2236): "v1",
    ("train", 23051): "v1",
    ("valid_u", 907): "v2",
    ("valid", 2523): "v2",
    ("train", 27502): "v2",
}
"""(split, number of expressions) -> version, from the two releases' READMEs and papers."""


class MeViS(Benchmark):
    """MeViS v1 or v2: ``valid_u`` (local ground truth), ``valid`` (server) or ``train``."""

    name: ClassVar[str] = "mevis"
    title: ClassVar[str] = "MeViS"
    splits: ClassVar[tuple[str, ...]] = ("valid_u", "valid", "train")
    default_split: ClassVar[str] = "valid_u"
    server_splits: ClassVar[frozenset[str]] = frozenset({"valid"})
    paper: ClassVar[tuple[PaperRow, ...]] = (
        PaperRow("valid (v1)", J=56.1, F=63.4, JF=59.8, note="the paper's number is on MeViS v1 valid (server)"),
    )
    paper_split: ClassVar[str | None] = "valid"
    versions: ClassVar[tuple[str, ...]] = ("v1", "v2")

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.split_root = self.root / self.split
        self.meta_path = self._find_meta()
        self.masks = MaskDict(self.split_root / "mask_dict.json", f"MeViS {self.split}/mask_dict.json")
        if self.version is None and self.meta_path.is_file():
            self.detect_version(meta_videos(self.meta_path, f"MeViS {self.split} meta expressions"))

    def _find_meta(self) -> Path:
        """The split's meta file: v2's name (the version follows from it) unless v1 is forced, else v1's.

        A forced v1 reads ``meta_expressions.json``, or the v2 file when it is the only one.
        """
        v1_path = self.split_root / V1_META
        v2_path = next((self.split_root / n for n in V2_META if (self.split_root / n).is_file()), None)
        if v2_path is None or (self.version == "v1" and v1_path.is_file()):
            return v1_path
        if self.version is None:
            self.version, self.version_source = "v2", f"detected: file name {v2_path.name}"
            if v1_path.is_file():
                self.notes.append(
                    f"MeViS {self.split} has both {V1_META} and {v2_path.name}: the v2 file is read; pass "
                    "the version v1 to read the other."
                )
        return v2_path

    def detect_version(self, videos: dict[str, Any]) -> str:
        """Set (unless forced) and return the version the split's meta expressions file belongs to."""
        if self.version is not None:
            return self.version
        count = sum(len(v.get("expressions") or {}) for v in videos.values() if isinstance(v, dict))
        published = PUBLISHED_COUNTS.get((self.split, count))
        if published is not None:
            self.version, self.version_source = published, f"detected: {count} expressions in {self.split}"
        elif self.has_ground_truth:
            no_target = any(
                isinstance(e, dict) and not e.get("anno_id")
                for v in videos.values()
                if isinstance(v, dict)
                for e in (v.get("expressions") or {}).values()
            )
            self.version = "v2" if no_target else "v1"
            self.version_source = (
                "detected: no-target expressions (empty anno_id) present"
                if no_target
                else "detected: no no-target expression"
            )
        else:
            self.version, self.version_source = "v1", f"assumed: {count} expressions is not a published count"
            self.notes.append(
                f"MeViS version not detectable from {self.split}'s files ({count} expressions, no ground truth): "
                "v1 assumed; pass the version explicitly if this is v2."
            )
        return self.version

    def read_samples(self) -> Iterator[Sample]:
        """One sample per expression of the split's meta file; v2 no-target ones in subset ``no_target``."""
        if not self.meta_path.is_file():
            names = " or ".join((V1_META, *V2_META))
            raise DatasetError(f"MeViS {self.split}: no meta expressions file in {self.split_root} (expected {names})")
        videos = meta_videos(self.meta_path, f"MeViS {self.split} meta expressions")
        version = self.detect_version(videos)
        images = self.split_root / "JPEGImages"
        for video_id, entry in videos.items():
            where = f"{self.split}/{self.meta_path.name}, video {video_id!r}"
            video = safe_name(video_id, where, "video id", nested=True)
            frames = self.frame_files_for(inside(images, video), entry.get("frames"), where)
            for exp_id, expression in expressions_of(video, entry, self.meta_path).items():
                here = f"{where}, expression {exp_id!r}"
                anno_ids = expression.get("anno_id") if isinstance(expression, dict) else None
                if self.has_ground_truth and not isinstance(anno_ids, list):
                    raise DatasetError(f"{here}: anno_id must be a list")
                if version == "v1" and self.has_ground_truth and not anno_ids:
                    raise DatasetError(f"{here}: MeViS v1 has no no-target expressions, but anno_id is empty")
                no_target = version == "v2" and self.has_ground_truth and not anno_ids
                yield Sample(
                    video=video,
                    expression=safe_name(exp_id, here, "expression id"),
                    query=expression_text(expression, here),
                    subset="no_target" if no_target else "all",
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

    def tables(self, scores: Sequence[SampleScore]) -> list[Table]:
        """v1: one row beside the paper's (v1) row. v2: all, without no-target, and the no-target table."""
        from revseg.evals.report import Table, mean_row, no_target_table, paper_rows

        title = f"MeViS {self.version} {self.split}"
        if self.version != "v2":
            notes = []
            if self.split != self.paper_split:
                notes.append(
                    f"The paper's row is on MeViS v1 {self.paper_split}, ours on v1 {self.split}: the splits "
                    "differ, so the numbers are not directly comparable."
                )
            rows = [mean_row("all", scores), *paper_rows(self.paper)]
            return [Table(title, self.protocol, rows, metrics=self.metrics, notes=notes)]
        with_target = [s for s in scores if s.subset != "no_target"]
        rows = [mean_row("all", scores), mean_row("without no-target", with_target)]
        note = (
            "Every published MeViS number, the paper's 59.8 J&F included, is on v1: no paper row beside v2. "
            "No-target expressions are scored against their empty ground truth (an empty answer scores 100)."
        )
        main = Table(title, self.protocol, rows, metrics=self.metrics, notes=[note])
        return [main, no_target_table(f"{title}: no-target expressions", scores)]

    @property
    def protocol(self) -> str:
        """How MeViS is scored."""
        return (
            f"MeViS {self.version or ''} eval_mevis.py on {self.split}: mean over expressions of per-frame-mean J "
            "and F (ground truth: union of the expression's objects; empty for a v2 no-target expression)"
        ).replace("MeViS  ", "MeViS ")
