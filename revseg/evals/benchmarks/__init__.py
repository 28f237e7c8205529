"""Benchmark readers, one module each, registered by name in :data:`BENCHMARKS`.

A new benchmark is one module with a :class:`~revseg.evals.base.Benchmark` subclass plus
one line here; nothing else changes (the runner, scorer and reports are shared).
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

from revseg.errors import DatasetError
from revseg.evals.base import Benchmark
from revseg.evals.benchmarks.longrvos import LongRVOS
from revseg.evals.benchmarks.mevis import MeViS
from revseg.evals.benchmarks.reasonvos import ReasonVOS
from revseg.evals.benchmarks.refdavis import RefDAVIS17
from revseg.evals.benchmarks.refytvos import RefYouTubeVOS
from revseg.evals.benchmarks.revos import ReVOS

BENCHMARKS: dict[str, type[Benchmark]] = {
    "revos": ReVOS,
    "reasonvos": ReasonVOS,
    "mevis": MeViS,
    "ref-youtube-vos": RefYouTubeVOS,
    "ref-davis17": RefDAVIS17,
    "longrvos": LongRVOS,
}
"""Benchmark name -> reader class."""

ALIASES = {
    "refytvos": "ref-youtube-vos",
    "ref-ytvos": "ref-youtube-vos",
    "refdavis": "ref-davis17",
    "ref-davis": "ref-davis17",
    "davis17": "ref-davis17",
    "long-rvos": "longrvos",
    "long_rvos": "longrvos",
}


def get_benchmark(
    name: str,
    data_root: str | Path,
    split: str | None = None,
    *,
    exclude_videos: Iterable[str] = (),
    version: str | None = None,
) -> Benchmark:
    """Open a benchmark by name (case-insensitive; aliases such as ``refytvos`` or ``long-rvos`` work) on its data root.

    ``version`` forces a dataset version (MeViS ``v1`` or ``v2``); by default it is detected from the files.
    """
    key = name.strip().lower()
    key = ALIASES.get(key, key)
    cls = BENCHMARKS.get(key)
    if cls is None:
        raise DatasetError(f"unknown benchmark '{name}'; known: {', '.join(BENCHMARKS)}")
    return cls(data_root, split, exclude_videos=exclude_videos, version=version)


__all__ = [
    "ALIASES",
    "BENCHMARKS",
    "LongRVOS",
    "MeViS",
    "ReVOS",
    "ReasonVOS",
    "RefDAVIS17",
    "RefYouTubeVOS",
    "get_benchmark",
]
