"""The images a recorded turn showed the model, rebuilt from the record: for the graph and for training.

Light on purpose (no LangGraph): ``revseg.rl.sequences`` imports it where only the model
stack is installed (the GPU benchmark's machine).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import TYPE_CHECKING, Any

from revseg.tools.masks import read_masks_json
from revseg.tools.render import draw_mask

if TYPE_CHECKING:
    from PIL.Image import Image

ReadFrames = Callable[[Sequence[int], tuple[int, int]], "list[Image]"]
"""(original frame indices, (width, height)) -> the frames resized; the graph's cache or a trainer's reader."""


def turn_images(turn: Mapping[str, Any], read: ReadFrames) -> list[Image]:
    """The images a recorded turn showed the model, rebuilt from the record.

    Its ``image_frames`` at its ``image_size``; for a verify turn each with the mask of
    the same frame from ``overlay`` drawn on it (:func:`revseg.tools.render.draw_mask`).
    """
    indices = list(turn.get("image_frames") or [])
    if not indices:
        return []
    width, height = turn["image_size"]
    frames = read(indices, (int(width), int(height)))
    overlay = turn.get("overlay")
    if not overlay:
        return frames
    masks = read_masks_json(overlay)
    return [draw_mask(frame, masks.union(index)) for frame, index in zip(frames, indices, strict=True)]
