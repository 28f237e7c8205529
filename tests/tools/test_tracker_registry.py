"""The tracker registry: spec strings to backends, and the shared conformance suite over every backend."""

from __future__ import annotations

import subprocess
import sys

import pytest

from revseg.errors import SpecError
from revseg.tools.trackers import CPU_TRACKER, DEFAULT_TRACKER, PAPER_TRACKER, TRACKERS, build_tracker, choose_tracker
from revseg.tools.trackers.base import Tracker
from tests.tools.tracker_conformance import TrackerConformance


class TestTrackerConformance(TrackerConformance):
    """Every backend listed in ``tracker_conformance.TRACKER_SPECS`` passes the shared checks."""


@pytest.mark.parametrize("spec", ["none", "None", " none "])
def test_none_means_no_tracker(spec: str) -> None:
    assert build_tracker(spec) is None


def test_unknown_scheme_lists_the_known_ones() -> None:
    with pytest.raises(SpecError, match=r"unknown tracker scheme 'xmem'.*sam2:.*none"):
        build_tracker("xmem:/weights")


@pytest.mark.parametrize("spec", ["", "sam2", "sam2:", "sam2:   "])
def test_malformed_spec_is_a_spec_error(spec: str) -> None:
    with pytest.raises(SpecError, match="SCHEME:ARGS"):
        build_tracker(spec)


def test_registry_is_a_plain_dict_with_sam2() -> None:
    assert type(TRACKERS) is dict
    assert "sam2" in TRACKERS
    assert all(callable(factory) for factory in TRACKERS.values())
    assert DEFAULT_TRACKER == "auto"
    assert PAPER_TRACKER.split(":", 1)[0] in TRACKERS and CPU_TRACKER.split(":", 1)[0] in TRACKERS


def test_auto_picks_the_papers_tracker_on_a_gpu_and_a_smaller_faster_one_on_a_cpu() -> None:
    on_gpu, why_gpu = choose_tracker("cuda")
    on_cpu, why_cpu = choose_tracker("cpu")
    assert on_gpu == PAPER_TRACKER == "sam2:facebook/sam2.1-hiera-large"
    assert on_cpu == CPU_TRACKER and "hiera-tiny" in on_cpu and "image_size=512" in on_cpu
    assert "\n" not in why_cpu and "--paper" in why_cpu and on_cpu in why_cpu
    assert "GPU" in why_gpu


def test_auto_builds_the_chosen_tracker_and_records_its_spec(monkeypatch: pytest.MonkeyPatch) -> None:
    import revseg.tools.trackers as trackers

    built: list[str] = []
    monkeypatch.setitem(trackers.TRACKERS, "sam2", lambda spec, **_: built.append(spec) or spec)
    assert build_tracker("auto", device="cpu") == CPU_TRACKER
    assert built == [CPU_TRACKER]


def test_build_tracker_passes_device_and_options(tiny_sam2_spec: str) -> None:
    tracker = build_tracker(tiny_sam2_spec, device="cpu", offload_video_to_cpu=True, offload_state_to_cpu=True)
    assert isinstance(tracker, Tracker)
    assert tracker.spec == tiny_sam2_spec
    assert getattr(tracker, "device", None) == "cpu"
    assert getattr(tracker, "offload_video_to_cpu", None) is True
    assert getattr(tracker, "offload_state_to_cpu", None) is True


def test_importing_the_registry_loads_no_torch_or_sam2() -> None:
    code = (
        "import sys, revseg.tools.trackers, revseg.testing;"
        "heavy = [m for m in ('torch', 'sam2', 'hydra', 'transformers') if m in sys.modules];"
        "assert not heavy, heavy"
    )
    subprocess.run([sys.executable, "-c", code], check=True, timeout=60)
