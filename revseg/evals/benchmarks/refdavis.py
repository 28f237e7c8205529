"""Ref-DAVIS17 (Khoreva et al., ACCV 2018) on the DAVIS 2017 val videos, under both protocols papers use.

Two layouts are read, the data root being ``ref-davis/``:

1. ReferFormer's converted layout (what most RVOS code bases use; ``tools/data/
   convert_davis_to_ytvos.py``)::

       valid/JPEGImages/<video>/<frame>.jpg
       valid/Annotations/<video>/<frame>.png           DAVIS palette PNGs (from Annotations_unsupervised)
       meta_expressions/valid/meta_expressions.json    {"videos": {"<video>": {"frames": [...],
                                                          "expressions": {"<n>": {"exp": str, "obj_id": "1"}}}}}

2. The official downloads side by side (used when the converted meta file is absent)::

       DAVIS/ImageSets/2017/val.txt, DAVIS/JPEGImages/480p/<video>/, DAVIS/Annotations_unsupervised/480p/<video>/
       davis_text_annotations/Davis17_annot1.txt, Davis17_annot1_full_video.txt,
                              Davis17_annot2.txt, Davis17_annot2_full_video.txt   (lines: video obj_id "text")

   from which the expressions are built exactly as the conversion script does (its video-name
   fixes, annotator 2's files read as latin-1, objects sorted by ``obj_id`` as text, and per
   object four expressions: annotator 1 first-frame, annotator 1 full-video, annotator 2
   first-frame, annotator 2 full-video, numbered 0, 1, 2, ...).

Expression ``n`` belongs to annotator ``n % 4`` (in that order) and to the video's object
``n // 4``, as ReferFormer's ``inference_davis.py`` reads them. Object ids are the palette
indices of the annotation PNGs (255, DAVIS' void label, counts as background, as in the
official evaluation).

Protocols, both reported and labelled:

- **per expression** (VISA, Sa2VA): each expression's prediction against its object's masks
  (``annotation == obj_id``) on every annotated frame; mean over all expressions of J and F.
- **per annotator, DAVIS-2017 unsupervised** (ReferFormer, VideoLISA): for each of the four
  annotators, the predictions of that annotator's expressions are merged into one label map
  per frame (object k gets label k + 1; where two overlap, the earlier object wins, which is
  ReferFormer's argmax over binary masks), and scored with the official ``davis2017-evaluation``
  unsupervised protocol: predicted objects are matched to ground-truth objects (the labels of
  the first annotation frame) by Hungarian assignment on the J&F of each pair, unmatched
  ground truth gets an empty mask, J and F are means over all frames (the first and last
  included) and then over objects. The four annotators' numbers are averaged.

A failed or missing expression scores 0 under the first protocol; under the second its
object is an empty mask in the merged map (the protocol has no other way to score it); both
are counted in the report's failure table.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
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
    natural_key,
    safe_name,
)

if TYPE_CHECKING:
    from revseg.evals.report import Table
    from revseg.evals.scoring import SampleScore

ANNOTATORS = (
    "annotator 1, first frame",
    "annotator 1, full video",
    "annotator 2, first frame",
    "annotator 2, full video",
)
TEXT_FILES = (
    ("Davis17_annot1.txt", "utf-8"),
    ("Davis17_annot1_full_video.txt", "utf-8"),
    ("Davis17_annot2.txt", "latin-1"),
    ("Davis17_annot2_full_video.txt", "latin-1"),
)
NAME_FIXES = {"clasic-car": "classic-car", "dog-scale": "dogs-scale", "motor-bike": "motorbike"}
VOID = 255
PAPER_NOTE = "the paper does not say which protocol its Ref-DAVIS17 number uses"


class RefDAVIS17(Benchmark):
    """Ref-DAVIS17 val: 30 videos, four expressions per object (two annotators x first-frame / full-video)."""

    name: ClassVar[str] = "ref-davis17"
    title: ClassVar[str] = "Ref-DAVIS17"
    splits: ClassVar[tuple[str, ...]] = ("valid",)
    default_split: ClassVar[str] = "valid"
    split_aliases: ClassVar[dict[str, str]] = {"val": "valid"}
    paper: ClassVar[tuple[PaperRow, ...]] = (PaperRow("val", J=77.4, F=84.1, JF=80.8, note=PAPER_NOTE),)

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._labels: OrderedDict[str, tuple[tuple[str, ...], np.ndarray]] = OrderedDict()
        self._lock = threading.Lock()
        converted = self.root / "meta_expressions" / self.split / "meta_expressions.json"
        official = self.root / "davis_text_annotations"
        if converted.is_file():
            self.layout = "converted"
            self.images = self.root / self.split / "JPEGImages"
            self.annotations = self.root / self.split / "Annotations"
        elif official.is_dir() and (self.root / "DAVIS").is_dir():
            self.layout = "official"
            self.images = self.root / "DAVIS" / "JPEGImages" / "480p"
            self.annotations = self.root / "DAVIS" / "Annotations_unsupervised" / "480p"
        else:
            raise DatasetError(
                f"Ref-DAVIS17: {self.root} holds neither {converted.relative_to(self.root)} (ReferFormer's layout) "
                "nor DAVIS/ with davis_text_annotations/ (the official downloads)"
            )
        self.meta_path = converted

    # --- samples -----------------------------------------------------------------------------

    def read_samples(self) -> Iterator[Sample]:
        """Four samples per object of every val video, numbered like ReferFormer's meta file."""
        videos = meta_videos(self.meta_path) if self.layout == "converted" else self._videos_from_text()
        for video_id, entry in videos.items():
            where = f"Ref-DAVIS17 video {video_id!r}"
            video = safe_name(video_id, where, "video id")
            frames = self.frame_files_for(inside(self.images, video), entry.get("frames"), where)
            for position, (exp_id, expression) in enumerate(expressions_of(video, entry, self.meta_path).items()):
                here = f"{where}, expression {exp_id!r}"
                obj_id = expression.get("obj_id") if isinstance(expression, dict) else None
                try:
                    object_id = int(str(obj_id))
                except ValueError:
                    raise DatasetError(f"{here}: obj_id must be an object number, got {obj_id!r}") from None
                yield Sample(
                    video=video,
                    expression=safe_name(exp_id, here, "expression id"),
                    query=expression_text(expression, here),
                    subset=ANNOTATORS[position % 4],
                    frames_dir=inside(self.images, video),
                    frame_files=frames,
                    info={"obj_id": object_id, "annotator": position % 4, "object_index": position // 4},
                )

    def _videos_from_text(self) -> dict[str, Any]:
        """The val videos' expressions from the official text files, as ReferFormer's conversion builds them."""
        split_file = self.root / "DAVIS" / "ImageSets" / "2017" / "val.txt"
        try:
            val = [line.strip() for line in split_file.read_text().splitlines() if line.strip()]
        except OSError as exc:
            raise DatasetError(f"cannot read the DAVIS val list {split_file}: {exc.strerror or exc}") from exc
        texts = [self._read_text(self.root / "davis_text_annotations" / name, enc) for name, enc in TEXT_FILES]
        videos: dict[str, Any] = {}
        for video in val:
            expressions: dict[str, Any] = {}
            per_file = [text.get(video, []) for text in texts]
            for quadruple in zip(*per_file, strict=False):
                for item in quadruple:
                    expressions[str(len(expressions))] = item
            videos[video] = {"expressions": expressions}
        return videos

    @staticmethod
    def _read_text(path: Path, encoding: str) -> dict[str, list[dict[str, str]]]:
        try:
            lines = path.read_text(encoding=encoding).splitlines()
        except (OSError, UnicodeDecodeError) as exc:
            raise DatasetError(f"cannot read Ref-DAVIS17 text annotations {path}: {exc}") from exc
        videos: dict[str, list[dict[str, str]]] = {}
        for number, raw in enumerate(lines, start=1):
            line = raw.strip()
            if not line:
                continue
            words = line.split()
            if len(words) < 3:
                raise DatasetError(f"{path}, line {number}: expected 'video obj_id \"text\"', got {line!r}")
            video = NAME_FIXES.get(words[0], words[0])
            videos.setdefault(video, []).append({"exp": " ".join(words[2:])[1:-1], "obj_id": words[1]})
        return {video: sorted(items, key=lambda e: e["obj_id"]) for video, items in videos.items()}

    # --- ground truth --------------------------------------------------------------------------

    def video_labels(self, video: str) -> tuple[tuple[str, ...], np.ndarray]:
        """A video's annotation frame names and (T, H, W) uint8 object ids (void 255 set to 0); cached."""
        with self._lock:
            cached = self._labels.get(video)
            if cached is not None:
                self._labels.move_to_end(video)
                return cached
        folder = inside(self.annotations, video)
        files = sorted(
            (p for p in folder.glob("*.png") if not p.name.startswith(".")), key=lambda p: natural_key(p.name)
        )
        if not files:
            raise DatasetError(f"Ref-DAVIS17: no annotation PNGs in {folder}")
        from PIL import Image, UnidentifiedImageError

        frames = []
        for file in files:
            try:
                with Image.open(file) as image:
                    if image.mode not in ("P", "L"):
                        raise DatasetError(f"{file}: expected a palette (object id) PNG, got mode {image.mode}")
                    frames.append(np.array(image, dtype=np.uint8))
            except (OSError, UnidentifiedImageError) as exc:
                raise DatasetError(f"{file}: unreadable annotation ({exc})") from exc
            if frames[-1].shape != frames[0].shape:
                raise DatasetError(f"{file}: annotation size differs from {files[0].name}")
        labels = np.stack(frames)
        labels[labels == VOID] = 0
        result = (tuple(p.stem for p in files), labels)
        with self._lock:
            self._labels[video] = result
            while len(self._labels) > 4:
                self._labels.popitem(last=False)
        return result

    def ground_truth(self, sample: Sample) -> GroundTruth:
        """The expression's object on every annotated frame."""
        names, labels = self.video_labels(sample.video)
        return GroundTruth(frame_names=names, masks=labels == sample.info["obj_id"])

    # --- tables --------------------------------------------------------------------------------

    @property
    def protocol(self) -> str:
        """The per-expression protocol."""
        return "per expression (VISA, Sa2VA): mean over expressions of per-frame-mean J and F against the object"

    def tables(self, scores: Sequence[SampleScore]) -> list[Table]:
        """The per-expression table (all expressions, then each annotator's expressions)."""
        from revseg.evals.report import Table, mean_row, paper_rows

        rows = [mean_row("all expressions", scores)]
        rows += [mean_row(name, [s for s in scores if s.subset == name]) for name in ANNOTATORS]
        rows += paper_rows(self.paper)
        return [Table(f"Ref-DAVIS17 {self.split}, per expression", self.protocol, rows, notes=[PAPER_NOTE])]

    def protocol_tables(self, samples: Sequence[Sample], predictions: Path, statuses: Mapping[str, str]) -> list[Table]:
        """The per-annotator table under the DAVIS-2017 unsupervised protocol."""
        from revseg.evals.report import Row, Table, mean_of_rows, paper_rows

        per_annotator: list[tuple[list[float], list[float]]] = [([], []) for _ in ANNOTATORS]
        by_video: dict[str, list[Sample]] = {}
        for sample in samples:
            by_video.setdefault(sample.video, []).append(sample)
        for video, group in by_video.items():
            names, labels = self.video_labels(video)
            num_gt = int(labels[0].max())
            gt_objects = [labels == k for k in range(1, num_gt + 1)]
            for annotator in range(len(ANNOTATORS)):
                chosen = sorted(
                    (s for s in group if s.info["annotator"] == annotator), key=lambda s: s.info["object_index"]
                )
                merged = self._merged_prediction(chosen, predictions, statuses, names, labels.shape[1:])
                j_means, f_means = davis_unsupervised(gt_objects, merged)
                per_annotator[annotator][0].extend(j_means)
                per_annotator[annotator][1].extend(f_means)
        rows = []
        for name, (j_values, f_values) in zip(ANNOTATORS, per_annotator, strict=True):
            j = 100.0 * float(np.mean(j_values)) if j_values else None
            f = 100.0 * float(np.mean(f_values)) if f_values else None
            jf = None if j is None or f is None else (j + f) / 2
            rows.append(Row(name, len(j_values), {"J": j, "F": f, "J&F": jf}))
        mean = mean_of_rows("mean of the 4 annotators", rows, ("J", "F", "J&F"))
        mean.n = rows[0].n
        protocol = (
            "per annotator, DAVIS-2017 unsupervised (ReferFormer, VideoLISA): each annotator's predictions merged "
            "into one label map, objects matched by Hungarian assignment on J&F, all frames, mean over objects; "
            "the 4 annotators averaged (n = ground-truth objects)"
        )
        table = Table(
            f"Ref-DAVIS17 {self.split}, per annotator (DAVIS unsupervised)",
            protocol,
            [*rows, mean, *paper_rows(self.paper)],
            notes=[PAPER_NOTE, "a failed or missing expression is an empty object in its annotator's label map"],
        )
        return [table]

    def _merged_prediction(
        self,
        samples: Sequence[Sample],
        predictions: Path,
        statuses: Mapping[str, str],
        names: Sequence[str],
        shape: tuple[int, ...],
    ) -> np.ndarray:
        """One annotator's (T, H, W) label map: object k's prediction as label k + 1, earlier objects winning."""
        from revseg.evals.scoring import ZERO_STATUSES, read_prediction

        merged = np.zeros((len(names), *shape), dtype=np.uint8)
        for number, sample in enumerate(samples, start=1):
            if statuses.get(sample.key) in ZERO_STATUSES:
                continue
            folder = inside(predictions, sample.video, sample.expression)
            pred = read_prediction(folder, names, (int(shape[0]), int(shape[1])))
            if isinstance(pred, np.ndarray):
                merged[(merged == 0) & pred] = number
        return merged


def davis_unsupervised(gt_objects: Sequence[np.ndarray], labels: np.ndarray) -> tuple[list[float], list[float]]:
    """Per ground-truth object, mean J and F over frames after Hungarian matching (davis2017-evaluation).

    The predicted objects are the label map's ids 1..max (absent ids are empty masks); fewer
    predictions than ground-truth objects are padded with empty masks. The pairs come back
    in the matcher's order, as the official ``_evaluate_unsupervised`` returns them.
    """
    from scipy.optimize import linear_sum_assignment

    from revseg.evals.metrics import boundary_f, jaccard

    if not gt_objects:
        return [], []
    num_pred = max(int(labels.max()), len(gt_objects))
    preds = [labels == k for k in range(1, num_pred + 1)]
    j = np.zeros((num_pred, len(gt_objects), labels.shape[0]))
    f = np.zeros_like(j)
    for ii, gt in enumerate(gt_objects):
        for jj, pred in enumerate(preds):
            j[jj, ii] = jaccard(gt, pred)
            f[jj, ii] = boundary_f(gt, pred)
    rows, cols = linear_sum_assignment(-(j.mean(axis=2) + f.mean(axis=2)) / 2)
    return (
        [float(np.nanmean(j[r, c])) for r, c in zip(rows, cols, strict=True)],
        [float(np.nanmean(f[r, c])) for r, c in zip(rows, cols, strict=True)],
    )
