"""Overlay rendering: a playable H.264 mp4 with tinted masks and the keyframe box."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace

import av
import numpy as np
import pytest

from revseg.errors import OutputError, VideoError
from revseg.tools.frames import open_video
from revseg.tools.masks import MaskWriter, read_masks_json
from revseg.tools.render import object_colours, output_size, tint, write_overlay
from tests.tools.frame_reader_conformance import synthetic_frame, write_clip, write_frame_folder

pytestmark = pytest.mark.filterwarnings("ignore:__array__ implementation:DeprecationWarning")

W, H, T = 64, 48, 8


def decoded(path: Path) -> tuple[list[np.ndarray], SimpleNamespace]:
    """The file's frames and its stream's properties, read while the container is open (PyAV 19 refuses after)."""
    with av.open(str(path)) as container:
        stream = container.streams.video[0]
        frames = [f.to_ndarray(format="rgb24") for f in container.decode(stream)]
        codec = SimpleNamespace(name=stream.codec_context.name, pix_fmt=stream.codec_context.pix_fmt)
        info = SimpleNamespace(
            width=stream.width, height=stream.height, average_rate=stream.average_rate, codec_context=codec
        )
    return frames, info


@pytest.fixture
def clip(tmp_path: Path) -> Path:
    return write_clip(tmp_path / "clip.mp4", T, W, H)


def write_masks(out: Path, num_frames: int, width: int, height: int, objects: int = 2) -> Path:
    """Object 1 fills the left third, object 2 the right third, on every frame."""
    masks = np.zeros((objects, height, width), bool)
    masks[0, :, : width // 3] = True
    if objects > 1:
        masks[1, :, 2 * width // 3 :] = True
    with MaskWriter(out, num_frames=num_frames, size=(width, height)) as writer:
        for t in range(num_frames):
            writer.write(t, masks)
    return writer.json_path


def test_overlay_is_h264_yuv420p_with_every_frame(clip: Path, tmp_path: Path) -> None:
    masks = write_masks(tmp_path / "masks", T, W, H)
    out = write_overlay(open_video(clip), masks, tmp_path / "overlay.mp4")
    frames, stream = decoded(out)
    assert out == tmp_path / "overlay.mp4"
    assert len(frames) == T
    assert (stream.codec_context.name, stream.codec_context.pix_fmt) == ("h264", "yuv420p")
    assert (stream.width, stream.height) == (W, H)
    assert not list(tmp_path.glob(".*tmp*"))


def test_masks_are_tinted_and_the_rest_untouched(clip: Path, tmp_path: Path) -> None:
    masks = write_masks(tmp_path / "masks", T, W, H)
    out = write_overlay(open_video(clip), read_masks_json(masks), tmp_path / "overlay.mp4", alpha=0.6)
    frames, _ = decoded(out)
    source = open_video(clip).read([3])[0].astype(float)
    got = frames[3].astype(float)
    red, green = object_colours(2).astype(float)
    middle = (slice(8, 40), slice(W // 3 + 4, 2 * W // 3 - 4))
    left, right = (slice(8, 40), slice(2, W // 3 - 4)), (slice(8, 40), slice(2 * W // 3 + 4, W - 2))
    assert np.abs(got[middle] - source[middle]).mean() < 8  # only compression noise
    assert np.abs(got[left] - (0.4 * source[left] + 0.6 * red)).mean() < 10
    assert np.abs(got[right] - (0.4 * source[right] + 0.6 * green)).mean() < 10


def test_box_is_drawn_on_the_keyframe_only(clip: Path, tmp_path: Path) -> None:
    masks = write_masks(tmp_path / "masks", T, W, H, objects=1)
    plain, _ = decoded(write_overlay(open_video(clip), masks, tmp_path / "plain.mp4"))
    boxed, _ = decoded(
        write_overlay(open_video(clip), masks, tmp_path / "boxed.mp4", box=(30, 10, 60, 40), keyframe_index=5)
    )
    edge = (slice(10, 40), slice(59, 61))  # the box's right edge
    assert np.abs(boxed[5][edge].astype(int) - plain[5][edge].astype(int)).mean() > 40
    for t in (0, 4, 6):  # other frames differ only by encoder noise (they reference frame 5)
        assert np.abs(boxed[t][edge].astype(int) - plain[t][edge].astype(int)).mean() < 15


def test_odd_sizes_are_cropped_to_even(tmp_path: Path) -> None:
    folder = write_frame_folder(tmp_path / "frames", [synthetic_frame(i, 63, 47) for i in range(3)])
    masks = write_masks(tmp_path / "masks", 3, 63, 47)
    frames, stream = decoded(write_overlay(open_video(folder), masks, tmp_path / "overlay.mp4"))
    assert (stream.width, stream.height) == (62, 46)
    assert len(frames) == 3
    assert float(stream.average_rate or 0) == 24.0  # frame folders carry no fps


def test_long_edges_are_downscaled(tmp_path: Path) -> None:
    folder = write_frame_folder(tmp_path / "frames", [synthetic_frame(i, 1500, 302) for i in range(2)], ".jpg")
    masks = write_masks(tmp_path / "masks", 2, 1500, 302)
    out = write_overlay(open_video(folder), masks, tmp_path / "overlay.mp4", box=(10, 10, 1400, 290), keyframe_index=0)
    frames, stream = decoded(out)
    assert (stream.width, stream.height) == (1280, 258)
    assert frames[0].shape == (258, 1280, 3)
    _, stream = decoded(write_overlay(open_video(folder), masks, tmp_path / "full.mp4", max_long_edge=None))
    assert (stream.width, stream.height) == (1500, 302)


def test_fps_follows_the_video_unless_given(clip: Path, tmp_path: Path) -> None:
    masks = write_masks(tmp_path / "masks", T, W, H)
    _, stream = decoded(write_overlay(open_video(clip), masks, tmp_path / "a.mp4"))
    assert float(stream.average_rate or 0) == 25.0
    _, stream = decoded(write_overlay(open_video(clip), masks, tmp_path / "b.mp4", fps=10))
    assert float(stream.average_rate or 0) == 10.0


def test_masks_that_do_not_fit_the_video_are_refused(clip: Path, tmp_path: Path) -> None:
    with pytest.raises(VideoError, match="masks hold 3 frames"):
        write_overlay(open_video(clip), write_masks(tmp_path / "m1", 3, W, H), tmp_path / "o.mp4")
    with pytest.raises(VideoError, match="32x48"):
        write_overlay(open_video(clip), write_masks(tmp_path / "m2", T, 32, H), tmp_path / "o.mp4")


def test_unwritable_output_is_an_output_error(clip: Path, tmp_path: Path) -> None:
    masks = write_masks(tmp_path / "masks", T, W, H)
    with pytest.raises(OutputError, match="does not exist"):
        write_overlay(open_video(clip), masks, tmp_path / "missing" / "overlay.mp4")


def test_no_target_run_renders_the_plain_video(clip: Path, tmp_path: Path) -> None:
    writer = MaskWriter(tmp_path / "masks", num_frames=T, size=(W, H), num_objects=0)
    writer.write_empty()
    frames, _ = decoded(write_overlay(open_video(clip), writer.close(), tmp_path / "overlay.mp4"))
    source = open_video(clip).read([2])[0]
    assert np.abs(frames[2].astype(int) - source.astype(int)).mean() < 5


def test_helpers() -> None:
    assert output_size(1920, 1080, 1280) == (1280, 720)
    assert output_size(63, 47, 1280) == (62, 46)
    assert output_size(720, 1280, 1280) == (720, 1280)
    frame = np.full((2, 2, 3), 100, np.uint8)
    masks = np.array([[[True, False], [False, False]], [[True, True], [False, False]]])
    out = tint(frame, masks, np.array([[200, 0, 0], [0, 200, 0]], np.uint8), alpha=0.5)
    assert out[0, 0].tolist() == [75, 125, 25]  # red first, then green over it
    assert out[1, 1].tolist() == [100, 100, 100]
