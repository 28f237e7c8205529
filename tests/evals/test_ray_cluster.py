"""`evaluate(..., ray_address=...)` on a real three-node Ray cluster on this machine (loopback only)."""

from __future__ import annotations

import json
import logging
import os
from pathlib import Path
from typing import Any

import pytest

from revseg.errors import RevsegError
from revseg.evals import evaluate, get_benchmark
from revseg.evals.base import Benchmark
from revseg.evals.report import Report, comparable
from revseg.evals.runner import RESULTS_JSONL
from revseg.testing.benchmarks import QueryBoxAgent

pytestmark = [pytest.mark.ray_cluster, pytest.mark.slow]


@pytest.fixture(scope="module")
def mevis(datasets: dict[str, Path]) -> Benchmark:
    return get_benchmark("mevis", datasets["mevis"])


@pytest.fixture(scope="module")
def local_report(mevis: Benchmark, tmp_path_factory: pytest.TempPathFactory) -> Report:
    """The same evaluation in one process: what every cluster run must reproduce."""
    return evaluate(mevis, tmp_path_factory.mktemp("one"), QueryBoxAgent())


def records(out: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in (out / RESULTS_JSONL).read_text().splitlines()]


def test_eval_over_a_three_node_cluster_on_loopback_spreads_over_the_nodes_and_equals_the_local_run(
    ray_cluster: Any, mevis: Benchmark, local_report: Report, tmp_path: Path
) -> None:
    import ray

    spread = evaluate(mevis, tmp_path, QueryBoxAgent(delay_s=0.2), workers=3, ray_address=ray_cluster.address)
    assert comparable(spread.to_json()) == comparable(local_report.to_json())
    done = records(tmp_path)
    assert sorted(r["key"] for r in done) == sorted(s.key for s in mevis.samples())  # each scored once
    nodes = {node.node_id for node in [ray_cluster.head_node, *ray_cluster.worker_nodes]}
    assert {r["node"] for r in done} == nodes  # every node ran samples: the work spread
    ray.init(address=ray_cluster.address)
    assert {n["NodeManagerAddress"] for n in ray.nodes()} == {"127.0.0.1"}  # no traffic left loopback


def test_a_worker_node_removed_mid_run_leaves_every_sample_scored_exactly_once(
    ray_cluster: Any, mevis: Benchmark, local_report: Report, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """Ray does not retry here (a restarted actor would wait for the CPU the node took away): the driver
    hands the lost actor's job in flight to the surviving actors, and records each result once."""
    removed: list[str] = []

    def lose_a_node(done: int, total: int, record: dict[str, Any]) -> None:
        if not removed:  # the other actors are inside a sample (0.5 s a turn), or get one next
            victim = next(n for n in ray_cluster.worker_nodes if n.node_id != record["node"])
            removed.append(victim.node_id)
            ray_cluster.remove_node(victim, allow_graceful=False)

    with caplog.at_level(logging.WARNING, logger="revseg.evals.workers"):
        slow = QueryBoxAgent(delay_s=0.5)
        spread = evaluate(mevis, tmp_path, slow, workers=3, ray_address=ray_cluster.address, on_result=lose_a_node)
    assert comparable(spread.to_json()) == comparable(local_report.to_json())
    done = records(tmp_path)
    assert sorted(r["key"] for r in done) == sorted(s.key for s in mevis.samples())  # all, none twice
    assert removed and "lost a Ray worker" in caplog.text and "job(s) in flight run again on the 2 left" in caplog.text


def test_when_every_ray_worker_is_lost_the_finished_samples_stay_and_resume_completes_the_run(
    ray_cluster: Any, mevis: Benchmark, local_report: Report, tmp_path: Path
) -> None:
    """The other half of the recovery: with no actor left the run stops with an error, and --resume finishes it."""
    healed = tmp_path / "healed"

    def dies_on_dog() -> Any:
        """An agent whose process exits on the dog video's samples (a crash that kills every actor in turn)."""
        agent = QueryBoxAgent()()
        run = agent.arun

        async def arun(video: Any, query: str, *args: Any, **kwargs: Any) -> Any:
            if "dog" in str(video) and not healed.exists():
                os._exit(1)
            return await run(video, query, *args, **kwargs)

        agent.arun = arun
        return agent

    with pytest.raises(RevsegError, match=r"every Ray worker was lost .* rerun with --resume"):
        evaluate(mevis, tmp_path / "out", dies_on_dog, workers=3, ray_address=ray_cluster.address)
    kept = records(tmp_path / "out")
    assert kept and not any(r["key"].startswith("dog/") for r in kept)
    healed.touch()
    finished = evaluate(mevis, tmp_path / "out", dies_on_dog, workers=3, ray_address=ray_cluster.address, resume=True)
    assert comparable(finished.to_json()) == comparable(local_report.to_json())
    done = records(tmp_path / "out")
    assert sorted(r["key"] for r in done) == sorted(s.key for s in mevis.samples())  # each scored once
    assert done[: len(kept)] == kept  # nothing finished was redone
