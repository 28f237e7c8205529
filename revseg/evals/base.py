"""What a benchmark is: samples to segment, ground truth on demand, and its own aggregation rule.

A benchmark is a plug-in (the lmms-eval pattern): one module in ``revseg.evals.benchmarks``
with a :class:`Benchmark` subclass, registered by name in ``BENCHMARKS``. The subclass
reads the layout its public release ships, builds ground truth on demand and says how its
numbers are aggregated. Running the agent, writing predictions, scoring frames and
writing reports are shared (``runner``, ``predictions``, ``scoring``, ``report``).

Every name read from an annotation file (video ids, expression ids, frame names) goes
through :func:`safe_name` before it becomes part of a path: names must be plain relative
names, so neither a reader nor a prediction writer nor a submission zip can reach outside
its root, whatever an annotation file says.
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

from revseg.errors import DatasetError
from revseg.evals.tables import PaperRow, Table, mean_row, paper_rows
from revseg.tools.readers.folder import natural_key

if TYPE_CHECKING:
    import numpy as np

    from revseg.evals.scoring import SampleScore


@dataclass(frozen=True)
class Sample:
    """One (video, expression) pair to segment and score.

    ``frames_dir`` holds the video's frames and ``frame_files`` names the ones that make up
    the video, in order (usually every frame in the folder). Predictions for the sample live
    at ``<predictions>/<video>/<expression>/<frame stem>.png``. ``info`` carries what the
    benchmark's aggregation needs (ReVOS ``type_id``, Ref-DAVIS17 object and annotator).
    Ground truth is not held here: :meth:`Benchmark.ground_truth` builds it when asked.
    """

    video: str
    expression: str
    query: str
    subset: str
    frames_dir: Path
    frame_files: tuple[str, ...]
    info: Mapping[str, Any] = field(default_factory=dict, compare=False)

    @property
    def key(self) -> str:
        """``<video>/<expression>``: unique within a benchmark split, and the prediction folder."""
        return f"{self.video}/{self.expression}"

    @property
    def frame_names(self) -> tuple[str, ...]:
        """Frame file stems (``00000`` for ``00000.jpg``): the names prediction PNGs take."""
        return tuple(_stem(name) for name in self.frame_files)


@dataclass(frozen=True)
class GroundTruth:
    """A sample's ground truth: the frames scored and one (T, H, W) bool mask per frame.

    ``foreground`` (ReVOS only) is the union of every annotated object in the video, the
    denominator of the robustness score R.
    """

    frame_names: tuple[str, ...]
    masks: np.ndarray
    foreground: np.ndarray | None = None

    @property
    def shape(self) -> tuple[int, int]:
        """(height, width) of every frame."""
        return int(self.masks.shape[1]), int(self.masks.shape[2])


class Benchmark:
    """Base class of benchmark readers: a subclass per benchmark, registered by name.

    Subclasses set the class attributes and implement :meth:`read_samples` and (for splits
    with local ground truth) :meth:`ground_truth`; they may override :meth:`extra_scores`,
    :meth:`tables` and :meth:`protocol_tables` to add metrics and aggregation rules.
    ``exclude_videos`` drops whole videos (known-bad annotations); they are listed in the
    report, never dropped silently.
    """

    name: ClassVar[str]
    title: ClassVar[str]
    splits: ClassVar[tuple[str, ...]]
    default_split: ClassVar[str]
    split_aliases: ClassVar[Mapping[str, str]] = {}
    server_splits: ClassVar[frozenset[str]] = frozenset()
    submission_prefix: ClassVar[str] = ""
    """Folder every member of a server submission zip sits in (``Annotations/`` for Ref-YouTube-VOS)."""
    extra_metrics: ClassVar[tuple[str, ...]] = ()
    paper: ClassVar[tuple[PaperRow, ...]] = ()
    paper_split: ClassVar[str | None] = None
    """The split the paper's numbers are on, when it differs from the one evaluated (MeViS)."""
    versions: ClassVar[tuple[str, ...]] = ()
    """Dataset versions the reader knows (MeViS v1, v2); empty: one version, nothing to choose."""
    failure_rule: ClassVar[str] = (
        "a failed run (unparseable turn, policy or tracker error, crash) and a missing, incomplete or "
        "unreadable prediction score 0 on every metric and are counted by kind; a 'no target' answer is "
        "scored as empty masks"
    )

    def __init__(
        self,
        data_root: str | Path,
        split: str | None = None,
        *,
        exclude_videos: Iterable[str] = (),
        version: str | None = None,
    ) -> None:
        root = Path(data_root).expanduser()
        if not root.is_dir():
            raise DatasetError(f"{self.title}: data root {root} is not a folder")
        chosen = split or self.default_split
        chosen = self.split_aliases.get(chosen, chosen)
        if chosen not in self.splits:
            raise DatasetError(f"{self.title} has no split '{split}'; choose one of {', '.join(self.splits)}")
        self.root = root
        self.split = chosen
        self.exclude_videos = frozenset(exclude_videos)
        self.excluded: list[dict[str, str]] = []
        self.notes: list[str] = []
        self._samples: list[Sample] | None = None
        if version is not None and version not in self.versions:
            known = ", ".join(self.versions) or "none (this benchmark has one version)"
            raise DatasetError(f"{self.title} has no version '{version}'; known versions: {known}")
        self.version: str | None = version
        """The dataset version evaluated (None: the benchmark has a single release)."""
        self.version_source = "forced" if version is not None else ""

    def __repr__(self) -> str:
        return f"{type(self).__name__}(root={str(self.root)!r}, split={self.split!r})"

    @property
    def has_ground_truth(self) -> bool:
        """False for splits scored by the benchmark's server (predictions are exported instead)."""
        return self.split not in self.server_splits

    def samples(self) -> list[Sample]:
        """Every sample of the split, sorted by video then expression id (natural order), excluded videos removed."""
        if self._samples is None:
            samples = []
            for sample in self.read_samples():
                if sample.video in self.exclude_videos:
                    self.excluded.append({"key": sample.key, "reason": "video excluded (known-bad list)"})
                    continue
                samples.append(sample)
            keys = [s.key for s in samples]
            if len(set(keys)) != len(keys):
                duplicate = next(k for k in keys if keys.count(k) > 1)
                raise DatasetError(f"{self.title}: sample {duplicate} appears twice in the annotation file")
            self._samples = sorted(samples, key=lambda s: (natural_key(s.video), natural_key(s.expression)))
        return list(self._samples)

    def describe(self) -> dict[str, str | None]:
        """Benchmark, version, split, protocol and failure rule: what every report and trajectory states."""
        return {
            "benchmark": self.name,
            "version": self.version,
            "version_source": self.version_source or None,
            "split": self.split,
            "protocol": self.protocol,
            "failures": self.failure_rule,
        }

    def read_samples(self) -> Iterable[Sample]:
        """The split's samples as the annotation files list them (subclasses implement)."""
        raise NotImplementedError

    def ground_truth(self, sample: Sample) -> GroundTruth:
        """Build the sample's ground truth masks (subclasses implement for local-GT splits)."""
        raise DatasetError(f"{self.title} {self.split} has no local ground truth: it is scored by its server")

    def extra_scores(self, gt: GroundTruth, pred: np.ndarray) -> dict[str, float]:
        """Metrics beyond J and F for one sample, as fractions (ReVOS: A and R)."""
        return {}

    def tables(self, scores: Sequence[SampleScore]) -> list[Table]:
        """The benchmark's result tables from per-sample scores; default: one row, the mean over samples."""
        rows = [mean_row("all", scores, self.extra_metrics), *paper_rows(self.paper)]
        notes = []
        if self.paper and self.paper_split and self.paper_split != self.split:
            notes.append(
                f"The paper's row is on {self.title} {self.paper_split}, ours on {self.split}: the splits differ, "
                "so the numbers are not directly comparable."
            )
        table = Table(f"{self.title} {self.split}", self.protocol, rows, metrics=self.metrics, notes=notes)
        return [table]

    def protocol_tables(self, samples: Sequence[Sample], predictions: Path, statuses: Mapping[str, str]) -> list[Table]:
        """Tables under a second protocol that needs the raw predictions (Ref-DAVIS17 per annotator)."""
        return []

    @property
    def metrics(self) -> tuple[str, ...]:
        """Columns of the main table."""
        return ("J", "F", "J&F", *self.extra_metrics)

    @property
    def protocol(self) -> str:
        """One line saying how the numbers are computed."""
        return "mean over (video, expression) of per-frame-mean J and F; J&F = (J + F) / 2"

    def frame_files_for(self, folder: Path, frames: Sequence[Any] | None, where: str) -> tuple[str, ...]:
        """Frame file names for a video: the annotation's list (``<name>.jpg``) or, without one, the folder's images."""
        if frames is not None:
            if not isinstance(frames, list) or not frames:
                raise DatasetError(f"{where}: 'frames' must be a non-empty list of frame names")
            return tuple(f"{safe_name(f, where, 'frame name')}.jpg" for f in frames)
        try:
            files = [p.name for p in folder.iterdir() if p.suffix.lower() in (".jpg", ".jpeg", ".png")]
        except OSError as exc:
            raise DatasetError(f"{where}: cannot list frames in {folder}: {exc.strerror or exc}") from exc
        if not files:
            raise DatasetError(f"{where}: no frames in {folder}")
        return tuple(sorted((f for f in files if not f.startswith(".")), key=natural_key))


# --- names and files ----------------------------------------------------------------------------


def _stem(name: str) -> str:
    path = Path(name)
    return path.stem if path.suffix.lower() in (".jpg", ".jpeg", ".png") else path.name


def safe_name(value: object, where: str, what: str, *, nested: bool = False) -> str:
    """A name from an annotation file, checked to be a plain relative name; DatasetError otherwise.

    Numbers are accepted and turned into text (expression ids are often ints). ``nested``
    allows ``/`` between segments (video ids such as ``source/video``); no segment may be
    empty, ``.`` or ``..``, and absolute paths, backslashes and NUL bytes are refused, so a
    path built from the name always stays under the folder it is joined to.
    """
    if isinstance(value, bool) or not isinstance(value, str | int):
        raise DatasetError(f"{where}: {what} must be a string, got {type(value).__name__} {value!r}")
    text = str(value)
    segments = text.split("/") if nested else [text]
    bad = (
        not text
        or text != text.strip()
        or "\x00" in text
        or "\\" in text
        or (not nested and "/" in text)
        or any(s in ("", ".", "..") for s in segments)
        or re.match(r"^[A-Za-z]:", text) is not None
    )
    if bad:
        raise DatasetError(
            f"{where}: {what} {text!r} is not a plain relative name; names in annotation files may not "
            "point outside the data root"
        )
    return text


def inside(root: Path, *parts: str) -> Path:
    """``root / parts`` after checking, lexically, that the result stays under ``root``."""
    path = root.joinpath(*parts)
    base = os.path.normpath(root)
    if not os.path.normpath(path).startswith(base.rstrip(os.sep) + os.sep):
        raise DatasetError(f"{'/'.join(parts)!r} points outside {root}")
    return path


def load_json(path: Path, what: str) -> Any:
    """Read a JSON annotation file; a missing or malformed one raises DatasetError naming it."""
    if not path.is_file():
        raise DatasetError(f"{what} not found: expected {path}")
    try:
        with path.open("rb") as handle:
            return json.load(handle)
    except (OSError, ValueError) as exc:
        raise DatasetError(f"{path}: cannot read {what} ({getattr(exc, 'strerror', None) or exc})") from exc


def meta_videos(path: Path, what: str = "meta expressions") -> dict[str, Any]:
    """The ``videos`` mapping of a ``meta_expressions*.json`` (the format every RVOS release shares)."""
    data = load_json(path, what)
    videos = data.get("videos") if isinstance(data, dict) else None
    if not isinstance(videos, dict):
        raise DatasetError(f"{path}: expected an object with a 'videos' mapping")
    return videos


def expressions_of(video: str, entry: Any, path: Path) -> dict[str, Any]:
    """A video entry's ``expressions`` mapping, checked."""
    expressions = entry.get("expressions") if isinstance(entry, dict) else None
    if not isinstance(expressions, dict):
        raise DatasetError(f"{path}: video {video!r} has no 'expressions' mapping")
    return expressions


def expression_text(entry: Any, where: str, keys: Sequence[str] = ("exp",)) -> str:
    """The query text of an expression entry, from the first of ``keys`` present."""
    if isinstance(entry, dict):
        for key in keys:
            text = entry.get(key)
            if isinstance(text, str):
                return text
    raise DatasetError(f"{where}: expression has no text (expected key {' or '.join(repr(k) for k in keys)})")
