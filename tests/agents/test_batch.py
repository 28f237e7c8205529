"""Many queries in flight against one faulty endpoint: every query answered or failed with its reason, once."""

from __future__ import annotations

import asyncio
import json
import re
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from revseg import ReVSegAgent, SegmentationResult, Status, Trajectory
from revseg.agents import RunRequest, run_batch_file
from revseg.agents.batch import RESULTS_FILE, ResultsLog, read_batch_file, run_pool
from revseg.errors import InputError, RevsegError, VideoError
from revseg.settings import ChainSettings
from revseg.testing.chat_server import ChatServerFault, ChatServerLog, chat_server, count_images, inject_faults
from revseg.testing.chat_server import paper_responder as answers
from tests.conftest import write_clip

SMALL = ChainSettings(num_frames=4, frame_size=(112, 112), keyframe_size=(224, 224))
TRANSIENT = [
    ChatServerFault.rate_limited(0.05),
    ChatServerFault.truncated(),
    ChatServerFault.dropped(),
    ChatServerFault.wrong_content_type(),
    ChatServerFault.timeout(2.0),
]
PERSISTENT = [ChatServerFault.server_error(), ChatServerFault.no_choices()]


def fault_plan(request: dict[str, Any], attempt: int) -> ChatServerFault | None:
    """30% of queries meet a fault, decided by the query's number: 20% recover on retry, 10% never do."""
    prompt = json.dumps(request["messages"][0])
    number = int(re.search(r"number (\d+)", prompt).group(1))  # type: ignore[union-attr]
    turn = 1 if count_images(request["messages"][-1]) > 1 else 2
    kind, variant = number % 10, number // 10
    if kind == 0 and turn == 1 and attempt == 0:
        return TRANSIENT[variant % len(TRANSIENT)]
    if kind == 1 and turn == 2 and attempt == 0:
        return TRANSIENT[(variant + 2) % len(TRANSIENT)]
    if kind == 2 and turn == 1 + variant % 2:
        return PERSISTENT[variant % len(PERSISTENT)]
    return None


@pytest.fixture(scope="module")
def tiny_clip(tmp_path_factory: pytest.TempPathFactory) -> Path:
    frames = [np.full((48, 64, 3), 20 * i, np.uint8) for i in range(8)]
    return write_clip(tmp_path_factory.mktemp("batch") / "tiny.mp4", frames)


def faulty_agent(url: str) -> ReVSegAgent:
    options = {"base_url": url, "timeout_s": 1.0, "max_retries": 2, "retry_backoff_s": 0.01}
    return ReVSegAgent("openai:m", "none", settings=SMALL, overlay=False, report=False, policy_options=options)


def test_fifty_queries_with_thirty_percent_faults_each_end_once_with_an_answer_or_a_reason(
    tiny_clip: Path, tmp_path: Path
) -> None:
    log = ChatServerLog()
    queries = [RunRequest(tiny_clip, f"the thing number {i}", query_id=f"q{i:02d}") for i in range(50)]
    with chat_server(inject_faults(answers(keyframe=1, box=(10, 10, 100, 100)), fault_plan), log) as url:
        results = faulty_agent(url).batch(queries, concurrency=16, out_dir=tmp_path)
    assert len(results) == 50
    by_id: dict[str, SegmentationResult] = {}
    for query, result in zip(queries, results, strict=True):
        assert isinstance(result, SegmentationResult)
        assert result.trajectory.query_id == query.query_id and query.query_id not in by_id
        by_id[query.query_id] = result  # type: ignore[index]
        assert result.out_dir == tmp_path / query.query_id  # type: ignore[operator]
        assert Trajectory.load(result.out_dir / "trajectory.json").query_id == query.query_id
    failed = {qid for qid, r in by_id.items() if r.status != Status.OK}
    assert failed == {f"q{i:02d}" for i in range(2, 50, 10)}
    for qid in failed:
        trajectory = by_id[qid].trajectory
        assert trajectory.status == Status.POLICY_ERROR and trajectory.reason and "openai:m" in trajectory.reason
    assert all(by_id[q].keyframe_index == 2 and by_id[q].boxes for q in by_id if q not in failed)
    faulted = {int(m.group(1)) for r in log.requests if (m := re.search(r"number (\d+)", json.dumps(r)))}
    assert faulted == set(range(50))


def test_batch_keeps_going_past_a_bad_input_and_reports_it_in_place(tiny_clip: Path, tmp_path: Path) -> None:
    with chat_server(answers(keyframe=0, box=(0, 0, 50, 50))) as url:
        agent = faulty_agent(url)
        results = agent.batch(
            [(tiny_clip, "a", tmp_path / "a"), (tmp_path / "missing.mp4", "b"), (tiny_clip, "c", tmp_path / "c")],
            concurrency=2,
        )
    assert [type(r).__name__ for r in results] == ["SegmentationResult", "VideoError", "SegmentationResult"]
    assert isinstance(results[1], VideoError) and "missing.mp4" in str(results[1])


def test_the_pool_bounds_how_many_queries_are_in_flight() -> None:
    running, peak = 0, 0

    async def one(request: RunRequest) -> Any:
        nonlocal running, peak
        running += 1
        peak = max(peak, running)
        await asyncio.sleep(0.01)
        running -= 1
        if request.query == "bad":
            raise InputError("bad query")
        return request.query

    async def collect() -> list[tuple[int, Any]]:
        items = (RunRequest("v", "bad" if i == 7 else str(i)) for i in range(40))
        return [(index, outcome) async for index, _, outcome in run_pool(items, one, concurrency=5)]

    outcomes = asyncio.run(collect())
    assert peak == 5 and sorted(i for i, _ in outcomes) == list(range(40))
    assert isinstance(dict(outcomes)[7], RevsegError)


def test_a_bug_in_one_query_stops_the_pool_and_surfaces() -> None:
    async def one(request: RunRequest) -> Any:
        raise ZeroDivisionError("a bug")

    async def collect() -> None:
        async for _ in run_pool([RunRequest("v", "q")], one, concurrency=2):
            pass

    with pytest.raises(ZeroDivisionError):
        asyncio.run(collect())


def write_batch(path: Path, lines: list[Any]) -> Path:
    path.write_text("".join((line if isinstance(line, str) else json.dumps(line)) + "\n" for line in lines))
    return path


def test_batch_file_runs_resumes_and_never_writes_an_id_twice(tiny_clip: Path, tmp_path: Path) -> None:
    batch = write_batch(
        tmp_path / "batch.jsonl",
        [{"id": f"q{i}", "video": tiny_clip.name, "query": f"thing number {i}"} for i in range(6)],
    )
    (tmp_path / tiny_clip.name).write_bytes(tiny_clip.read_bytes())  # videos are relative to the batch file
    out = tmp_path / "out"
    seen: list[str] = []
    with chat_server(answers(keyframe=0, box=(0, 0, 50, 50))) as url:
        agent = faulty_agent(url)
        ResultsLog(out / RESULTS_FILE).append({"id": "q3", "status": "ok"})  # as if a crashed run had done q3
        with (out / RESULTS_FILE).open("a") as f:
            f.write('{"id": "q4", "sta')  # and died writing q4
        with pytest.raises(InputError, match="--resume"):
            asyncio.run(run_batch_file(agent, batch, out))
        summary = asyncio.run(
            run_batch_file(agent, batch, out, concurrency=3, resume=True, on_result=lambda r: seen.append(r["id"]))
        )
        again = asyncio.run(run_batch_file(agent, batch, out, resume=True))
    assert sorted(seen) == ["q0", "q1", "q2", "q4", "q5"] and summary.skipped == 1
    assert summary.statuses == {"ok": 5} and summary.failed == 0
    assert again.ran == 0 and again.skipped == 6
    records = [json.loads(line) for line in (out / RESULTS_FILE).read_text().splitlines()]
    assert sorted(r["id"] for r in records) == [f"q{i}" for i in range(6)]
    q0 = next(r for r in records if r["id"] == "q0")
    assert q0["keyframe"] == 0 and q0["trajectory"] == str(out / "q0" / "trajectory.json")
    assert Trajectory.load(out / "q0" / "trajectory.json").query_id == "q0"


def test_bad_batch_lines_are_all_reported_with_their_numbers(tmp_path: Path) -> None:
    batch = write_batch(
        tmp_path / "bad.jsonl",
        [
            {"id": "ok-1", "video": "a.mp4", "query": "q"},
            "not json",
            {"id": "../etc", "video": "a.mp4", "query": "q"},
            "",
            {"id": "ok-1", "video": "b.mp4", "query": "q"},
            {"id": 7, "video": "a.mp4"},
            {"id": "x", "video": "", "query": "q"},
            [1, 2],
        ],
    )
    with pytest.raises(InputError) as caught:
        read_batch_file(batch)
    message = str(caught.value)
    assert message.startswith("6 bad line(s)")
    for number, what in [(2, "Expecting value"), (3, "not safe"), (5, "repeats line 1"), (6, "missing query"),
                         (7, "video must be"), (8, "JSON object")]:  # fmt: skip
        assert f"bad.jsonl:{number}: " in message and what in message.split(f"bad.jsonl:{number}: ")[1].split("\n")[0]


def test_integer_ids_and_absolute_paths_are_accepted(tmp_path: Path) -> None:
    batch = write_batch(tmp_path / "b.jsonl", [{"id": 12, "video": "/data/v.mp4", "query": "q"}])
    (line,) = read_batch_file(batch)
    assert line.id == "12" and line.video == Path("/data/v.mp4")


def test_requests_overlap_up_to_the_concurrency_and_never_beyond(tiny_clip: Path, tmp_path: Path) -> None:
    import threading
    import time

    lock, in_flight, peak = threading.Lock(), [0], [0]
    inner = answers(keyframe=1, box=(10, 10, 100, 100))

    def respond(request: dict[str, Any]) -> str:
        with lock:
            in_flight[0] += 1
            peak[0] = max(peak[0], in_flight[0])
        time.sleep(0.2)
        with lock:
            in_flight[0] -= 1
        return inner(request)

    with chat_server(respond) as url:
        results = faulty_agent(url).batch(
            [(tiny_clip, f"thing number {i}") for i in range(12)], concurrency=4, out_dir=tmp_path
        )
    assert all(isinstance(r, SegmentationResult) and r.ok for r in results)
    assert 2 <= peak[0] <= 4
