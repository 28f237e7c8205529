"""Many queries in flight: a bounded worker pool, and batch files with resumable results.

:func:`run_pool` runs queries through an async function with at most ``concurrency`` in
flight and yields each outcome as it finishes. A query that raises a RevsegError (a
missing video, say) yields that error as its outcome; the others go on. Policy faults
never raise here: the graph records them as the query's ``policy_error`` status.

A batch file is JSON Lines, one ``{"id": ..., "video": ..., "query": ...}`` per line.
:func:`read_batch_file` checks every line (ids unique and safe as folder names, video and
query present) and reports all bad lines at once with their numbers. :class:`ResultsLog`
appends one line per finished query to ``results.jsonl`` through the crash-safe
:class:`~revseg.jsonl.AppendLog`, so no line is lost, torn or duplicated, and ``--resume``
skips the ids it holds.
"""

from __future__ import annotations

import asyncio
import json
import re
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

from revseg.agents.request import RunRequest, SegmentationResult
from revseg.errors import InputError, RevsegError
from revseg.jsonl import RESULTS_FILE, AppendLog

DEFAULT_CONCURRENCY = 8
_SAFE_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,127}")


async def run_pool(
    queries: Iterable[RunRequest],
    run_one: Callable[[RunRequest], Awaitable[SegmentationResult]],
    concurrency: int = DEFAULT_CONCURRENCY,
) -> AsyncIterator[tuple[int, RunRequest, SegmentationResult | RevsegError]]:
    """Yield ``(index, query, result or error)`` as each query finishes, ``concurrency`` at a time.

    ``concurrency`` workers pull from ``queries`` lazily, so a long batch never holds more
    than that many runs (and policy requests) in flight. An exception that is not a
    RevsegError is a bug: it stops the pool and propagates.
    """
    if concurrency < 1:
        raise InputError(f"concurrency must be at least 1, got {concurrency}")
    pending = enumerate(queries)
    finished: asyncio.Queue[tuple[int, RunRequest, SegmentationResult | RevsegError] | BaseException | None]
    finished = asyncio.Queue()

    async def worker() -> None:
        try:
            for index, request in pending:  # one shared iterator: each item goes to exactly one worker
                try:
                    outcome: SegmentationResult | RevsegError = await run_one(request)
                except RevsegError as exc:
                    outcome = exc
                await finished.put((index, request, outcome))
        except Exception as exc:  # noqa: BLE001 - handed to the consumer, which re-raises it
            await finished.put(exc)
        finally:
            await finished.put(None)

    workers = [asyncio.create_task(worker()) for _ in range(concurrency)]
    try:
        running = len(workers)
        while running:
            item = await finished.get()
            if item is None:
                running -= 1
            elif isinstance(item, BaseException):
                raise item
            else:
                yield item
    finally:
        for task in workers:
            task.cancel()
        await asyncio.gather(*workers, return_exceptions=True)


# --------------------------------------------------------------------------- batch files


@dataclass(frozen=True)
class BatchLine:
    """One valid line of a batch file."""

    number: int
    id: str
    video: Path
    query: str


def read_batch_file(path: str | Path) -> list[BatchLine]:
    """Parse and check a JSONL batch file; InputError lists every bad line with its number.

    Relative video paths are taken relative to the batch file's folder, so a batch file
    and its clips can move together. Blank lines are skipped.
    """
    path = Path(path)
    try:
        text = path.read_text()
    except OSError as exc:
        raise InputError(f"cannot read batch file {path}: {exc.strerror or exc}") from exc
    lines: list[BatchLine] = []
    problems: list[str] = []
    seen: dict[str, int] = {}
    for number, raw in enumerate(text.splitlines(), start=1):
        if not raw.strip():
            continue
        try:
            entry = _check_line(json.loads(raw), seen, number)
        except (ValueError, InputError) as exc:
            problems.append(f"{path}:{number}: {exc}")
            continue
        video = Path(entry["video"]).expanduser()
        lines.append(
            BatchLine(number, entry["id"], video if video.is_absolute() else path.parent / video, entry["query"])
        )
        seen[entry["id"]] = number
    if problems:
        shown = problems[:20] + ([f"... and {len(problems) - 20} more"] if len(problems) > 20 else [])
        raise InputError(f"{len(problems)} bad line(s) in batch file {path}:\n" + "\n".join(shown))
    if not lines:
        raise InputError(f"batch file {path} holds no queries; each line is {{'id', 'video', 'query'}} JSON")
    return lines


def _check_line(entry: Any, seen: dict[str, int], number: int) -> dict[str, str]:
    if not isinstance(entry, dict):
        raise InputError(f"expected a JSON object with id, video and query, got {type(entry).__name__}")
    missing = [k for k in ("id", "video", "query") if k not in entry]
    if missing:
        raise InputError(f"missing {', '.join(missing)}")
    qid = entry["id"]
    if isinstance(qid, int) and not isinstance(qid, bool):
        qid = str(qid)
    if not isinstance(qid, str) or not _SAFE_ID.fullmatch(qid):
        raise InputError(
            f"id {entry['id']!r} is not safe as a folder name (letters, digits, '.', '_', '-'; "
            "starting with a letter or digit; at most 128)"
        )
    if qid in seen:
        raise InputError(f"id {qid!r} repeats line {seen[qid]}")
    for key in ("video", "query"):
        if not isinstance(entry[key], str) or not entry[key].strip():
            raise InputError(f"{key} must be a non-empty string")
    return {"id": qid, "video": entry["video"], "query": entry["query"]}


@dataclass(frozen=True)
class BatchSummary:
    """What a batch-file run did: how many queries ran, were skipped on resume, and how each ended."""

    ran: int
    skipped: int
    statuses: dict[str, int]
    results: Path

    @property
    def failed(self) -> int:
        """Queries that ended in a failure status or an error (recorded, with their reasons)."""
        return sum(n for status, n in self.statuses.items() if status not in ("ok", "no_target"))


class BatchRunner(Protocol):
    """What :func:`run_batch_file` needs of an agent (:class:`~revseg.agents.ReVSegAgent` is one)."""

    def abatch_as_completed(
        self, queries: Iterable[RunRequest], *, concurrency: int = ...
    ) -> AsyncIterator[tuple[int, RunRequest, SegmentationResult | RevsegError]]:
        """Run ``queries`` with at most ``concurrency`` in flight, yielding each outcome as it finishes."""
        ...


async def run_batch_file(
    agent: BatchRunner,
    batch_file: str | Path,
    out_dir: str | Path,
    *,
    concurrency: int = DEFAULT_CONCURRENCY,
    resume: bool = False,
    on_result: Callable[[dict[str, Any]], None] | None = None,
) -> BatchSummary:
    """Run every query of ``batch_file``; each writes ``out_dir/<id>/`` and one line of ``results.jsonl``.

    With ``resume`` the ids already in ``results.jsonl`` are skipped; without it an existing
    ``results.jsonl`` is an error (so a rerun never mixes two batches). ``on_result`` sees
    each results line as it is written. The single consumer of the pool writes every line.
    """
    import time

    lines = read_batch_file(batch_file)
    out = Path(out_dir)
    log = ResultsLog(out / RESULTS_FILE)
    done = log.done_ids()
    if done and not resume:
        raise InputError(f"{log.path} already holds {len(done)} result(s); pass --resume to skip them, or a new --out")
    todo = [line for line in lines if line.id not in done]
    started: dict[str, float] = {}

    def requests() -> Iterable[RunRequest]:
        for line in todo:
            started[line.id] = time.perf_counter()
            yield RunRequest(line.video, line.query, out_dir=out / line.id, query_id=line.id)

    statuses: dict[str, int] = {}
    async for _, request, outcome in agent.abatch_as_completed(requests(), concurrency=concurrency):
        assert request.query_id is not None
        record = result_line(request.query_id, outcome, time.perf_counter() - started[request.query_id])
        log.append(record)
        statuses[record["status"]] = statuses.get(record["status"], 0) + 1
        if on_result is not None:
            on_result(record)
    return BatchSummary(ran=len(todo), skipped=len(lines) - len(todo), statuses=statuses, results=log.path)


def result_line(query_id: str, outcome: SegmentationResult | RevsegError, seconds: float) -> dict[str, Any]:
    """The ``results.jsonl`` record of one finished query: its status and where its outputs are."""
    if isinstance(outcome, RevsegError):
        return {"id": query_id, "status": "error", "error": type(outcome).__name__, "reason": str(outcome)}
    trajectory = outcome.trajectory
    return {
        "id": query_id,
        "status": trajectory.status.value,
        "reason": trajectory.reason,
        "keyframe": trajectory.keyframe_index,
        "boxes": [list(box) for box in outcome.boxes],
        "out_dir": str(outcome.out_dir),
        "trajectory": trajectory.outputs.get("trajectory"),
        "seconds": round(seconds, 3),
    }


class ResultsLog:
    """``results.jsonl``: one JSON line per finished query, on a crash-safe :class:`~revseg.jsonl.AppendLog`."""

    def __init__(self, path: str | Path, *, fsync: bool = True) -> None:
        self.path = Path(path)
        self._log = AppendLog(self.path, fsync=fsync)

    def done_ids(self) -> set[str]:
        """Ids with a complete line (a torn last line from a crash does not count)."""
        return {r["id"] for _, r in self._log.read() if isinstance(r, dict) and isinstance(r.get("id"), str)}

    def append(self, record: dict[str, Any]) -> None:
        """Append one record as one line; a crash leaves at most a torn tail, cut off next time."""
        self._log.append_json(record)
