"""Ready-to-use agents built on the ReVSeg graph."""

from revseg.agents.revseg_agent import ReVSegAgent, SegmentationResult, segment

__all__ = ["ReVSegAgent", "SegmentationResult", "segment"]
