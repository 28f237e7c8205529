"""Ready-to-use agents built on the ReVSeg graph: the agent, its batch runner and its LangChain tool."""

from revseg.agents.batch import run_batch_file
from revseg.agents.request import RunRequest, SegmentationResult
from revseg.agents.revseg_agent import ReVSegAgent, segment
from revseg.agents.tool import compact_answer, segment_tool

__all__ = [
    "ReVSegAgent",
    "RunRequest",
    "SegmentationResult",
    "compact_answer",
    "run_batch_file",
    "segment",
    "segment_tool",
]
