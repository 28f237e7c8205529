"""How `revseg eval --workers N --concurrency C` scales on the tiny models: wall time, samples/s, identical reports.

The chain runs for real: the ``openai`` policy against the local chat-completions server
(answers from :func:`revseg.testing.benchmarks.query_box_responder`, with a simulated
model latency per request) and the tiny random SAM2 tracking every frame. The dataset is
a synthetic ReVOS in its public layout. Each (workers, concurrency) pair runs the whole
evaluation in a fresh folder (process start-up and model loading included) and its report
must equal the single-process one. ``--workers`` N is N processes, each with its own policy
client and SAM2; ``--concurrency`` C is C queries in flight per process (async policy turns).

    .venv/bin/python benchmarks/bench_eval_workers.py [--runs 1x1 2x1 4x1 1x4 2x4] [--videos 8]
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import record

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("OPENAI_API_KEY", "sk-bench")


def dataset(root: Path, videos: int, frames: int, size: tuple[int, int]) -> Path:
    """A synthetic ReVOS: ``videos`` videos of ``frames`` frames, two objects, three expressions each."""
    from revseg.testing import benchmarks as synth

    width, height = size
    items = []
    for number in range(videos):
        a = (4 + number % 8, 6, width // 3, height // 2)
        b = (width // 2, height // 3, width - 4, height - 4 - number % 6)
        expressions = (
            synth.SyntheticExpression("0", synth.box_query(a), (0,), 0),
            synth.SyntheticExpression("1", synth.box_query(a, b), (0, 1), 1),
            synth.SyntheticExpression("2", "nothing here", (), 2),
        )
        items.append(synth.SyntheticVideo(f"video{number:02d}", frames, (a, b), expressions, size))
    return synth.write_revos(root / "ReVOS", items)


def slow(responder: Any, latency: float) -> Any:
    def respond(request: dict[str, Any]) -> str:
        time.sleep(latency)
        return str(responder(request))

    return respond


def run(config: tuple[str, float, int, tuple[int, int]], runs: list[tuple[int, int]], videos: int) -> tuple[str, str]:
    """Evaluate one configuration at each (workers, concurrency); return its table and notes."""
    from revseg.evals import AgentSpec, evaluate, get_benchmark
    from revseg.evals.report import comparable
    from revseg.settings import ChainSettings
    from revseg.testing import build_tiny_sam2
    from revseg.testing.benchmarks import query_box_responder
    from revseg.testing.chat_server import chat_server

    name, latency, frames, size = config
    work = Path(tempfile.mkdtemp(prefix="bench-eval-workers-"))
    sam2_config, checkpoint = build_tiny_sam2(work / "sam2")
    root = dataset(work, videos, frames, size)
    total = len(get_benchmark("revos", root).samples())
    rows = []
    reference: dict[str, Any] | None = None
    with chat_server(slow(query_box_responder(frame_size=size), latency)) as url:
        spec = AgentSpec(
            policy="openai:tiny",
            tracker=f"sam2:{sam2_config}:{checkpoint}",
            policy_options={"base_url": url},
            tracker_options={"device": "cpu"},
            settings=ChainSettings(num_frames=8),
        )
        for workers, concurrency in runs:
            start = time.perf_counter()
            out = work / f"out-{workers}x{concurrency}"
            bench = get_benchmark("revos", root)
            report = evaluate(bench, out, spec, workers=workers, concurrency=concurrency)
            seconds = time.perf_counter() - start
            same = comparable(report.to_json())
            reference = reference or same
            rows.append((workers, concurrency, seconds, total / seconds, same == reference))
            print(f"{name}, workers={workers} concurrency={concurrency}: {seconds:.1f}s", flush=True)
    base = rows[0][2]
    table = [
        f"**{name}**",
        "",
        "| workers | concurrency | wall s | samples/s | speed-up | report identical to the first row |",
        "|---:|---:|---:|---:|---:|---|",
    ]
    table += [
        f"| {w} | {c} | {s:.1f} | {r:.2f} | {base / s:.2f}x | {'yes' if same else 'NO'} |" for w, c, s, r, same in rows
    ]
    notes = (
        f"{name}: {total} samples (ReVOS layout, {videos} videos x 3 expressions, {frames} frames of "
        f"{size[0]}x{size[1]}), {latency}s simulated latency per policy request (2 requests per sample, 1 for "
        "no-target)."
    )
    return "\n".join(table), notes


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", nargs="+", default=["1x1", "2x1", "4x1", "1x4", "2x4"], help="WORKERSxCONCURRENCY")
    parser.add_argument("--videos", type=int, default=8)
    parser.add_argument("--no-record", action="store_true", help="print only; do not append to RESULTS.md")
    args = parser.parse_args()
    configs = [
        ("CPU-bound: tiny SAM2 on 24 frames of 160x120, 0.25s policy latency", 0.25, 24, (160, 120)),
        ("latency-bound: 1s policy latency (a served 7B model), 8 frames of 64x48", 1.0, 8, (64, 48)),
    ]
    runs = [(int(w), int(c)) for w, c in (item.split("x") for item in args.runs)]
    results = [run(config, runs, args.videos) for config in configs]
    table = "\n\n".join(t for t, _ in results)
    notes = " ".join(n for _, n in results) + (
        f" openai policy on the local chat server, tiny random SAM2 on CPU, 8 sampled frames; {os.cpu_count()} CPU "
        "cores. Wall time includes starting the worker processes and loading the models in each."
    )
    if args.no_record:
        print(table + "\n\n" + notes)
    else:
        record("revseg eval --workers scaling (tiny models)", table, notes)


if __name__ == "__main__":
    main()
