"""One module per reasoning operation: sample, interpret, select_frames, ground, segment, review,
and the look_again program's decide, zoom, verify and reselect."""

from revseg.graphs.nodes.decide import decide
from revseg.graphs.nodes.ground import ground
from revseg.graphs.nodes.interpret import interpret
from revseg.graphs.nodes.reselect import reselect
from revseg.graphs.nodes.review import review_box, review_keyframe
from revseg.graphs.nodes.sample import sample
from revseg.graphs.nodes.segment import segment
from revseg.graphs.nodes.select_frames import select_frames
from revseg.graphs.nodes.verify import verify
from revseg.graphs.nodes.zoom import zoom

__all__ = [
    "decide",
    "ground",
    "interpret",
    "reselect",
    "review_box",
    "review_keyframe",
    "sample",
    "segment",
    "select_frames",
    "verify",
    "zoom",
]
