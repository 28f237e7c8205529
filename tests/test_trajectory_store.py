"""The append-only trajectory store: whole records, whole groups, concurrent writers, torn tails, datasets."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from revseg.errors import StoreError
from revseg.policies.parsing import parse_box_answer, parse_keyframe_answer
from revseg.trajectory import SCHEMA_VERSION, Status, Trajectory
from revseg.trajectory_store import TrajectoryStore
from tests.rl.factories import STRICT_T2, make_trajectory, turn1

REPO = Path(__file__).resolve().parents[1]


def group(gid: str, n: int = 3, *, tokens: int = 8) -> list[Trajectory]:
    """n scored runs of one group, with parsed answers as the graph stores them."""
    out = []
    for i in range(n):
        t = make_trajectory(
            t1=turn1(1),
            t2=[STRICT_T2],
            targets=[{"sample_idx": 1, "frame_index": 33, "box": (10.0, 20.0, 110.0, 220.0)}],
            group_id=gid,
            token_ids=[list(range(tokens)), list(range(tokens // 2))],
            logprobs=[[-0.25] * tokens, [-0.5] * (tokens // 2)],
            rewards={"total": float(i), "format": 1.0, "temporal": 0.5, "spatial": float(i % 2)},
        )
        t.group_size = n
        t.turns[0].parsed = parse_keyframe_answer(t.turns[0].response or "", 4).to_dict()
        t.turns[1].parsed = parse_box_answer(STRICT_T2).to_dict()
        out.append(t)
    return out


def test_append_and_read_back_whole_groups(tmp_path: Path) -> None:
    store = TrajectoryStore(tmp_path / "store")
    a, b = group("a"), group("b", 2)
    store.append(a)
    store.append(b)
    store.append(make_trajectory(t1="nope", status=Status.FAILED_SELECT_FRAMES))  # a lone record
    records, skipped = store.scan()
    assert skipped == [] and [r.run_id for r in records[:5]] == [r.run_id for r in a + b]
    assert records[0] == a[0]  # nothing lost on the way: token ids, log-probs, parsed, rewards
    groups = store.groups()
    assert [len(g) for g in groups.values()] == [3, 2, 1]
    assert store.get(b[1].run_id[:10]).run_id == b[1].run_id
    assert json.loads((tmp_path / "store" / "store.json").read_text())["format"] == "revseg-trajectories"
    assert records[0].schema_version == SCHEMA_VERSION


def test_shards_roll_over_at_the_size_limit(tmp_path: Path) -> None:
    store = TrajectoryStore(tmp_path, shard_max_bytes=1)  # every append after the first opens a new shard
    for gid in "abc":
        store.append(group(gid, 2))
    assert [p.name for p in store.shards] == [
        "trajectories-00000.jsonl",
        "trajectories-00001.jsonl",
        "trajectories-00002.jsonl",
    ]
    assert len(list(store)) == 6


def test_torn_last_line_is_skipped_flagged_and_cut_by_the_next_append(tmp_path: Path) -> None:
    store = TrajectoryStore(tmp_path)
    store.append(group("a", 2))
    shard = store.shards[0]
    whole = "".join(r.model_dump_json() + "\n" for r in group("b", 2)).encode()
    with shard.open("ab") as f:
        f.write(whole[: len(whole) // 2 + 7])  # a writer killed half way through its group
    records, skipped = store.scan()
    assert len(records) == 3  # b's first line landed whole; its second is torn
    assert len(skipped) == 1 and "torn last line" in skipped[0].reason
    assert set(store.groups(complete=True)) == {"a"}  # b is incomplete: 1 of 2
    store.append(group("c", 2))
    records, skipped = store.scan()
    assert skipped == [] and [r.group_id for r in records] == ["a", "a", "b", "c", "c"]
    assert shard.read_bytes().endswith(b"\n")


def test_repair_cuts_a_torn_tail(tmp_path: Path) -> None:
    store = TrajectoryStore(tmp_path)
    store.append(group("a", 1))
    with store.shards[0].open("ab") as f:
        f.write(b'{"schema_version": "2", "run_')
    assert store.repair() == len(b'{"schema_version": "2", "run_')
    assert store.scan()[1] == []


def test_newer_schema_is_refused_and_version_1_reads(tmp_path: Path) -> None:
    store = TrajectoryStore(tmp_path)
    old = make_trajectory(t1="x").model_dump(mode="json")
    old["schema_version"] = "1"
    del old["group_size"]
    store.append(make_trajectory(t1="y"))
    with store.shards[0].open("a") as f:
        f.write(json.dumps(old) + "\n")
    assert [r.group_size for r in store] == [None, None]
    with store.shards[0].open("a") as f:
        f.write(json.dumps(old | {"schema_version": "99"}) + "\n")
    with pytest.raises(StoreError, match="schema version '99'"):
        list(store)


def test_a_folder_that_is_not_a_store_says_so(tmp_path: Path) -> None:
    with pytest.raises(StoreError, match="not a trajectory store"):
        list(TrajectoryStore(tmp_path / "missing"))
    (tmp_path / "store.json").write_text('{"format": "something-else"}')
    with pytest.raises(StoreError, match="not a revseg trajectory store"):
        TrajectoryStore(tmp_path)


_WRITER = textwrap.dedent(
    """
    import sys
    from revseg.trajectory_store import TrajectoryStore
    from tests.rl.factories import make_trajectory, turn1

    root, who, groups, size = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4])
    store = TrajectoryStore(root, fsync=False)
    for g in range(groups):
        batch = []
        for i in range(size):
            t = make_trajectory(t1=turn1(1), group_id=f"{who}-{g}", token_ids=[list(range(3000))],
                                logprobs=[[-1.0] * 3000])
            t.group_size = size
            batch.append(t)
        store.append(batch)
    """
)


def test_concurrent_writer_processes_never_interleave(tmp_path: Path) -> None:
    writers, groups, size = 4, 6, 4  # each group is ~150 KB: far beyond any pipe or page size
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", _WRITER, str(tmp_path), f"w{w}", str(groups), str(size)], cwd=REPO, env=env
        )
        for w in range(writers)
    ]
    assert all(p.wait(timeout=120) == 0 for p in procs)
    store = TrajectoryStore(tmp_path)
    records, skipped = store.scan()
    assert skipped == [] and len(records) == writers * groups * size
    order = [r.group_id for r in records]
    for start in range(0, len(order), size):  # each group's records are adjacent: one write per group
        assert len(set(order[start : start + size])) == 1
    assert len(store.groups(complete=True)) == writers * groups


def test_store_loads_as_a_hugging_face_dataset_with_nested_fields(tmp_path: Path) -> None:
    datasets = pytest.importorskip("datasets")
    store = TrajectoryStore(tmp_path, shard_max_bytes=1)
    store.append(group("a", 2))
    store.append(make_trajectory(t1="I do not know", status=Status.FAILED_SELECT_FRAMES))  # no rewards, one turn
    store.append(group("b", 1))
    with store.shards[-1].open("ab") as f:
        f.write(b'{"torn": ')  # data_files() repairs before handing the shards over
    ds = datasets.load_dataset(
        "json", data_files=store.data_files(), split="train", cache_dir=str(tmp_path / "hf-cache")
    )
    assert ds.num_rows == 4
    row = ds[0]
    assert row["group_id"] == "a" and row["group_size"] == 2
    assert row["turns"][0]["token_ids"] == list(range(8))
    assert row["turns"][1]["logprobs"] == [-0.5] * 4
    assert row["turns"][0]["parsed"]["objects"][0]["description"] == "red car"
    assert row["turns"][1]["parsed"]["boxes"][0]["coords"] == [10.0, 20.0, 110.0, 220.0]
    assert row["targets"][0]["box"] == [10.0, 20.0, 110.0, 220.0]
    assert row["rewards"]["total"] == 0.0 and row["video"]["width"] == 640
    assert ds[2]["rewards"] is None and ds[2]["status"] == "failed_select_frames"
    # a row converts back into the record
    back = Trajectory.model_validate({k: v for k, v in ds[1].items() if v is not None})
    assert back.turns[0].token_ids == list(range(8))
