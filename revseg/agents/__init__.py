"""Ready-to-use agents built on the ReVSeg graph: the agent, its batch runner and its LangChain tool."""

from revseg.agents.batch import BatchQuery, run_batch_file
from revseg.agents.revseg_agent import ReVSegAgent, SegmentationResult, segment
from revseg.agents.tool import compact_answer, segment_tool

__all__ = [
    "BatchQuery",
    "ReVSegAgent",
    "SegmentationResult",
    "compact_answer",
    "run_batch_file",
    "segment",
    "segment_tool",
]
