"""The hf-sam2: tracker backend: bounded streaming, loading, options, errors.

The backend-independent contract is checked by the conformance suite (tracker_conformance.py);
here are the parts only this backend has: the session trimming that bounds memory (and
must not change a single mask), the backwards walk over forward-only decoders, spec
options, and loading failures.
"""

from __future__ import annotations

import re
import shutil
import time
from contextlib import closing
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from revseg.errors import ModelLoadError, SpecError, TrackerError
from revseg.tools.frames import FrameReader, open_video
from revseg.tools.trackers import build_tracker
from revseg.tools.trackers import hf_sam2 as hf_backend
from revseg.tools.trackers.hf_sam2 import HFSam2Tracker, reverse_frames
from tests.tools.tracker_conformance import bikes_frames, middle_boxes, write_mp4

LONG_FRAMES = 48
SMALL = (160, 68)  # bikes at a quarter of its size: real motion, cheap to decode


pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture(scope="module")
def tracker(tiny_hf_sam2_spec: str) -> HFSam2Tracker:
    built = build_tracker(tiny_hf_sam2_spec, device="cpu")
    assert isinstance(built, HFSam2Tracker)
    return built


@pytest.fixture(scope="module")
def long_clip(bikes_mp4: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """48 real frames, long enough that trimming starts in both directions (memory window 15)."""
    return write_mp4(tmp_path_factory.mktemp("hf-sam2") / "bikes48.mp4", bikes_frames(bikes_mp4, LONG_FRAMES, SMALL))


@pytest.fixture(scope="module")
def short_clip(bikes_mp4: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """12 real frames at the same small size, for checks that need no trimming."""
    return write_mp4(tmp_path_factory.mktemp("hf-sam2") / "bikes12.mp4", bikes_frames(bikes_mp4, 12, SMALL))


def masks_by_frame(tracker: HFSam2Tracker, reader: FrameReader, keyframe: int, n: int = 2) -> dict[int, np.ndarray]:
    return {fm.frame_index: fm.masks for fm in tracker.track(reader, keyframe, middle_boxes(reader, n))}


def test_memory_window_covers_memories_and_object_pointers(tracker: HFSam2Tracker) -> None:
    config = tracker._model.config
    assert tracker.window == max(config.num_maskmem, config.max_object_pointers_in_encoder) - 1 == 15


def test_bounded_session_gives_exactly_the_masks_of_an_unbounded_one(
    tracker: HFSam2Tracker, tiny_hf_sam2_spec: str, long_clip: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Trimming drops only what later frames never read: every mask is bit-identical, and the session stays small."""
    unbounded = build_tracker(f"{tiny_hf_sam2_spec}?bounded=false", device="cpu")
    assert isinstance(unbounded, HFSam2Tracker) and unbounded.bounded is False
    sizes: list[tuple[int, int]] = []
    real_bound = hf_backend.bound_session

    def spy(session: Any, index: int, keyframe: int, window: int, *, reverse: bool) -> None:
        real_bound(session, index, keyframe, window, reverse=reverse)
        stored = max(len(o["non_cond_frame_outputs"]) for o in session.output_dict_per_obj.values())
        sizes.append((len(session.processed_frames), stored))

    monkeypatch.setattr(hf_backend, "bound_session", spy)
    keyframe = 8  # forwards runs 40 frames past it, backwards 8: trimming happens in both directions
    with closing(open_video(long_clip)) as reader:
        bounded = masks_by_frame(tracker, reader, keyframe)
        full = masks_by_frame(unbounded, reader, keyframe)
    assert sorted(bounded) == sorted(full) == list(range(LONG_FRAMES))
    assert all(np.array_equal(bounded[i], full[i]) for i in range(LONG_FRAMES))
    assert any(m.any() for m in bounded.values()), "a random model that masks nothing would check nothing"
    assert len(sizes) == LONG_FRAMES
    assert max(frames for frames, _ in sizes) == 0, "pixels of a tracked frame must not stay in the session"
    assert max(stored for _, stored in sizes) <= 2 * tracker.window + 1


def test_forwards_then_backwards_from_a_middle_keyframe(tracker: HFSam2Tracker, short_clip: Path) -> None:
    with closing(open_video(short_clip)) as reader:
        order = [fm.frame_index for fm in tracker.track(reader, 5, middle_boxes(reader, 1))]
    assert order == [*range(5, 12), *range(4, -1, -1)]


@pytest.mark.parametrize("chunk", [1, 5, 16, 100])
def test_reverse_frames_walks_backwards_in_bounded_chunks(long_clip: Path, chunk: int) -> None:
    with closing(open_video(long_clip)) as reader:
        forwards = list(reader.iter_frames(0, 30))
        backwards = list(reverse_frames(reader, 30, chunk=chunk))
    assert [i for i, _ in backwards] == list(range(29, -1, -1))
    assert all(np.array_equal(frame, forwards[i]) for i, frame in backwards)


def test_border_boxes_are_clipped_and_tracked(tracker: HFSam2Tracker, short_clip: Path) -> None:
    """Boxes touching or crossing the frame's edges are clipped to it, not rejected."""
    with closing(open_video(short_clip)) as reader:
        w, h = reader.ref.width, reader.ref.height
        boxes = [(0.0, 0.0, w / 3, h / 2), (w * 0.6, -20.0, w + 50.0, float(h))]
        out = list(tracker.track(reader, 11, boxes))
        inside = [(0.0, 0.0, w / 3, h / 2), (w * 0.6, 0.0, float(w), float(h))]
        clipped = {fm.frame_index: fm.masks for fm in tracker.track(reader, 11, inside)}
    assert sorted(fm.frame_index for fm in out) == list(range(12))
    assert all(fm.masks.shape == (2, h, w) for fm in out)
    assert all(np.array_equal(fm.masks, clipped[fm.frame_index]) for fm in out)  # tracked as the clipped boxes are


def test_model_failures_become_tracker_errors_naming_the_video(
    tracker: HFSam2Tracker, short_clip: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def boom(*args: object, **kwargs: object) -> None:
        raise RuntimeError("CUDA out of memory. Tried to allocate 2.00 GiB")

    monkeypatch.setattr(tracker, "_model", boom)
    with closing(open_video(short_clip)) as reader, pytest.raises(TrackerError) as info:
        list(tracker.track(reader, 3, middle_boxes(reader, 1)))
    assert str(short_clip) in str(info.value) and "out of memory" in str(info.value)
    assert isinstance(info.value.__cause__, RuntimeError)


def test_progress_bar_only_when_asked(
    tracker: HFSam2Tracker, short_clip: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    with closing(open_video(short_clip)) as reader:
        list(tracker.track(reader, 6, middle_boxes(reader, 1)))
        quiet = capsys.readouterr().err
        list(tracker.track(reader, 6, middle_boxes(reader, 1), progress=True))
        loud = capsys.readouterr().err
    assert quiet == "" and "hf-sam2: bikes12.mp4" in loud and "ETA" in loud


@pytest.mark.slow
def test_full_bikes_clip_two_objects_at_original_size(tracker: HFSam2Tracker, bikes_mp4: Path) -> None:
    """The whole real clip (250 frames, 640x272), keyframe in the middle, two objects."""
    with closing(open_video(bikes_mp4)) as reader:
        start = time.perf_counter()
        out = list(tracker.track(reader, 125, [(200.0, 60.0, 420.0, 260.0), (0.0, 100.0, 150.0, 272.0)]))
        elapsed = time.perf_counter() - start
    assert sorted(fm.frame_index for fm in out) == list(range(250))
    assert all(fm.masks.shape == (2, 272, 640) and fm.masks.dtype == np.bool_ for fm in out)
    print(f"tiny hf-sam2: 250 frames x 2 objects in {elapsed:.2f} s ({elapsed / 250 * 1000:.1f} ms/frame)")


# --- specs, options and loading ---------------------------------------------------------------


def test_options_in_the_spec_are_typed_and_recorded(tiny_hf_sam2_spec: str) -> None:
    spec = f"{tiny_hf_sam2_spec}?bounded=no&dtype=float32"
    built = build_tracker(spec, device="cpu")
    assert isinstance(built, HFSam2Tracker)
    assert built.spec == spec and built.bounded is False and built.dtype == "float32" and built.device == "cpu"


def test_keyword_options_win_over_spec_options(tiny_hf_sam2_spec: str) -> None:
    built = build_tracker(f"{tiny_hf_sam2_spec}?bounded=false", device="cpu", bounded=True)
    assert isinstance(built, HFSam2Tracker) and built.bounded is True


@pytest.mark.parametrize(
    ("suffix", "message"),
    [
        ("?window=300", r"unknown option window .*takes: bounded, dtype"),
        ("?dtype=int8", "dtype must be one of"),
        ("?bounded", "is not KEY=VALUE"),
    ],
)
def test_bad_options_are_spec_errors(tiny_hf_sam2_spec: str, suffix: str, message: str) -> None:
    with pytest.raises(SpecError, match=message):
        build_tracker(tiny_hf_sam2_spec + suffix, device="cpu")


def test_hub_id_without_hub_fails_fast_with_a_local_hint(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    import huggingface_hub.constants

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_CACHE", str(tmp_path))  # nothing cached
    start = time.perf_counter()
    with pytest.raises(ModelLoadError) as info:
        build_tracker("hf-sam2:facebook/sam2.1-hiera-tiny")
    assert time.perf_counter() - start < 5
    assert "hf-sam2:/path/to/sam2.1-hiera-tiny" in str(info.value)


def test_missing_folder_and_folder_without_config(tmp_path: Path) -> None:
    with pytest.raises(ModelLoadError, match="not found"):
        build_tracker(f"hf-sam2:{tmp_path / 'nope'}")
    with pytest.raises(ModelLoadError, match=re.escape(f"'{tmp_path}' have no config.json")):
        build_tracker(f"hf-sam2:{tmp_path}")


def test_folder_without_processor_names_it(tiny_hf_sam2_spec: str, tmp_path: Path) -> None:
    folder = Path(tiny_hf_sam2_spec.split(":", 1)[1])
    weights_only = tmp_path / "weights-only"
    weights_only.mkdir()
    for name in ("config.json", "model.safetensors"):
        shutil.copy(folder / name, weights_only / name)
    with pytest.raises(ModelLoadError, match=r"processor_config\.json"):
        build_tracker(f"hf-sam2:{weights_only}", device="cpu")


def test_not_an_hf_sam2_spec() -> None:
    with pytest.raises(SpecError, match="not an hf-sam2 spec"):
        HFSam2Tracker.from_spec("sam2:facebook/sam2.1-hiera-tiny")


@pytest.mark.gpu
def test_tracks_on_cuda_in_bfloat16(tiny_hf_sam2_spec: str, long_clip: Path) -> None:
    import torch

    if not torch.cuda.is_available():
        pytest.skip("needs a CUDA device")
    cuda = build_tracker(tiny_hf_sam2_spec, device="cuda")
    assert isinstance(cuda, HFSam2Tracker) and cuda.device.startswith("cuda") and cuda.dtype == "bfloat16"
    with closing(open_video(long_clip)) as reader:
        out = masks_by_frame(cuda, reader, 20)
    assert sorted(out) == list(range(LONG_FRAMES))
    assert all(m.dtype == np.bool_ and m.shape == (2, SMALL[1], SMALL[0]) for m in out.values())
