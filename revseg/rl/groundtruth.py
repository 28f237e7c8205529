"""Ground truth as rewards see it: the box of the queried object(s) on a frame, or None when absent.

Rewards (DESIGN.md 1.4) need only boxes: the temporal reward reads GT box areas on the
sampled frames, the spatial reward the GT box on the keyframe. A multi-object query's
ground truth is the union box of its objects, which is also the box of the union mask.

Anything with a ``box(frame_index)`` method is ground truth here (:class:`GroundTruth`), so a
benchmark reader's samples plug in through a small adapter, and reading stays lazy: a
video of 3,000 annotated frames costs 16 mask decodes per trajectory, not 3,000.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import TYPE_CHECKING, Protocol, runtime_checkable

from revseg.tools.boxes import mask_to_box, union_box
from revseg.trajectory import BoxXYXY

if TYPE_CHECKING:
    import numpy as np

MaskSource = Callable[[int], "np.ndarray | Sequence[np.ndarray] | None"]
"""frame index -> one (H, W) mask, a stack/list of per-object masks, or None when the frame has no annotation."""


@runtime_checkable
class GroundTruth(Protocol):
    """Per-frame ground-truth boxes of one (video, query), in original-frame pixels."""

    def box(self, frame_index: int) -> BoxXYXY | None:
        """The union box of every queried object on ``frame_index``, or None when none is visible."""
        ...


class BoxGroundTruth:
    """Ground truth given as boxes: ``{frame_index: [box, ...]}``; a frame not in the mapping is empty.

    Boxes use :mod:`revseg.tools.boxes`' convention (x1, y1, x2, y2, exclusive right/bottom).
    """

    def __init__(self, boxes: Mapping[int, Sequence[Sequence[float]]]) -> None:
        self._boxes = {int(k): [tuple(float(c) for c in b) for b in v] for k, v in boxes.items()}

    def box(self, frame_index: int) -> BoxXYXY | None:
        """Union box of the frame's object boxes, or None."""
        return union_box(self._boxes.get(frame_index, ()))


class MaskGroundTruth:
    """Ground truth given as masks, read lazily through ``masks(frame_index)`` and cached as boxes.

    ``masks`` returns one (H, W) mask, an (N, H, W) stack or a list of per-object masks
    (non-zero = foreground), or None for a frame without annotation. The box is that of
    the union of the objects (DESIGN.md 1.4: multi-object GT = union box).
    """

    def __init__(self, masks: MaskSource) -> None:
        self._masks = masks
        self._cache: dict[int, BoxXYXY | None] = {}

    def box(self, frame_index: int) -> BoxXYXY | None:
        """Box of the union mask on ``frame_index`` (decoded once), or None when it is empty."""
        if frame_index not in self._cache:
            self._cache[frame_index] = masks_box(self._masks(frame_index))
        return self._cache[frame_index]

    def mask(self, frame_index: int) -> np.ndarray | None:
        """The union mask of the queried objects on ``frame_index`` (bool), or None without annotation.

        The look_again verify reward compares a tracked mask with it (:mod:`revseg.rl.rewards`).
        """
        import numpy as np

        masks = self._masks(frame_index)
        if masks is None:
            return None
        stack = np.asarray(masks)
        return stack.astype(bool) if stack.ndim == 2 else np.any(stack.astype(bool), axis=0)


def masks_box(masks: np.ndarray | Sequence[np.ndarray] | None) -> BoxXYXY | None:
    """The union box of one mask or of several objects' masks; None when all are empty (or ``masks`` is None)."""
    if masks is None:
        return None
    import numpy as np

    if isinstance(masks, np.ndarray) and masks.ndim == 2:
        return mask_to_box(masks)
    return union_box(b for b in (mask_to_box(m) for m in masks) if b is not None)
