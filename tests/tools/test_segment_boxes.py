"""Box prompts on single frames (BoxSegmenter), the optional capability of every tracker backend.

Runs over the same backends as the tracker conformance suite (``TRACKER_SPECS``), on real
footage: masks per box at each frame's own size, batching that changes nothing, prompt and
model failures as TrackerError.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest

from revseg.errors import TrackerError
from revseg.tools.trackers import build_tracker
from revseg.tools.trackers.base import BoxSegmenter
from tests.tools.tracker_conformance import ODD_SIZE, TRACKER_SPECS, bikes_frames

pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture(scope="module", params=TRACKER_SPECS)
def segmenter(request: pytest.FixtureRequest) -> Any:
    tracker = build_tracker(request.getfixturevalue(request.param), device="cpu")
    assert isinstance(tracker, BoxSegmenter)
    return tracker


@pytest.fixture(scope="module")
def frames(bikes_mp4: Path) -> list[np.ndarray]:
    """Three real frames at an odd size and one at the clip's own size."""
    return [*bikes_frames(bikes_mp4, 3, ODD_SIZE), bikes_frames(bikes_mp4, 1)[0]]


BOXES = [
    [(10.0, 10.0, 80.0, 60.0), (60.0, 20.0, 150.0, 90.0)],
    [],
    [(0.0, 0.0, 161.0, 97.0), (20.0, 30.0, 40.0, 50.0), (-5.0, -5.0, 30.0, 30.0)],  # the last one clipped
    [(200.0, 50.0, 400.0, 250.0)],
]


def test_one_mask_per_box_at_each_frames_size(segmenter: Any, frames: list[np.ndarray]) -> None:
    out = segmenter.segment_boxes(frames, BOXES)
    assert [m.shape for m in out] == [(len(b), *f.shape[:2]) for f, b in zip(frames, BOXES, strict=True)]
    assert all(m.dtype == np.bool_ for m in out)
    assert any(m.any() for m in out)


def test_a_batch_gives_the_masks_of_each_frame_alone(segmenter: Any, frames: list[np.ndarray]) -> None:
    batch = segmenter.segment_boxes(frames, BOXES)
    for index, (frame, boxes) in enumerate(zip(frames, BOXES, strict=True)):
        alone = segmenter.segment_boxes([frame], [boxes])[0]
        assert np.array_equal(alone, batch[index]), f"frame {index}"


@pytest.mark.parametrize(
    ("boxes", "message"),
    [
        ([[(10.0, 10.0, 10.0, 40.0)]], "no area"),
        ([[(10.0, 10.0, float("nan"), 40.0)]], "four finite numbers"),
        ([[(10.0, 10.0, 40.0, 40.0)], []], "1 frames but 2 box lists"),
    ],
)
def test_bad_prompts_are_tracker_errors(
    segmenter: Any, frames: list[np.ndarray], boxes: list[list[Any]], message: str
) -> None:
    with pytest.raises(TrackerError, match=message):
        segmenter.segment_boxes(frames[:1], boxes)


def test_a_frame_that_is_not_rgb_is_a_tracker_error(segmenter: Any, frames: list[np.ndarray]) -> None:
    with pytest.raises(TrackerError, match=r"frame 0 of the batch is not an \(H, W, 3\) uint8"):
        segmenter.segment_boxes([frames[0][..., 0]], [[(1.0, 1.0, 9.0, 9.0)]])


def test_model_failures_become_tracker_errors(
    segmenter: Any, frames: list[np.ndarray], monkeypatch: pytest.MonkeyPatch
) -> None:
    class Boom:
        def __call__(self, *args: object, **kwargs: object) -> None:
            raise RuntimeError("CUDA out of memory. Tried to allocate 2.00 GiB")

        set_image_batch = __call__

        def reset_predictor(self) -> None:
            pass

    monkeypatch.setattr(segmenter, "_image", Boom())
    with pytest.raises(TrackerError, match=r"box prompts for a batch of 1 frames.*out of memory") as info:
        segmenter.segment_boxes(frames[:1], [[(10.0, 10.0, 40.0, 40.0)]])
    assert isinstance(info.value.__cause__, RuntimeError)


def test_hf_image_model_shares_the_video_weights_and_matches_sam2model(
    tiny_hf_sam2_spec: str, frames: list[np.ndarray]
) -> None:
    import torch
    from transformers import Sam2Model

    from revseg.tools.trackers.hf_sam2 import image_model

    tracker = build_tracker(tiny_hf_sam2_spec, device="cpu")
    shared = image_model(tracker._model)  # type: ignore[union-attr]
    video_weights = tracker._model.state_dict()  # type: ignore[union-attr]
    assert all(p.data_ptr() == video_weights[n].data_ptr() for n, p in shared.named_parameters())

    folder = tiny_hf_sam2_spec.split(":", 1)[1]
    reference = Sam2Model.from_pretrained(folder).eval()
    inputs = tracker._processor(images=[frames[0].copy()], input_boxes=[[list(BOXES[0][0])]], return_tensors="pt")  # type: ignore[union-attr]
    with torch.inference_mode():
        a = shared(pixel_values=inputs["pixel_values"], input_boxes=inputs["input_boxes"], multimask_output=False)
        b = reference(pixel_values=inputs["pixel_values"], input_boxes=inputs["input_boxes"], multimask_output=False)
    assert torch.equal(a.pred_masks, b.pred_masks)


def test_hf_bfloat16_path_runs(tiny_hf_sam2_spec: str, frames: list[np.ndarray]) -> None:
    tracker = build_tracker(f"{tiny_hf_sam2_spec}?dtype=bfloat16", device="cpu")
    out = tracker.segment_boxes(frames[:2], BOXES[:2])  # type: ignore[union-attr]
    assert [m.shape for m in out] == [(2, ODD_SIZE[1], ODD_SIZE[0]), (0, ODD_SIZE[1], ODD_SIZE[0])]


@pytest.mark.gpu
@pytest.mark.parametrize("spec_fixture", TRACKER_SPECS)
def test_segments_on_cuda(request: pytest.FixtureRequest, spec_fixture: str, frames: list[np.ndarray]) -> None:
    import torch

    if not torch.cuda.is_available():
        pytest.skip("needs a CUDA device")
    tracker = build_tracker(request.getfixturevalue(spec_fixture), device="cuda")
    out = tracker.segment_boxes(frames, BOXES)  # type: ignore[union-attr]
    assert [m.shape for m in out] == [(len(b), *f.shape[:2]) for f, b in zip(frames, BOXES, strict=True)]
