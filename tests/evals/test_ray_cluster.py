"""`evaluate(..., ray_address=...)` on a real three-node Ray cluster on this machine (loopback only)."""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from revseg.evals import evaluate, get_benchmark
from revseg.evals.report import comparable
from revseg.evals.runner import RESULTS_JSONL
from revseg.testing.benchmarks import QueryBoxAgent
from tests.conftest import skip_unless

# Ray 2.60 reads this when it is imported: keep every node (and the workers' view of the head) on 127.0.0.1
os.environ.setdefault("RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER", "0")

pytestmark = [
    pytest.mark.ray_cluster,
    pytest.mark.slow,
    # NOT DONE: on its one run (env var set inside the fixture, after ray was imported) the driver dialled the head
    # at the machine's other address (192.0.2.2) and timed out; setting it at import time is not yet verified.
    pytest.mark.skip(reason="unverified: the driver could not reach the local cluster's head on loopback"),
]

NODE = {"num_cpus": 1, "object_store_memory": 100 * 2**20, "include_dashboard": False}


@pytest.fixture(scope="module")
def cluster() -> Iterator[Any]:
    """A head and two worker nodes, one CPU each, so three one-CPU actors must land on three nodes."""
    try:
        import ray
        from ray.cluster_utils import Cluster
    except ImportError:
        skip_unless("ray_cluster", "ray missing: pip install 'revseg[ray]'")
    local = Cluster(initialize_head=True, head_node_args={**NODE, "node_ip_address": "127.0.0.1"})
    for _ in range(2):
        local.add_node(**NODE, node_ip_address="127.0.0.1")
    local.wait_for_nodes()
    try:
        yield local
    finally:
        ray.shutdown()
        local.shutdown()


def test_eval_over_a_three_node_cluster_equals_the_local_run(
    cluster: Any, datasets: dict[str, Path], tmp_path: Path
) -> None:
    bench = get_benchmark("mevis", datasets["mevis"])
    single = evaluate(bench, tmp_path / "one", QueryBoxAgent())
    spread = evaluate(bench, tmp_path / "ray", QueryBoxAgent(), workers=3, ray_address=cluster.address)
    assert comparable(spread.to_json()) == comparable(single.to_json())
    records = [json.loads(line) for line in (tmp_path / "ray" / RESULTS_JSONL).read_text().splitlines()]
    assert sorted(r["key"] for r in records) == sorted(s.key for s in bench.samples())  # each scored once
    assert len({r["worker"] for r in records}) == 3  # the work spread over the three actors
