"""Evaluation: benchmark readers (one per benchmark, registered by name), J/F metrics, runner, reports.

::

    from revseg.evals import AgentSpec, evaluate, get_benchmark, score

    bench = get_benchmark("revos", "/data/ReVOS")
    report = evaluate(bench, "eval-out", AgentSpec(policy="hf:...", tracker="sam2:..."), workers=4, resume=True)
    report = score(bench, "other-method/predictions")        # no models: score existing predictions

Names load lazily; ``revseg.evals.metrics`` holds ``jaccard`` and ``boundary_f``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from revseg._lazy import lazy_getattr

_EXPORTS = {
    "BENCHMARKS": "revseg.evals.benchmarks",
    "get_benchmark": "revseg.evals.benchmarks",
    "Benchmark": "revseg.evals.base",
    "Sample": "revseg.evals.base",
    "GroundTruth": "revseg.evals.base",
    "AgentSpec": "revseg.evals.workers",
    "evaluate": "revseg.evals.runner",
    "score": "revseg.evals.runner",
    "Report": "revseg.evals.report",
    "SampleScore": "revseg.evals.scoring",
    "jaccard": "revseg.evals.metrics",
    "boundary_f": "revseg.evals.metrics",
}

if TYPE_CHECKING:
    from revseg.evals.base import Benchmark, GroundTruth, Sample
    from revseg.evals.benchmarks import BENCHMARKS, get_benchmark
    from revseg.evals.metrics import boundary_f, jaccard
    from revseg.evals.report import Report
    from revseg.evals.runner import evaluate, score
    from revseg.evals.scoring import SampleScore
    from revseg.evals.workers import AgentSpec


__getattr__ = lazy_getattr(__name__, _EXPORTS)


__all__ = [
    "BENCHMARKS",
    "AgentSpec",
    "Benchmark",
    "GroundTruth",
    "Report",
    "Sample",
    "SampleScore",
    "boundary_f",
    "evaluate",
    "get_benchmark",
    "jaccard",
    "score",
]
