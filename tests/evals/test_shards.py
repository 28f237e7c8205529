"""`--shard I/N`: disjoint shards whose union is the whole set, and outputs that merge."""

from __future__ import annotations

from pathlib import Path

import pytest

from revseg.errors import SpecError, StoreError
from revseg.evals import evaluate, get_benchmark
from revseg.evals.report import comparable
from revseg.evals.shards import Shard, in_shard, merge_eval_runs, merge_stores
from revseg.testing.benchmarks import QueryBoxAgent
from revseg.trajectory_store import TrajectoryStore
from tests.rl.factories import make_trajectory

AGENT = QueryBoxAgent()


def test_shards_are_disjoint_cover_the_set_and_do_not_depend_on_the_other_items() -> None:
    keys = [f"video{v}/{e}" for v in range(40) for e in range(3)]
    shards = [list(in_shard(keys, Shard(i, 4), str)) for i in range(4)]
    assert sorted(k for shard in shards for k in shard) == sorted(keys)
    assert sum(len(s) for s in shards) == len(keys) and all(shards)
    # an item's shard depends on its key only: a subset keeps each item where it was
    assert list(in_shard(keys[:10], Shard(2, 4), str)) == [k for k in shards[2] if k in keys[:10]]
    assert list(in_shard(keys, None, str)) == keys


@pytest.mark.parametrize("text", ["4/4", "1", "a/b", "-1/2", "0/0"])
def test_a_bad_shard_is_a_spec_error_naming_it(text: str) -> None:
    with pytest.raises(SpecError, match="shard"):
        Shard.parse(text)


def test_sharded_evaluations_merge_into_the_unsharded_report(datasets: dict[str, Path], tmp_path: Path) -> None:
    bench = get_benchmark("mevis", datasets["mevis"])
    whole = evaluate(bench, tmp_path / "whole", AGENT)
    parts = [tmp_path / f"part{i}" for i in range(3)]
    reports = [evaluate(bench, part, AGENT, shard=Shard(i, 3)) for i, part in enumerate(parts)]
    assert sum(len((part / "results.jsonl").read_text().splitlines()) for part in parts) == len(bench.samples())
    assert all(r.to_json() != whole.to_json() for r in reports)  # each shard reported on its own samples only
    assert merge_eval_runs(parts, tmp_path / "merged") == len(bench.samples())
    seen: list[str] = []
    merged = evaluate(bench, tmp_path / "merged", AGENT, resume=True, on_result=lambda d, t, r: seen.append(r["key"]))
    assert seen == []  # nothing rerun: every sample came from a shard
    assert comparable(merged.to_json()) == comparable(whole.to_json())
    with pytest.raises(StoreError, match="more than one shard"):
        merge_eval_runs([parts[0], parts[0]], tmp_path / "twice")


def test_trajectory_stores_merge_each_record_once(tmp_path: Path) -> None:
    a, b = TrajectoryStore(tmp_path / "a"), TrajectoryStore(tmp_path / "b")
    a.append([make_trajectory(group_id="g1"), make_trajectory(group_id="g1")])
    b.append([make_trajectory(group_id="g2")])
    assert merge_stores([tmp_path / "a", tmp_path / "b"], tmp_path / "all") == 3
    assert merge_stores([tmp_path / "a", tmp_path / "b"], tmp_path / "all") == 0
    merged = TrajectoryStore(tmp_path / "all")
    assert sorted(len(g) for g in merged.groups().values()) == [1, 2]
