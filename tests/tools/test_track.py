"""``track_video``: tracking without a policy, with both tracker backends through the user's loading path."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from revseg.errors import SpecError, TrackerError
from revseg.tools.masks import read_masks_json
from revseg.tools.track import parse_box, track_video
from tests.tools.tracker_conformance import bikes_frames, write_frames

BACKENDS = ["tiny_sam2_spec", "tiny_hf_sam2_spec"]


pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture(params=BACKENDS)
def spec(request: pytest.FixtureRequest) -> str:
    value = request.getfixturevalue(request.param)
    assert isinstance(value, str)
    return value


def test_two_objects_from_a_middle_keyframe_write_every_artefact(spec: str, small_clip: Path, tmp_path: Path) -> None:
    boxes = [(20.0, 30.0, 150.0, 170.0), (170.0, 20.0, 300.0, 160.0)]
    result = track_video(small_clip, 12, boxes, spec, tmp_path / "out", device="cpu")
    assert result.tracker == spec and result.keyframe_index == 12 and result.boxes == boxes
    pngs = sorted((tmp_path / "out" / "masks").glob("*.png"))
    assert len(pngs) == 24 and all(Image.open(p).size == (320, 180) for p in pngs)
    masks = read_masks_json(result.masks_json)
    assert (masks.num_frames, masks.objects, masks.missing) == (24, 2, [])
    for index in (0, 12, 23):
        per_object = masks.object_masks(index)
        assert per_object.shape == (2, 180, 320)
        assert np.array_equal(masks.union(index), per_object.any(axis=0))
    assert result.mask(12).any(), "a random model that masks nothing would check nothing"
    assert result.overlay is not None and result.overlay.stat().st_size > 0
    record = json.loads((tmp_path / "out" / "track.json").read_text())
    assert record["tracker"] == spec and record["keyframe_index"] == 12 and len(record["boxes"]) == 2
    assert record["video"]["num_frames"] == 24 and set(record["timings"]) >= {"track", "overlay"}


def test_one_frame_video(spec: str, bikes_mp4: Path, tmp_path: Path) -> None:
    folder = write_frames(tmp_path / "one", bikes_frames(bikes_mp4, 1, (160, 68)), ".png")
    result = track_video(folder, 0, [(10.0, 10.0, 80.0, 60.0)], spec, tmp_path / "out", overlay=False, device="cpu")
    masks = read_masks_json(result.masks_json)
    assert (masks.num_frames, masks.objects) == (1, 1) and result.overlay is None


@pytest.mark.parametrize(
    ("keyframe", "box", "message"),
    [
        (3, (50.0, 20.0, 50.0, 90.0), "no area"),  # zero width
        (3, (400.0, 10.0, 500.0, 90.0), "no area"),  # wholly right of the 320-wide frame
        (24, (10.0, 10.0, 50.0, 50.0), "keyframe 24 is out of range"),
    ],
    ids=["zero-width", "outside", "keyframe-past-end"],
)
def test_bad_prompts_fail_before_any_model_loads(
    small_clip: Path, tmp_path: Path, keyframe: int, box: tuple[float, float, float, float], message: str
) -> None:
    """The spec names weights that do not exist: the prompt error must come first, naming the video."""
    with pytest.raises(TrackerError, match=message) as info:
        track_video(small_clip, keyframe, [box], "hf-sam2:/no/such/weights", tmp_path / "out")
    assert str(small_clip) in str(info.value)
    assert not (tmp_path / "out").exists()


def test_tracker_none_cannot_track(small_clip: Path, tmp_path: Path) -> None:
    with pytest.raises(SpecError, match="cannot track"):
        track_video(small_clip, 0, [(10.0, 10.0, 50.0, 50.0)], "none", tmp_path / "out")


@pytest.mark.parametrize(
    ("text", "box"),
    [
        ("1,2,3,4", (1.0, 2.0, 3.0, 4.0)),
        (" 1.5, 2 ,30, 40 ", (1.5, 2.0, 30.0, 40.0)),
        ("1 2 3 4", (1.0, 2.0, 3.0, 4.0)),
    ],
)
def test_parse_box(text: str, box: tuple[float, ...]) -> None:
    assert parse_box(text) == box


@pytest.mark.parametrize("text", ["1,2,3", "1,2,3,4,5", "a,b,c,d", ""])
def test_parse_box_rejects_what_is_not_four_numbers(text: str) -> None:
    with pytest.raises(ValueError, match="four numbers"):
        parse_box(text)
