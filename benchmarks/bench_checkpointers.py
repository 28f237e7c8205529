"""Checkpointer overhead per run: no checkpointer vs SQLite vs PostgreSQL, on a chain whose models cost nothing.

The agent runs the whole chain (sample, interpret, select_frames, ground, segment) with the
query-box policy and the box tracker of ``revseg.testing`` on a small synthetic video, so
what differs between rows is the checkpointer: none, an SQLite file, or a throwaway
PostgreSQL server on loopback (``revseg.testing.postgres``: ``initdb`` + ``pg_ctl``, fsync
off). Each run uses a new thread id and opens the saver from its spec, as a user's
``ReVSegAgent(..., checkpointer=URL).run(...)`` does. Rows interleave (none, SQLite,
Postgres, none, ...) so drift on a shared machine hits all three alike.

    .venv/bin/python benchmarks/bench_checkpointers.py [--runs 30]
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import record

os.environ.setdefault("HF_HUB_OFFLINE", "1")


def agent(checkpointer: Any) -> Any:
    from revseg.agents import ReVSegAgent
    from revseg.testing.benchmarks import QueryBoxPolicy
    from revseg.testing.fakes import BoxTracker

    return ReVSegAgent(
        QueryBoxPolicy(), BoxTracker(), overlay=False, report=False, progress=False, checkpointer=checkpointer
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=30, help="runs per checkpointer (after one warm-up each)")
    parser.add_argument("--no-record", action="store_true", help="print only; do not write RESULTS.md")
    args = parser.parse_args()

    from revseg.testing import benchmarks as synth
    from revseg.testing.postgres import postgres_server

    work = Path(tempfile.mkdtemp(prefix="bench-checkpointers-"))
    video = synth.default_videos()[0]
    frames = work / "frames"
    synth.write_frames(frames, video)
    query = synth.box_query(video.boxes[0])
    pg_folder = tempfile.mkdtemp(prefix="bench-pg-")  # not under /root: the postgres user must reach it
    with postgres_server(pg_folder) as url:
        kinds = {"none": None, "SQLite file": str(work / "checkpoints.sqlite"), "PostgreSQL (loopback)": url}
        agents = {name: agent(spec) for name, spec in kinds.items()}
        seconds: dict[str, list[float]] = {name: [] for name in kinds}
        for number in range(args.runs + 1):
            for name, runner in agents.items():
                start = time.perf_counter()
                thread = {"thread_id": f"{name}-{number}"} if kinds[name] else {}
                result = runner.run(frames, query, work / "out" / f"{number}", **thread)
                if number:  # the first round warms imports, connections and table creation
                    seconds[name].append(time.perf_counter() - start)
                assert result.status.value == "ok", result.trajectory.reason
    base = statistics.median(seconds["none"])
    table = [
        "| checkpointer | median ms per run | p90 ms | overhead vs none (median) |",
        "|---|---:|---:|---:|",
    ]
    for name, values in seconds.items():
        median = statistics.median(values)
        p90 = statistics.quantiles(values, n=10)[-1]
        table.append(f"| {name} | {median * 1000:.1f} | {p90 * 1000:.1f} | {(median - base) * 1000:+.1f} ms |")
    notes = (
        f"{args.runs} runs each (after a warm-up run), interleaved, one 8-frame 64x48 synthetic video, query-box "
        "policy and box tracker (no model cost: the rest is the graph and its checkpoints, 5 steps a run). Each "
        "run opens the saver from its spec (SQLite path or postgresql:// URL; Postgres 15 on loopback, fsync off) "
        "and writes a new thread. The machine is shared with other engineers' jobs (2 cores): compare rows, "
        "not absolute times."
    )
    if args.no_record:
        print("\n".join(table) + "\n\n" + notes)
    else:
        record("Checkpointer overhead per run: none vs SQLite vs PostgreSQL", "\n".join(table), notes)


if __name__ == "__main__":
    main()
