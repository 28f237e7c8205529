"""Writing predictions the way other methods do, for scoring tests."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np
from PIL import Image

from revseg.evals.base import Benchmark, Sample


def write_masks(folder: Path, names: list[str] | tuple[str, ...], masks: np.ndarray, *, value: int = 255) -> None:
    """Prediction PNGs the way other methods write them: greyscale, 0 and ``value``."""
    folder.mkdir(parents=True, exist_ok=True)
    for name, mask in zip(names, masks, strict=True):
        Image.fromarray(mask.astype(np.uint8) * value, mode="L").save(folder / f"{name}.png")


PredictionFn = Callable[[Sample, np.ndarray], np.ndarray | None]


def write_predictions(bench: Benchmark, out: Path, make: PredictionFn) -> Path:
    """For every sample, ``make(sample, gt_masks)`` gives the masks to write (None: write nothing)."""
    for sample in bench.samples():
        gt = bench.ground_truth(sample)
        masks = make(sample, gt.masks)
        if masks is not None:
            write_masks(out / sample.video / sample.expression, gt.frame_names, masks)
    return out
