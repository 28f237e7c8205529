"""Node ``sample``: open the video and choose which frames turn 1 sees."""

from __future__ import annotations

from time import perf_counter
from typing import Any

from langgraph.runtime import Runtime

from revseg.graphs.state import ChainContext, ChainState
from revseg.tools.frames import open_video, sample_indices


def sample(state: ChainState, runtime: Runtime[ChainContext]) -> dict[str, Any]:
    """Record the video reference and ``round(linspace(0, T-1, n))`` sampled indices.

    A broken video raises VideoError here: that is bad input, not a model outcome.
    """
    start = perf_counter()
    reader = open_video(state["video_path"], backend=runtime.context.frame_backend)
    try:
        ref = reader.ref
    finally:
        reader.close()
    indices = sample_indices(ref.num_frames, runtime.context.settings.num_frames)
    return {
        "video": ref.model_dump(mode="json"),
        "sampled_indices": indices,
        "turns": [],
        "targets": [],
        "outputs": {},
        "timings": {"sample": perf_counter() - start},
    }
