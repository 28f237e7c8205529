"""Synthetic benchmarks in every public layout, written once per session."""

from __future__ import annotations

from pathlib import Path

import pytest

from revseg.testing import benchmarks as synth


@pytest.fixture(scope="session")
def datasets(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """Data roots of the six benchmarks from default_videos() (also MeViS v1 and valid, Ref-DAVIS17 official)."""
    root = tmp_path_factory.mktemp("benchmarks")
    return {
        "revos": synth.write_revos(root / "ReVOS"),
        "mevis": synth.write_mevis(root / "mevis"),
        "mevis-valid": synth.write_mevis(root / "mevis-valid", split="valid"),
        "mevis-v1": synth.write_mevis(root / "mevis-v1", version="v1"),
        "ref-youtube-vos": synth.write_refytvos(root / "ref-youtube-vos"),
        "reasonvos": synth.write_reasonvos(root / "ReasonVOS"),
        "ref-davis17": synth.write_refdavis(root / "ref-davis"),
        "ref-davis17-official": synth.write_refdavis(root / "ref-davis-official", layout="official"),
        "longrvos": synth.write_longrvos(root / "long_rvos"),
    }
