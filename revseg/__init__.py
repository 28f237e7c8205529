"""revseg: reasoning video object segmentation (the ReVSeg chain) as a LangGraph agent.

Three lines::

    from revseg import ReVSegAgent
    agent = ReVSegAgent(policy="hf:Qwen/Qwen2.5-VL-7B-Instruct", tracker="sam2:facebook/sam2.1-hiera-large")
    result = agent.run("bikes.mp4", "the cyclist who is about to be overtaken", out_dir="out")

The public names are imported lazily: ``import revseg`` loads no torch, transformers or langgraph.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from revseg._lazy import lazy_getattr

__version__ = "0.1.0"

_EXPORTS = {
    "ReVSegAgent": "revseg.agents",
    "SegmentationResult": "revseg.agents",
    "segment": "revseg.agents",
    "build_graph": "revseg.graphs",
    "ChainContext": "revseg.graphs",
    "build_policy": "revseg.policies",
    "build_tracker": "revseg.tools.trackers",
    "track_video": "revseg.tools.track",
    "ChainSettings": "revseg.settings",
    "SamplingParams": "revseg.settings",
    "Trajectory": "revseg.trajectory",
    "Status": "revseg.trajectory",
    "RevsegError": "revseg.errors",
}

if TYPE_CHECKING:
    from revseg.agents import ReVSegAgent, SegmentationResult, segment
    from revseg.errors import RevsegError
    from revseg.graphs import ChainContext, build_graph
    from revseg.policies import build_policy
    from revseg.settings import ChainSettings, SamplingParams
    from revseg.tools.track import track_video
    from revseg.tools.trackers import build_tracker
    from revseg.trajectory import Status, Trajectory


__getattr__ = lazy_getattr(__name__, _EXPORTS)


__all__ = [
    "ChainContext",
    "ChainSettings",
    "ReVSegAgent",
    "RevsegError",
    "SamplingParams",
    "SegmentationResult",
    "Status",
    "Trajectory",
    "build_graph",
    "build_policy",
    "build_tracker",
    "segment",
    "track_video",
]
