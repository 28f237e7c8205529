"""The sam2: tracker backend: spec resolution, input paths (native and exported), prompts, errors.

The backend-independent contract is checked by the conformance suite (tracker_conformance.py);
here are the parts only sam2 has: its spec forms, how frames reach ``init_state``, its
propagation order, and the sam2 quirks we guard against (decord bridge, progress bars).
"""

from __future__ import annotations

import re
import shutil
import time
from collections.abc import Iterator, Sequence
from contextlib import closing
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from revseg.errors import ModelLoadError, SpecError, TrackerError, VideoError
from revseg.tools.frames import FrameReader, open_video
from revseg.tools.trackers import build_tracker
from revseg.tools.trackers import sam2 as sam2_backend
from revseg.tools.trackers.sam2 import Sam2Tracker, native_input, pick_device, resolve_sam2_spec
from revseg.trajectory import VideoRef
from tests.tools.tracker_conformance import bikes_frames, middle_boxes, write_frames, write_mp4

CLIP_FRAMES = 10


pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture(scope="module")
def tracker(tiny_sam2_spec: str) -> Sam2Tracker:
    built = build_tracker(tiny_sam2_spec, device="cpu")
    assert isinstance(built, Sam2Tracker)
    return built


@pytest.fixture(scope="module")
def frames(bikes_mp4: Path) -> list[np.ndarray]:
    return bikes_frames(bikes_mp4, CLIP_FRAMES)


@pytest.fixture(scope="module")
def clips(frames: list[np.ndarray], tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """The same 10 real frames as an mp4, a JPEG folder, a PNG folder and JPEGs with non-integer names."""
    root = tmp_path_factory.mktemp("sam2-clips")
    return {
        "mp4": write_mp4(root / "clip.mp4", frames),
        "jpg": write_frames(root / "jpg", frames, ".jpg"),
        "png": write_frames(root / "png", frames, ".png"),
        "named_jpg": write_frames(root / "named", frames, ".jpg", [f"frame_{i:03d}" for i in range(CLIP_FRAMES)]),
    }


def reader_for(path: Path) -> closing[FrameReader]:
    return closing(open_video(path))


def track_all(tracker: Sam2Tracker, reader: FrameReader, keyframe: int = 4, n: int = 1) -> list[tuple[int, np.ndarray]]:
    return [(fm.frame_index, fm.masks) for fm in tracker.track(reader, keyframe, middle_boxes(reader, n))]


# --- how frames reach sam2 ------------------------------------------------------------


@pytest.mark.parametrize(("kind", "native"), [("mp4", True), ("jpg", True), ("png", False), ("named_jpg", False)])
def test_sam2_reads_mp4_and_integer_jpeg_folders_itself_and_the_rest_is_exported(
    tracker: Sam2Tracker, clips: dict[str, Path], kind: str, native: bool, monkeypatch: pytest.MonkeyPatch
) -> None:
    exported: list[Path] = []
    real_export = sam2_backend.export_jpeg_frames

    def spy(video: FrameReader, folder: Path, *, progress: bool = False) -> int:
        exported.append(folder)
        return real_export(video, folder, progress=progress)

    monkeypatch.setattr(sam2_backend, "export_jpeg_frames", spy)
    with reader_for(clips[kind]) as reader:
        assert (native_input(reader.ref) is not None) is native
        out = track_all(tracker, reader)
    assert sorted(i for i, _ in out) == list(range(CLIP_FRAMES))
    assert all(m.shape == (1, 272, 640) and m.dtype == np.bool_ for _, m in out)
    assert bool(exported) is not native
    assert all(not folder.exists() for folder in exported), "the temporary JPEG export must be removed"


def test_exported_frames_track_like_the_native_jpeg_folder(tracker: Sam2Tracker, clips: dict[str, Path]) -> None:
    """The PNG clip goes through a q95 JPEG export: masks agree closely with the native JPEG path (pixel caveat)."""
    with reader_for(clips["jpg"]) as a, reader_for(clips["png"]) as b:
        native, exported = dict(track_all(tracker, a)), dict(track_all(tracker, b))
    agreement = np.mean([np.mean(native[i] == exported[i]) for i in range(CLIP_FRAMES)])
    assert agreement > 0.98, agreement


def test_native_mp4_leaves_decord_returning_numpy(tracker: Sam2Tracker, clips: dict[str, Path]) -> None:
    """sam2's mp4 loader switches decord's bridge to torch; the backend must switch it back."""
    import decord.bridge

    with closing(open_video(clips["mp4"], backend="decord")) as reader:
        track_all(tracker, reader)
        assert getattr(decord.bridge._CURRENT_BRIDGE, "type", "native") == "native"
        assert isinstance(reader.read([3])[0], np.ndarray)


@pytest.mark.parametrize("backend", ["pyav", "decord"])
def test_mp4_goes_to_sam2_natively_whichever_reader_opened_it(clips: dict[str, Path], backend: str) -> None:
    """sam2 decodes mp4 with decord: fine wherever revseg's decord reader accepts the file, whoever opened it."""
    with closing(open_video(clips["mp4"], backend=backend)) as reader:
        assert native_input(reader.ref) == str(clips["mp4"])


def test_mp4_decord_declines_is_exported(tmp_path: Path, frames: list[np.ndarray]) -> None:
    """A rotated mp4: decord would hand sam2 sideways (or malformed) frames, so sam2 must not decode it itself."""
    import av

    path = tmp_path / "rotated.mp4"
    with av.open(str(path), "w") as container:
        stream: Any = container.add_stream("libx264", rate=25)
        stream.width, stream.height, stream.pix_fmt = 640, 272, "yuv420p"
        stream.set_display_rotation(90)
        for frame in frames[:4]:
            container.mux(stream.encode(av.VideoFrame.from_ndarray(frame, format="rgb24")))
        container.mux(stream.encode())
    with closing(open_video(path)) as reader:
        assert (reader.ref.width, reader.ref.height) == (272, 640)  # upright
        assert native_input(reader.ref) is None


def test_jpeg_folder_with_unpadded_names_is_exported(tmp_path: Path, frames: list[np.ndarray]) -> None:
    """``2.jpg`` sorts after ``10.jpg`` by name: only zero-padded integer names go to sam2 directly."""
    folder = write_frames(tmp_path / "unpadded", frames, ".jpg", [str(2 * i) for i in range(CLIP_FRAMES)])
    ref = VideoRef(path=str(folder), num_frames=CLIP_FRAMES, width=640, height=272, backend="folder")
    assert native_input(ref) is None
    assert native_input(ref.model_copy(update={"num_frames": 9})) is None


def test_reader_that_yields_fewer_frames_than_it_claims_is_a_video_error(
    tracker: Sam2Tracker, clips: dict[str, Path]
) -> None:
    with reader_for(clips["png"]) as reader:
        lying = _ShortReader(reader)
        with pytest.raises(VideoError, match="yielded 9 frames"):
            track_all(tracker, lying)


class _ShortReader:
    """A reader whose stream ends one frame early."""

    def __init__(self, inner: FrameReader) -> None:
        self._inner = inner

    @property
    def ref(self) -> VideoRef:
        return self._inner.ref

    def read(self, indices: Sequence[int]) -> list[np.ndarray]:
        return self._inner.read(indices)

    def iter_frames(self, start: int = 0, stop: int | None = None) -> Iterator[np.ndarray]:
        yield from list(self._inner.iter_frames(start, stop))[:-1]

    def close(self) -> None:
        self._inner.close()


# --- propagation -------------------------------------------------------------------------


def test_propagates_forwards_from_the_keyframe_then_backwards(tracker: Sam2Tracker, clips: dict[str, Path]) -> None:
    with reader_for(clips["jpg"]) as reader:
        order = [i for i, _ in track_all(tracker, reader, keyframe=6)]
    assert order == [6, 7, 8, 9, 5, 4, 3, 2, 1, 0]


def test_several_boxes_are_tracked_as_separate_objects(tracker: Sam2Tracker, clips: dict[str, Path]) -> None:
    with reader_for(clips["jpg"]) as reader:
        out = track_all(tracker, reader, keyframe=0, n=2)
    masks = np.stack([m for _, m in out])
    assert masks.shape == (CLIP_FRAMES, 2, 272, 640)
    assert masks.any(), "the tiny model is biased to see its object: masks must not all be empty"
    assert not np.array_equal(masks[:, 0], masks[:, 1]), "two different boxes gave identical masks"


def test_falls_back_to_exported_frames_when_sam2_reads_the_video_differently(
    tracker: Sam2Tracker,
    clips: dict[str, Path],
    tmp_path: Path,
    frames: list[np.ndarray],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """If sam2's own decoding disagrees with the frame reader (count or size), the reader's frames win."""
    shorter = write_frames(tmp_path / "shorter", frames[:3], ".jpg")
    monkeypatch.setattr(sam2_backend, "native_input", lambda ref: str(shorter))
    with reader_for(clips["png"]) as reader:
        out = track_all(tracker, reader)
    assert sorted(i for i, _ in out) == list(range(CLIP_FRAMES))


def test_numpy_boxes_are_accepted(tracker: Sam2Tracker, clips: dict[str, Path]) -> None:
    with reader_for(clips["jpg"]) as reader:
        boxes = np.array([[20, 30, 200, 220], [300, 40, 500, 200]], dtype=np.float32)
        out = list(tracker.track(reader, 1, list(boxes)))
    assert out[0].masks.shape == (2, 272, 640)


def test_boxes_reaching_outside_the_frame_are_clipped(tracker: Sam2Tracker, clips: dict[str, Path]) -> None:
    with reader_for(clips["jpg"]) as reader:
        out = list(tracker.track(reader, 2, [(-50.0, -20.0, 9000.0, 100.0)]))
        clipped = {fm.frame_index: fm.masks for fm in tracker.track(reader, 2, [(0.0, 0.0, 640.0, 100.0)])}
    assert reader.ref.width == 640 and len(out) == CLIP_FRAMES
    assert all(np.array_equal(fm.masks, clipped[fm.frame_index]) for fm in out)  # tracked as the clipped box is


@pytest.mark.slow
def test_full_bikes_clip_every_frame_once(tracker: Sam2Tracker, bikes_mp4: Path) -> None:
    """The whole real clip (250 frames, 640x272) through sam2's native mp4 path, keyframe in the middle."""
    with reader_for(bikes_mp4) as reader:
        start = time.perf_counter()
        seen = [fm.frame_index for fm in tracker.track(reader, 125, [(200.0, 60.0, 420.0, 260.0)])]
        elapsed = time.perf_counter() - start
    assert sorted(seen) == list(range(250))
    print(f"tiny sam2: 250 frames in {elapsed:.2f} s ({elapsed / 250 * 1000:.1f} ms/frame)")


# --- prompt and runtime errors -------------------------------------------------------------


@pytest.mark.parametrize(
    ("boxes", "message"),
    [
        ([(10.0, 10.0, 10.0, 10.0)], "no area"),
        ([(100.0, 10.0, 50.0, 60.0)], "no area"),  # x2 < x1
        ([(10.0, -40.0, 60.0, -1.0)], "no area"),  # wholly above the frame
        ([(10.0, 10.0, float("nan"), 60.0)], "four finite numbers"),
        ([(10.0, 10.0, 60.0)], "four finite numbers"),
        ([(10.0, 10.0, 60.0, 60.0), (5.0, 5.0, 5.0, 9.0)], "box 1"),
    ],
)
def test_bad_boxes_raise_before_any_work(
    tracker: Sam2Tracker, clips: dict[str, Path], boxes: list[tuple[float, ...]], message: str
) -> None:
    with reader_for(clips["jpg"]) as reader, pytest.raises(TrackerError, match=message):
        tracker.track(reader, 0, boxes)  # type: ignore[arg-type]  # raises at call time, not on iteration


def test_keyframe_out_of_range_names_the_video(tracker: Sam2Tracker, clips: dict[str, Path]) -> None:
    with (
        reader_for(clips["jpg"]) as reader,
        pytest.raises(TrackerError, match=r"keyframe 10 is out of range.*10 frames"),
    ):
        tracker.track(reader, 10, [(1.0, 1.0, 20.0, 20.0)])


def test_sam2_failures_become_tracker_errors_naming_the_video(
    tracker: Sam2Tracker, clips: dict[str, Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    def boom(*args: object, **kwargs: object) -> None:
        raise RuntimeError("CUDA out of memory. Tried to allocate 2.00 GiB")

    monkeypatch.setattr(tracker._model, "propagate_in_video", boom)
    with reader_for(clips["jpg"]) as reader, pytest.raises(TrackerError) as info:
        track_all(tracker, reader)
    assert str(clips["jpg"]) in str(info.value)
    assert "offload_video_to_cpu" in str(info.value)
    assert isinstance(info.value.__cause__, RuntimeError)


def test_progress_bars_only_when_asked(
    tracker: Sam2Tracker, clips: dict[str, Path], capsys: pytest.CaptureFixture[str]
) -> None:
    with reader_for(clips["png"]) as reader:
        list(tracker.track(reader, 3, middle_boxes(reader, 1)))
        quiet = capsys.readouterr().err
        list(tracker.track(reader, 3, middle_boxes(reader, 1), progress=True))
        loud = capsys.readouterr().err
    assert quiet == ""
    assert "export frames" in loud
    # one bar over the whole video, both directions, with its ETA (sam2's per-direction bars stay off)
    assert "propagate in video" not in loud
    assert "10/10 frames" in loud and "ETA" in loud


def test_a_smaller_tracking_resolution_gives_masks_at_the_videos_size(
    tiny_sam2_spec: str, clips: dict[str, Path]
) -> None:
    small = build_tracker(f"{tiny_sam2_spec}?image_size=64", device="cpu")
    assert isinstance(small, Sam2Tracker)
    assert small._model.image_size == 64  # the tiny model's own is 128
    with reader_for(clips["jpg"]) as reader:
        tracked = track_all(small, reader)
        size = (reader.ref.height, reader.ref.width)
    assert sorted(i for i, _ in tracked) == list(range(CLIP_FRAMES))
    assert all(masks.shape == (1, *size) for _, masks in tracked)


@pytest.mark.parametrize("size", [100, 0, True, "big"])
def test_image_size_must_be_a_multiple_of_64(tiny_sam2_spec: str, size: object) -> None:
    with pytest.raises(SpecError, match="multiple of 64"):
        build_tracker(tiny_sam2_spec, device="cpu", image_size=size)


# --- specs and loading --------------------------------------------------------------------


def test_tiny_spec_loads_through_the_user_path(tiny_sam2_spec: str) -> None:
    _, config, checkpoint = tiny_sam2_spec.split(":")
    weights = resolve_sam2_spec(tiny_sam2_spec)
    assert (weights.config, weights.checkpoint) == (Path(config), Path(checkpoint))


@pytest.mark.parametrize(
    "name", ["configs/sam2.1/sam2.1_hiera_t.yaml", "configs/sam2.1/sam2.1_hiera_t", "sam2_hiera_l.yaml"]
)
def test_package_config_names_resolve_inside_sam2(name: str, tiny_sam2_spec: str) -> None:
    checkpoint = tiny_sam2_spec.rsplit(":", 1)[1]
    weights = resolve_sam2_spec(f"sam2:{name}:{checkpoint}")
    assert weights.config.is_file()
    assert weights.config.parts[-3:-1] in {("configs", "sam2.1"), ("site-packages", "sam2")}


def test_missing_checkpoint_names_the_file(tmp_path: Path) -> None:
    missing = tmp_path / "nope.pt"
    with pytest.raises(ModelLoadError, match=re.escape(str(missing))):
        build_tracker(f"sam2:configs/sam2.1/sam2.1_hiera_t.yaml:{missing}")


def test_unknown_config_lists_the_packaged_ones(tiny_sam2_spec: str) -> None:
    checkpoint = tiny_sam2_spec.rsplit(":", 1)[1]
    with pytest.raises(ModelLoadError, match=r"sam2 config 'configs/sam3/huge.yaml' not found.*sam2\.1_hiera_l\.yaml"):
        build_tracker(f"sam2:configs/sam3/huge.yaml:{checkpoint}")


def test_config_without_model_section(tmp_path: Path, tiny_sam2_spec: str) -> None:
    config = tmp_path / "bad.yaml"
    config.write_text("trainer:\n  lr: 1\n")
    with pytest.raises(ModelLoadError, match="no top-level 'model'"):
        build_tracker(f"sam2:{config}:{tiny_sam2_spec.rsplit(':', 1)[1]}")


def test_checkpoint_that_does_not_fit_the_config(tmp_path: Path, tiny_sam2_spec: str) -> None:
    _, config, checkpoint = tiny_sam2_spec.split(":")
    other = tmp_path / "other.yaml"
    other.write_text(Path(config).read_text().replace("num_maskmem: 7", "num_maskmem: 5"))
    with pytest.raises(ModelLoadError, match=r"does not fit config .*maskmem_tpos_enc"):
        build_tracker(f"sam2:{other}:{checkpoint}")


@pytest.mark.parametrize("content", [b"not a checkpoint", None])
def test_unreadable_checkpoint(tmp_path: Path, tiny_sam2_spec: str, content: bytes | None) -> None:
    import torch

    bad = tmp_path / "bad.pt"
    if content is None:
        torch.save({"state_dict": {}}, bad)  # a torch file, not in sam2's {"model": ...} format
    else:
        bad.write_bytes(content)
    with pytest.raises(ModelLoadError, match=re.escape(str(bad))):
        build_tracker(f"sam2:{tiny_sam2_spec.split(':')[1]}:{bad}")


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        ("sam2:someone/my-sam2", "not a sam2 hub id"),
        ("sam2::/tmp/x.pt", "both CONFIG and CHECKPOINT"),
        ("sam2:configs/sam2.1/sam2.1_hiera_t.yaml:", "both CONFIG and CHECKPOINT"),
        ("hf-sam2:facebook/sam2.1-hiera-large", "not a sam2 spec"),
    ],
)
def test_malformed_sam2_specs(spec: str, message: str) -> None:
    with pytest.raises(SpecError, match=message):
        resolve_sam2_spec(spec)


def test_hub_id_without_hub_fails_fast_with_a_local_hint(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    import huggingface_hub.constants

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_CACHE", str(tmp_path))  # nothing cached
    start = time.perf_counter()
    with pytest.raises(ModelLoadError) as info:
        build_tracker("sam2:facebook/sam2.1-hiera-large")
    assert time.perf_counter() - start < 5
    assert "sam2:configs/sam2.1/sam2.1_hiera_l.yaml:/path/to/sam2.1_hiera_large.pt" in str(info.value)


def test_local_file_or_folder_with_a_released_checkpoint_name(tmp_path: Path, tiny_sam2_spec: str) -> None:
    """``sam2:/path/sam2.1_hiera_tiny.pt`` or its folder picks the matching packaged config."""
    released = tmp_path / "sam2.1_hiera_tiny.pt"
    shutil.copy(tiny_sam2_spec.rsplit(":", 1)[1], released)
    for ref in (released, tmp_path):
        weights = resolve_sam2_spec(f"sam2:{ref}")
        assert weights.checkpoint == released
        assert weights.config.name == "sam2.1_hiera_t.yaml"


def test_device_choice() -> None:
    import torch

    assert pick_device(None).type == ("cuda" if torch.cuda.is_available() else "cpu")
    assert pick_device("cpu").type == "cpu"
    with pytest.raises(ModelLoadError, match="unknown tracker device"):
        pick_device("tpu-please")
    if not torch.cuda.is_available():
        with pytest.raises(ModelLoadError, match="CUDA is not available"):
            pick_device("cuda")


@pytest.mark.gpu
def test_tracks_on_cuda_with_bf16_autocast(tiny_sam2_spec: str, clips: dict[str, Path]) -> None:
    import torch

    if not torch.cuda.is_available():
        pytest.skip("needs a CUDA device")
    cuda = build_tracker(tiny_sam2_spec, device="cuda")
    assert isinstance(cuda, Sam2Tracker) and cuda.device.startswith("cuda")
    with reader_for(clips["mp4"]) as reader:
        out = track_all(cuda, reader, keyframe=5, n=2)
    assert sorted(i for i, _ in out) == list(range(CLIP_FRAMES))
    assert all(m.dtype == np.bool_ and m.shape == (2, 272, 640) for _, m in out)
    assert not torch.is_autocast_enabled("cuda"), "autocast must not leak out of the tracker"


# --- windowed tracking (bounded memory on long videos) ------------------------------------------

WINDOW_CLIP_FRAMES = 30


@pytest.fixture(scope="module")
def window_clip(bikes_mp4: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """30 real frames at a quarter size, as PNGs (exported to JPEG whether windowed or not): several windows of 8."""
    frames = bikes_frames(bikes_mp4, WINDOW_CLIP_FRAMES, (160, 68))
    return write_frames(tmp_path_factory.mktemp("sam2-window") / "png", frames, ".png")


def test_one_window_over_the_whole_video_tracks_exactly_as_without(
    tracker: Sam2Tracker, tiny_sam2_spec: str, window_clip: Path
) -> None:
    windowed = build_tracker(f"{tiny_sam2_spec}?window={WINDOW_CLIP_FRAMES}", device="cpu")
    assert isinstance(windowed, Sam2Tracker) and windowed.window == WINDOW_CLIP_FRAMES
    with reader_for(window_clip) as reader:
        boxes = middle_boxes(reader, 2)
        plain = dict(track_all(tracker, reader, 12, 2))
        short_video = dict(track_all(windowed, reader, 12, 2))  # a video no longer than the window skips windowing
        # the windowed machinery itself (frame export, a fresh state, window-local indices) as one window
        whole = windowed._propagate_windowed(reader, 12, boxes, False, WINDOW_CLIP_FRAMES)
        one_window = {m.frame_index: m.masks for m in whole}
    assert sorted(one_window) == list(range(WINDOW_CLIP_FRAMES))
    assert all(np.array_equal(plain[i], short_video[i]) for i in range(WINDOW_CLIP_FRAMES))
    assert all(np.array_equal(plain[i], one_window[i]) for i in range(WINDOW_CLIP_FRAMES))
    assert any(plain[i].any() for i in range(WINDOW_CLIP_FRAMES) if i != 12), "masks beyond the keyframe to compare"


@pytest.mark.parametrize("keyframe", [0, 13, WINDOW_CLIP_FRAMES - 1])
def test_windows_cover_every_frame_once_and_hold_at_most_window_frames(
    tiny_sam2_spec: str, window_clip: Path, keyframe: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    windowed = build_tracker(tiny_sam2_spec, device="cpu", window=8)
    assert isinstance(windowed, Sam2Tracker)
    loaded: list[int] = []
    real_init = windowed._init_from

    def spy(source: str) -> dict:
        state = real_init(source)
        loaded.append(state["num_frames"])
        return state

    monkeypatch.setattr(windowed, "_init_from", spy)
    with reader_for(window_clip) as reader:
        out = track_all(windowed, reader, keyframe, 2)
        plain = dict(track_all(build_tracker(tiny_sam2_spec, device="cpu"), reader, keyframe, 2))  # type: ignore[arg-type]
    assert sorted(i for i, _ in out) == list(range(WINDOW_CLIP_FRAMES))
    assert all(m.shape == (2, 68, 160) for _, m in out)
    # 30 frames in windows of 8 that overlap by one: at least ceil(29 / 7) states, none over 8 frames
    assert max(loaded) <= 8 and len(loaded) >= 5
    # the window around the keyframe is tracked as without windows from the keyframe forwards (sam2 remembers
    # only frames already tracked in the direction of travel); beyond it, each stretch starts from a seam mask
    start = min(max(keyframe - 4, 0), WINDOW_CLIP_FRAMES - 8)
    first_window_forwards = range(keyframe, start + 8)
    assert all(np.array_equal(dict(out)[i], plain[i]) for i in first_window_forwards), list(first_window_forwards)


@pytest.mark.parametrize(
    ("options", "message"),
    [({"window": 1}, "at least 2"), ({"window": "big"}, "at least 2"), ({"windows": 8}, "unknown option windows")],
)
def test_bad_window_options_are_spec_errors(tiny_sam2_spec: str, options: dict, message: str) -> None:
    with pytest.raises(SpecError, match=message):
        build_tracker(tiny_sam2_spec, device="cpu", **options)


def test_memory_options_ride_in_the_spec(tiny_sam2_spec: str) -> None:
    spec = f"{tiny_sam2_spec}?offload_video_to_cpu=true&offload_state_to_cpu=1&window=64"
    built = build_tracker(spec, device="cpu")
    assert isinstance(built, Sam2Tracker) and built.spec == spec
    assert (built.offload_video_to_cpu, built.offload_state_to_cpu, built.window) == (True, True, 64)
