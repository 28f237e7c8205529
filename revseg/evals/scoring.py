"""Score predictions in the standard layout against a benchmark's ground truth, one sample at a time.

Predictions are read from ``<predictions>/<video>/<expression>/<frame>.png`` (any PNG: a
nonzero pixel is foreground, as in the public scripts, which read them with
``cv2.IMREAD_GRAYSCALE`` and cast to bool), so our own runs and other methods' outputs are
scored by one path. Per sample: J and F are the means over frames of
:func:`revseg.evals.metrics.jaccard` and :func:`revseg.evals.metrics.boundary_f`, J&F their
mean.

A sample whose run failed (turn 1 or turn 2 unparseable, policy or tracker error, a crash),
whose prediction is missing or lacks frames, or whose PNGs are unreadable or of the wrong
size scores 0 on every metric, and is counted and listed by kind: never skipped. (Public
scripts differ here: VideoLISA's ReasonVOS script skips missing predictions; MeViS' crashes;
VISA's ReVOS script scores them 0.) A prediction that says "no target" is a real answer:
its empty masks are scored like any other.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from revseg.evals.base import Benchmark, GroundTruth, Sample, inside
from revseg.trajectory import Status

if TYPE_CHECKING:
    pass

ERROR = "error"
"""Status of a run that raised (bad input frames, a backend crash): not one of the chain's own statuses."""
MISSING = "missing"
INCOMPLETE = "incomplete"
INVALID = "invalid"

ZERO_STATUSES = frozenset(
    {
        Status.FAILED_SELECT_FRAMES.value,
        Status.FAILED_GROUND.value,
        Status.POLICY_ERROR.value,
        Status.TRACKER_ERROR.value,
        ERROR,
        MISSING,
        INCOMPLETE,
        INVALID,
    }
)
"""Statuses that score 0 whatever is on disk."""


@dataclass
class SampleScore:
    """One sample's scores (fractions in [0, 1]) and how its prediction ended.

    ``status`` is the run's status when the prediction came from ``revseg eval`` (``ok``,
    ``no_target``, ``failed_*``, ``policy_error``, ``tracker_error``, ``error``), ``ok`` for
    other methods' predictions, or what scoring found: ``missing``, ``incomplete``,
    ``invalid``. ``empty`` says whether the prediction is empty on every scored frame
    (None when there is none).
    """

    key: str
    video: str
    expression: str
    subset: str
    status: str
    J: float = 0.0
    F: float = 0.0
    extra: dict[str, float] = field(default_factory=dict)
    empty: bool | None = None
    reason: str | None = None

    @property
    def JF(self) -> float:
        """(J + F) / 2."""
        return (self.J + self.F) / 2

    @property
    def zero_by_rule(self) -> bool:
        """True when the sample scored 0 because its prediction failed or is missing."""
        return self.status in ZERO_STATUSES

    def to_json(self) -> dict[str, Any]:
        """A JSON-ready dict (J, F, J&F and extras in percent)."""
        record = asdict(self)
        for name in ("J", "F"):
            record[name] = 100.0 * record[name]
        record["J&F"] = 100.0 * self.JF
        record["extra"] = {k: 100.0 * v for k, v in self.extra.items()}
        return record


@dataclass(frozen=True)
class PredictionProblem:
    """Why a prediction could not be scored: its kind (missing, incomplete, invalid) and a sentence."""

    kind: str
    reason: str


def read_prediction(folder: Path, frame_names: Sequence[str], shape: tuple[int, int]) -> np.ndarray | PredictionProblem:
    """The (T, H, W) bool masks of a prediction folder for the given frames, or what is wrong with it."""
    if not folder.is_dir():
        return PredictionProblem(MISSING, f"no prediction folder {folder}")
    files = [folder / f"{name}.png" for name in frame_names]
    absent = [f.name for f in files if not f.is_file()]
    if absent:
        return PredictionProblem(
            INCOMPLETE, f"{len(absent)} of {len(files)} frame masks missing in {folder} (first: {absent[0]})"
        )
    masks = np.zeros((len(files), *shape), dtype=bool)
    for index, file in enumerate(files):
        mask = read_mask_png(file)
        if isinstance(mask, str):
            return PredictionProblem(INVALID, mask)
        if mask.shape != shape:
            return PredictionProblem(
                INVALID, f"{file}: mask is {mask.shape[1]}x{mask.shape[0]}, the frame is {shape[1]}x{shape[0]}"
            )
        masks[index] = mask
    return masks


def read_mask_png(path: Path) -> np.ndarray | str:
    """A PNG mask as (H, W) bool, nonzero = foreground (palette index, grey level or any colour channel)."""
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(path) as image:
            if image.mode in ("RGB", "RGBA"):
                array = np.asarray(image.convert("RGB")).max(axis=2)
            elif image.mode in ("P", "L", "1", "I", "I;16", "LA", "PA"):
                array = np.asarray(image)
                array = array[..., 0] if array.ndim == 3 else array
            else:
                array = np.asarray(image.convert("L"))
            return np.asarray(array != 0)
    except (OSError, UnidentifiedImageError, ValueError) as exc:
        return f"{path}: unreadable mask ({exc})"


def score_sample(
    benchmark: Benchmark, sample: Sample, predictions: Path, record: Mapping[str, Any] | None = None
) -> SampleScore:
    """Score one sample's prediction folder; ``record`` is its ``results.jsonl`` line from ``revseg eval``, if any."""
    from revseg.evals.metrics import boundary_f, jaccard

    status = str(record.get("status", Status.OK.value)) if record else Status.OK.value
    base = SampleScore(sample.key, sample.video, sample.expression, sample.subset, status)
    if status in ZERO_STATUSES:
        base.reason = str(record.get("reason") or status) if record else status
        return base
    gt: GroundTruth = benchmark.ground_truth(sample)
    pred = read_prediction(inside(predictions, sample.video, sample.expression), gt.frame_names, gt.shape)
    if isinstance(pred, PredictionProblem):
        base.status, base.reason = pred.kind, pred.reason
        return base
    base.J = float(np.mean(jaccard(gt.masks, pred)))
    base.F = float(np.mean(boundary_f(gt.masks, pred)))
    base.extra = benchmark.extra_scores(gt, pred)
    base.empty = not bool(pred.any())
    return base


def score_samples(
    benchmark: Benchmark,
    samples: Sequence[Sample],
    predictions: Path,
    records: Mapping[str, Mapping[str, Any]] | None = None,
    *,
    workers: int = 1,
) -> list[SampleScore]:
    """Score every sample, in the given order; ``workers`` threads share the loaded ground truth.

    With ``records`` (the completion records of ``revseg eval``), a sample without a record
    is ``missing``: the run never finished it.
    """

    def one(sample: Sample) -> SampleScore:
        if records is not None and sample.key not in records:
            return SampleScore(
                sample.key, sample.video, sample.expression, sample.subset, MISSING, reason="no completion record"
            )
        return score_sample(benchmark, sample, predictions, records.get(sample.key) if records else None)

    if workers <= 1:
        return [one(s) for s in samples]
    with ThreadPoolExecutor(max_workers=workers) as pool:
        return list(pool.map(one, samples))
