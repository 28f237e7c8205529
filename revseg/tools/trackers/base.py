"""The Tracker contract: a box prompt on one frame in, masks for every frame out, streamed.

:class:`BoxSegmenter` is an optional second capability of the same backends: box prompts
on single frames, each segmented on its own (SAM2 in image mode). Also the pieces every
backend shares, so each checks prompts, picks devices and reads spec options the same
way: :func:`check_prompt` / :func:`check_box_prompts`, :func:`pick_device` and
:func:`split_spec_options` / :func:`bind_options`.
"""

from __future__ import annotations

import math
import numbers
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable

from revseg.devices import pick_device as _pick_device
from revseg.errors import SpecError, TrackerError
from revseg.specs import bind_options as _bind_options
from revseg.trajectory import BoxXYXY

if TYPE_CHECKING:
    import numpy as np
    import torch

    from revseg.tools.frames import FrameReader
    from revseg.trajectory import VideoRef


@dataclass(frozen=True)
class FrameMasks:
    """Masks of every tracked object on one frame: ``masks`` is (num_objects, H, W) bool at original size."""

    frame_index: int
    masks: np.ndarray


@runtime_checkable
class Tracker(Protocol):
    """Propagates box prompts from a keyframe through a whole video."""

    @property
    def spec(self) -> str:
        """The spec string this tracker was built from (recorded in trajectories)."""
        ...

    def track(
        self, video: FrameReader, keyframe_index: int, boxes: Sequence[BoxXYXY], *, progress: bool = False
    ) -> Iterator[FrameMasks]:
        """Yield masks for every frame of ``video`` exactly once, in any order.

        Boxes are x1, y1, x2, y2 in original-frame pixels on ``keyframe_index``;
        propagation runs forwards to the end and backwards to the start.
        """
        ...


@runtime_checkable
class BoxSegmenter(Protocol):
    """Segments box prompts on single frames: SAM2 in image mode, each frame on its own, no memory.

    An optional capability of tracker backends (both ``sam2:`` and ``hf-sam2:`` have it),
    over the model the tracker already loaded. Training-data curation (DESIGN.md 1.5)
    prompts every annotated frame with its ground-truth box this way.
    """

    @property
    def spec(self) -> str:
        """The spec string the backend was built from."""
        ...

    def segment_boxes(self, frames: Sequence[np.ndarray], boxes: Sequence[Sequence[BoxXYXY]]) -> list[np.ndarray]:
        """One (len(boxes[i]), H, W) bool array per frame: the mask of each box, at the frame's size.

        ``frames`` are (H, W, 3) uint8 RGB arrays, run as one batch; ``boxes[i]`` are
        x1, y1, x2, y2 in frame ``i``'s pixels (a frame without boxes gets a (0, H, W) array).
        Raises TrackerError for a malformed prompt or a failing model.
        """
        ...


def check_prompt(ref: VideoRef, keyframe_index: int, boxes: Sequence[BoxXYXY]) -> list[BoxXYXY]:
    """Validate a box prompt and clip each box to the frame; raise TrackerError naming the fault.

    A box with no area after clipping (a point, a line, or a box wholly outside the frame)
    is an error rather than being widened to one pixel: a 1-pixel prompt makes SAM2 return
    an arbitrary mask, and a silent wrong mask is worse than a failure the caller can record.
    """
    if not 0 <= keyframe_index < ref.num_frames:
        raise TrackerError(
            f"keyframe {keyframe_index} is out of range for video '{ref.path}' ({ref.num_frames} frames)"
        )
    if len(boxes) == 0:
        raise TrackerError(f"no boxes to track on keyframe {keyframe_index} of video '{ref.path}'")
    return [clip_prompt_box(box, i, ref.width, ref.height, f"video '{ref.path}'") for i, box in enumerate(boxes)]


def clip_prompt_box(box: Sequence[float], index: int, width: int, height: int, where: str) -> BoxXYXY:
    """One prompt box checked (four finite numbers) and clipped to a ``width`` x ``height`` frame.

    Raises TrackerError naming the box and ``where`` when it is malformed or has no area after
    clipping (see :func:`check_prompt` for why a box is never widened).
    """
    if len(box) != 4 or not all(isinstance(v, numbers.Real) and math.isfinite(v) for v in box):
        raise TrackerError(f"box {index} {tuple(box)!r} for {where} is not four finite numbers x1, y1, x2, y2")
    x1, y1, x2, y2 = (float(v) for v in box)
    x1, x2 = min(max(x1, 0.0), width), min(max(x2, 0.0), width)
    y1, y2 = min(max(y1, 0.0), height), min(max(y2, 0.0), height)
    if x2 <= x1 or y2 <= y1:
        raise TrackerError(
            f"box {index} {tuple(box)!r} has no area inside the {width}x{height} frames of {where} "
            "(x1 < x2 and y1 < y2 needed after clipping)"
        )
    return (x1, y1, x2, y2)


def check_box_prompts(frames: Sequence[np.ndarray], boxes: Sequence[Sequence[BoxXYXY]]) -> list[list[BoxXYXY]]:
    """Validate a :meth:`BoxSegmenter.segment_boxes` call: one box list per RGB frame, each box clipped to its frame.

    A frame may have no boxes (it is then not run). Raises TrackerError naming the frame
    and box at fault.
    """
    if len(frames) != len(boxes):
        raise TrackerError(f"segment_boxes got {len(frames)} frames but {len(boxes)} box lists; give one per frame")
    checked: list[list[BoxXYXY]] = []
    for number, (frame, frame_boxes) in enumerate(zip(frames, boxes, strict=True)):
        shape: tuple[int, ...] = tuple(getattr(frame, "shape", ()))
        if len(shape) != 3 or shape[2] != 3 or getattr(frame, "dtype", None) != "uint8":
            raise TrackerError(f"frame {number} of the batch is not an (H, W, 3) uint8 RGB array (shape {shape})")
        height, width = int(shape[0]), int(shape[1])
        where = f"frame {number} of the batch"
        checked.append([clip_prompt_box(box, i, width, height, where) for i, box in enumerate(frame_boxes)])
    return checked


class _NoBar:
    def update(self, n: int = 1) -> None:
        """Nothing to update."""

    def close(self) -> None:
        """Nothing to close."""


TRACKING_BAR_FORMAT = (
    "{desc}: {percentage:3.0f}%|{bar}| {n_fmt}/{total_fmt} frames [{elapsed}, ETA {remaining}, {rate_fmt}]"
)


def tracking_bar(progress: bool, ref: VideoRef, backend: str) -> Any:
    """One tqdm bar over every frame of a tracking pass, with its ETA; a do-nothing stand-in when not asked for.

    Both directions count towards one total, so the ETA is for the whole video (on a CPU a
    video can take an hour: the ETA is what tells the user to choose a smaller tracker).
    """
    if not progress:
        return _NoBar()
    from pathlib import Path

    from tqdm.auto import tqdm

    return tqdm(
        total=ref.num_frames, desc=f"{backend}: {Path(ref.path).name}", unit="frame", bar_format=TRACKING_BAR_FORMAT
    )


def pick_device(device: str | None) -> torch.device:
    """The tracker's device: :func:`revseg.devices.pick_device`, with errors that say "tracker"."""
    return _pick_device(device, what="tracker")


_TRUE = frozenset({"true", "yes", "on", "1"})
_FALSE = frozenset({"false", "no", "off", "0"})


def _option_value(text: str) -> Any:
    """A spec option's value: bool, None, int, float or str, in that order of preference."""
    lowered = text.strip().lower()
    if lowered in _TRUE:
        return True
    if lowered in _FALSE:
        return False
    if lowered in {"none", "null"}:
        return None
    for kind in (int, float):
        try:
            return kind(text)
        except ValueError:
            pass
    return text.strip()


def split_spec_options(spec: str) -> tuple[str, dict[str, Any]]:
    """Split ``SCHEME:ARGS?key=value&key=value`` into the bare spec and typed options.

    Options in the spec travel with it into trajectories, so a run records settings that
    change its masks (``sam2:...?window=300``). Values read as bool (true/false/yes/no/
    on/off/1/0), None, int, float, else str. A part without ``=`` raises SpecError.
    """
    base, sep, query = spec.partition("?")
    options: dict[str, Any] = {}
    if not sep:
        return spec, options
    for part in query.split("&"):
        if not part:
            continue
        key, eq, value = part.partition("=")
        if not eq or not key.strip():
            raise SpecError(f"tracker spec '{spec}': option '{part}' is not KEY=VALUE")
        options[key.strip()] = _option_value(value)
    return base, options


def bind_options(factory: Callable[..., Any], options: dict[str, Any], spec: str) -> dict[str, Any]:
    """Check option names against ``factory``'s keyword-only parameters; SpecError lists the known ones."""
    return _bind_options(factory, options, spec, kind="tracker", passed_apart={"device"})
