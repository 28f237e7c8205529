"""Node ``sample``: open the video and choose which frames turn 1 sees."""

from __future__ import annotations

import asyncio
from time import perf_counter
from typing import Any

from langgraph.runtime import Runtime

from revseg.graphs.state import ChainContext, ChainState, chain_context
from revseg.tools.frames import sample_indices


async def sample(state: ChainState, runtime: Runtime[ChainContext]) -> dict[str, Any]:
    """Record the video's size and length and ``round(linspace(0, T-1, n))`` sampled indices.

    The path is kept as the frame reader resolved it (``~`` expanded), in ``video_path``
    only. A broken video raises VideoError here: that is bad input, not a model outcome.
    """
    ctx = chain_context(runtime)
    start = perf_counter()
    ref = await asyncio.to_thread(ctx.frame_cache.probe, state["video_path"], ctx.frame_backend)
    indices = sample_indices(ref.num_frames, ctx.settings.num_frames)
    return {
        "video_path": ref.path,
        "video": ref.model_dump(mode="json", exclude={"path"}),
        "sampled_indices": indices,
        "turns": [],
        "targets": [],
        "outputs": {},
        "reviews": [],
        "timings": {"sample": perf_counter() - start},
    }
