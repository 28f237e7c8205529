"""One module per reasoning operation: sample, interpret, select_frames, ground, segment, and review."""

from revseg.graphs.nodes.ground import ground
from revseg.graphs.nodes.interpret import interpret
from revseg.graphs.nodes.review import review_box, review_keyframe
from revseg.graphs.nodes.sample import sample
from revseg.graphs.nodes.segment import segment
from revseg.graphs.nodes.select_frames import select_frames

__all__ = ["ground", "interpret", "review_box", "review_keyframe", "sample", "segment", "select_frames"]
