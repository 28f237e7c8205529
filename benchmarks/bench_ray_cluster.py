"""`revseg eval` on a local three-node Ray cluster vs one process: samples per second, identical reports.

The cluster is real (``revseg.testing.ray_cluster``: a head and two worker nodes from
``ray.cluster_utils``, one CPU each, all on 127.0.0.1), so the three actors run on three
nodes. The chain runs for real: the ``openai`` policy against the local chat-completions
server with a simulated model latency per request (a served model), and the tiny random SAM2
tracking every frame, on a synthetic ReVOS. Wall time includes starting the actors and
loading their models; the cluster's own start is reported apart. Every report must equal
the single-process one.

    .venv/bin/python benchmarks/bench_ray_cluster.py [--videos 4] [--latency 1.0]
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
from bench_eval_workers import dataset, slow

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("OPENAI_API_KEY", "sk-bench")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--videos", type=int, default=4, help="synthetic videos (3 expressions each)")
    parser.add_argument("--latency", type=float, default=1.0, help="seconds per policy request")
    parser.add_argument("--no-record", action="store_true", help="print only; do not write RESULTS.md")
    args = parser.parse_args()

    from revseg.evals import AgentSpec, evaluate, get_benchmark
    from revseg.evals.report import comparable
    from revseg.settings import ChainSettings
    from revseg.testing import build_tiny_sam2
    from revseg.testing.benchmarks import query_box_responder
    from revseg.testing.chat_server import chat_server
    from revseg.testing.ray_cluster import local_ray_cluster

    size, frames = (64, 48), 8
    work = Path(tempfile.mkdtemp(prefix="bench-ray-cluster-"))
    sam2_config, checkpoint = build_tiny_sam2(work / "sam2")
    root = dataset(work, args.videos, frames, size)
    total = len(get_benchmark("revos", root).samples())
    rows: list[tuple[str, float, float, float, bool]] = []
    reference: dict[str, Any] | None = None
    with chat_server(slow(query_box_responder(frame_size=size), args.latency)) as url:
        spec = AgentSpec(
            policy="openai:tiny",
            tracker=f"sam2:{sam2_config}:{checkpoint}",
            policy_options={"base_url": url},
            tracker_options={"device": "cpu"},
            settings=ChainSettings(num_frames=8),
        )

        def timed(label: str, **options: Any) -> None:
            nonlocal reference
            first: list[float] = []
            start = time.perf_counter()
            report = evaluate(
                get_benchmark("revos", root),
                work / f"out-{len(rows)}",
                spec,
                on_result=lambda done, total, record: first.append(time.perf_counter()) if not first else None,
                **options,
            )
            end = time.perf_counter()
            same = comparable(report.to_json())
            reference = reference or same
            rows.append((label, end - start, first[0] - start, (total - 1) / (end - first[0]), same == reference))
            print(f"{label}: {end - start:.1f}s", flush=True)

        timed("one process (workers 1, concurrency 1)")
        boot = time.perf_counter()
        with local_ray_cluster(nodes=3, cpus_per_node=1) as cluster:
            boot = time.perf_counter() - boot
            timed("3-node Ray cluster, 3 actors x concurrency 1", workers=3, ray_address=cluster.address)
            timed("3-node Ray cluster, 3 actors x concurrency 4", workers=3, concurrency=4, ray_address=cluster.address)
    base, steady = rows[0][1], rows[0][3]
    table = [
        "| run | wall s | samples/s | speed-up | first result at s | samples/s after it | speed-up after it "
        "| report identical to one process |",
        "|---|---:|---:|---:|---:|---:|---:|---|",
    ]
    for label, seconds, first_at, after, same in rows:
        table.append(
            f"| {label} | {seconds:.1f} | {total / seconds:.2f} | {base / seconds:.2f}x | {first_at:.1f} | "
            f"{after:.2f} | {after / steady:.2f}x | {'yes' if same else 'NO'} |"
        )
    notes = (
        f"{total} samples (ReVOS layout, {args.videos} videos x 3 expressions, {frames} frames of "
        f"{size[0]}x{size[1]}), "
        f"openai policy on the local chat server with {args.latency}s latency per request (2 requests per sample, 1 "
        "for no-target), tiny random SAM2 on CPU. The cluster (head + 2 worker nodes, 1 CPU each, loopback) took "
        f"{boot:.1f}s to start, not counted above. Actor start-up and model loading are in the wall time (each run "
        "starts fresh actors, each importing torch and loading SAM2); 'samples/s after it' leaves them out, counting "
        "from the first finished sample. The machine is "
        f"shared with other engineers' jobs ({os.cpu_count()} cores): the three nodes share those cores, so this "
        "measures the fan-out, not extra hardware."
    )
    if args.no_record:
        print("\n".join(table) + "\n\n" + notes)
    else:
        record("revseg eval over a local 3-node Ray cluster vs one process", "\n".join(table), notes)


if __name__ == "__main__":
    main()
