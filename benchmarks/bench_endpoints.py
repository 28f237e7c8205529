"""`revseg collect` against two policy endpoints vs one (several vLLM replicas behind one spec).

Each endpoint is a local chat-completions server in its own process that answers after
0.5 s and works on at most 4 requests at once (a replica's batch slots), so one endpoint
serves about 8 requests a second however many arrive. The collector keeps 4 groups of 8
rollouts in flight (up to 32 requests); with two endpoints named in the policy
(``base_url="A,B"``) requests spread over both. Same synthetic ReVOS items, same settings,
run side by side. Run: `.venv/bin/python benchmarks/bench_endpoints.py`.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import record

LATENCY_S = 0.5
SLOTS = 4


@contextmanager
def server() -> Iterator[str]:
    """A chat server process answering in the paper's format after LATENCY_S, SLOTS requests at a time."""
    args = [sys.executable, "-m", "revseg.testing.chat_server", "--latency", str(LATENCY_S), "--keyframe", "1",
            "--max-concurrent", str(SLOTS)]  # fmt: skip
    process = subprocess.Popen(args, stdout=subprocess.PIPE, text=True)
    try:
        assert process.stdout is not None
        yield process.stdout.readline().strip()
    finally:
        process.terminate()
        process.wait()


def run(urls: list[str], data: Path, out: Path, limit: int, workers: int) -> tuple[float, int, list[int]]:
    """Seconds, rollouts written and requests per endpoint for one collect run."""
    from revseg.policies.openai import OpenAIPolicy
    from revseg.rl.collect import benchmark_items, collect
    from revseg.settings import ChainSettings, SamplingParams

    policy = OpenAIPolicy("bench", base_url=urls, timeout_s=60.0)
    items = benchmark_items("revos", data, "train", link_dir=out / "frames")
    start = time.perf_counter()
    report = collect(items, policy, out, group_size=8, sampling=SamplingParams(temperature=1.0, max_new_tokens=64),
                     settings=ChainSettings(num_frames=4), workers=workers, limit=limit, seed=0)  # fmt: skip
    return time.perf_counter() - start, report.rollouts, policy.endpoint_requests


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--limit", type=int, default=8, help="Groups (items) to collect per run.")
    parser.add_argument("--workers", type=int, default=4, help="Groups in flight.")
    args = parser.parse_args()
    from revseg.testing import benchmarks as synth

    with tempfile.TemporaryDirectory() as tmp, ExitStack() as stack:
        data = synth.write_revos(Path(tmp) / "ReVOS", split="train")
        a, b = stack.enter_context(server()), stack.enter_context(server())
        run([a], data, Path(tmp) / "warm", 1, 1)  # imports, clients, frame decoding paths warm
        rows = []
        for name, urls in (("1 endpoint", [a]), ("2 endpoints", [a, b]), ("1 endpoint (again)", [a])):
            seconds, rollouts, spread = run(urls, data, Path(tmp) / name.replace(" ", "_"), args.limit, args.workers)
            rows.append((name, seconds, rollouts, spread))
    one = min(r[1] for r in rows if r[0].startswith("1 "))
    two = rows[1][1]
    table = (
        "| endpoints | rollouts | seconds | rollouts/s | requests per endpoint |\n|---|---|---|---|---|\n"
        + "".join(
            f"| {name} | {n} | {s:.1f} | {n / s:.1f} | {' / '.join(map(str, spread))} |\n"
            for name, s, n, spread in rows
        )
    )
    table += f"\nThroughput ratio, 2 endpoints vs 1 (best of the two 1-endpoint runs): **{one / two:.2f}x**"
    record(
        "Collect against 2 policy endpoints vs 1 (0.5 s latency)",
        table,
        f"`revseg collect` on synthetic ReVOS, {args.limit} groups of 8 rollouts, {args.workers} groups in flight, "
        f"4 frames, `--tracker none`. Each endpoint: a local chat server process answering after {LATENCY_S} s, "
        f"{SLOTS} requests at a time (a replica's capacity). Two requests per rollout. Shared machine (2 cores, "
        "other engineers' jobs running): ratios taken side by side in one run.",
    )


if __name__ == "__main__":
    main()
