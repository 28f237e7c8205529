"""Predictions in the standard layout, and the submission zips benchmark servers expect.

The standard layout, which every public RVOS scoring script reads, is one PNG per frame at
``<predictions>/<video>/<expression>/<frame>.png``, named after the source frame. Ours are
DAVIS palette PNGs with 0 for background and 1 for the target (the union of every object
the query named), written by :class:`~revseg.tools.masks.MaskWriter`, which also writes the
COCO RLE of every frame to ``masks.json`` beside them. A sample's folder is written under a
temporary name and renamed into place, so a folder that exists is complete.

Server submissions hold 0/255 greyscale PNGs (what ReferFormer's and VISA's submissions
hold) at ``[Annotations/]<video>/<expression>/<frame>.png``; every frame of every sample
is present, an empty mask standing in for a failed or missing prediction (counted).
"""

from __future__ import annotations

import io
import os
import shutil
import zipfile
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from revseg.errors import OutputError
from revseg.evals.base import Benchmark, Sample, inside
from revseg.evals.benchmarks._rle import image_shape
from revseg.evals.scoring import ZERO_STATUSES, read_mask_png

PREDICTIONS_DIR = "predictions"
SUBMISSION_ZIP = "submission.zip"


def write_prediction(folder: Path, masks: Mapping[str, Any], frame_names: Sequence[str]) -> Path:
    """Write a run's ``masks.json`` record as union masks named after ``frame_names``, atomically.

    ``masks`` is the record the tracker's :class:`MaskWriter` wrote (one entry per frame of
    the video, in reading order); ``frame_names`` names those frames. Returns ``folder``.
    """
    from revseg.tools.masks import MaskSequence, MaskWriter

    sequence = MaskSequence(dict(masks), folder / "masks.json")
    if sequence.num_frames != len(frame_names):
        raise OutputError(
            f"{folder}: the run wrote {sequence.num_frames} frames of masks for a video of {len(frame_names)} frames"
        )
    tmp = folder.with_name(f".{folder.name}.tmp-{os.getpid()}")
    try:
        folder.parent.mkdir(parents=True, exist_ok=True)
        if tmp.exists():
            shutil.rmtree(tmp)
        with MaskWriter(
            tmp, sequence.num_frames, (sequence.width, sequence.height), frame_names, num_objects=1
        ) as writer:
            for index in range(sequence.num_frames):
                writer.write(index, sequence.union(index)[None])
        if folder.exists():
            shutil.rmtree(folder)
        tmp.rename(folder)
    except OSError as exc:
        raise OutputError(f"cannot write predictions to {folder}: {exc.strerror or exc}") from exc
    return folder


def remove_prediction(folder: Path) -> None:
    """Delete a sample's prediction folder and any temporary one left by a crash."""
    for path in [folder, *folder.parent.glob(f".{folder.name}.tmp-*")] if folder.parent.is_dir() else [folder]:
        if path.is_dir():
            shutil.rmtree(path, ignore_errors=True)


def _png_bytes(mask: np.ndarray) -> bytes:
    from PIL import Image

    buffer = io.BytesIO()
    Image.fromarray(mask.astype(np.uint8) * 255, mode="L").save(buffer, format="PNG")
    return buffer.getvalue()


def export_submission(
    benchmark: Benchmark,
    samples: Sequence[Sample],
    predictions: Path,
    zip_path: Path,
    statuses: Mapping[str, str] | None = None,
) -> list[str]:
    """Write the server's submission zip from predictions in the standard layout; return the samples filled in.

    A sample whose run failed, or whose folder or some frame PNGs are missing, gets empty
    masks for what is missing (servers want every frame); its key is returned.
    """
    prefix = benchmark.submission_prefix.strip("/")
    filled: list[str] = []
    shapes: dict[str, tuple[int, int]] = {}
    tmp = zip_path.with_name(f".{zip_path.name}.tmp")
    try:
        zip_path.parent.mkdir(parents=True, exist_ok=True)
        with zipfile.ZipFile(tmp, "w", compression=zipfile.ZIP_STORED) as archive:
            for sample in samples:
                folder = inside(predictions, sample.video, sample.expression)
                failed = (statuses or {}).get(sample.key) in ZERO_STATUSES
                missing = False
                for name in sample.frame_names:
                    file = folder / f"{name}.png"
                    mask = None if failed or not file.is_file() else read_mask_png(file)
                    if not isinstance(mask, np.ndarray):
                        missing = True
                        if sample.video not in shapes:
                            where = f"{benchmark.title} {sample.key}"
                            shapes[sample.video] = image_shape(sample.frames_dir / sample.frame_files[0], where)
                        mask = np.zeros(shapes[sample.video], dtype=bool)
                    member = "/".join(p for p in (prefix, sample.video, sample.expression, f"{name}.png") if p)
                    archive.writestr(member, _png_bytes(mask))
                if missing:
                    filled.append(sample.key)
        tmp.replace(zip_path)
    except OSError as exc:
        raise OutputError(f"cannot write the submission {zip_path}: {exc.strerror or exc}") from exc
    return filled
