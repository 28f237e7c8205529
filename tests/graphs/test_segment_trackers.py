"""Several objects in one query (DESIGN.md 1.7) through the graph with both real tracker backends.

The scripted policy names two objects; the segment node groups them by keyframe, tracks
each group jointly and writes per-object masks plus their union. The fake BoxTracker
checks the bookkeeping in test_graph.py; here the tiny sam2 and hf-sam2 models run it.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator, Sequence
from pathlib import Path

import numpy as np
import pytest

from revseg.graphs import ChainContext, build_graph
from revseg.testing.fakes import ScriptedPolicy
from revseg.tools.frames import FrameReader
from revseg.tools.masks import read_masks_json
from revseg.tools.trackers import build_tracker
from revseg.tools.trackers.base import FrameMasks, Tracker
from revseg.trajectory import BoxXYXY, Status

SAME_KEYFRAME = (
    "<think>two riders</think><answer>[{'frame_idx': 8, 'object description': 'left rider'},"
    " {'frame_idx': 8, 'object description': 'right rider'}]</answer>"
)
TWO_KEYFRAMES = (
    "<think>two riders</think><answer>[{'frame_idx': 0, 'object description': 'left rider'},"
    " {'frame_idx': 15, 'object description': 'right rider'}]</answer>"
)
LEFT, RIGHT = "[40, 160, 380, 800]", "[460, 120, 800, 760]"  # in the 840x840 keyframe the policy saw


pytestmark = pytest.mark.usefixtures("one_torch_thread")


class CountingTracker:
    """A real tracker, counting the keyframes it is asked to track from."""

    def __init__(self, inner: Tracker) -> None:
        self.inner = inner
        self.keyframes: list[tuple[int, int]] = []

    @property
    def spec(self) -> str:
        return self.inner.spec

    def track(
        self, video: FrameReader, keyframe_index: int, boxes: Sequence[BoxXYXY], *, progress: bool = False
    ) -> Iterator[FrameMasks]:
        self.keyframes.append((keyframe_index, len(boxes)))
        return self.inner.track(video, keyframe_index, boxes, progress=progress)


@pytest.fixture(scope="module", params=["tiny_sam2_spec", "tiny_hf_sam2_spec"])
def tracker(request: pytest.FixtureRequest) -> Tracker:
    built = build_tracker(request.getfixturevalue(request.param), device="cpu")
    assert built is not None
    return built


@pytest.mark.parametrize(
    ("turn1", "calls"), [(SAME_KEYFRAME, [(12, 2)]), (TWO_KEYFRAMES, [(0, 1), (23, 1)])], ids=["joint", "two-passes"]
)
def test_two_objects_give_per_object_masks_and_their_union(
    tracker: Tracker, small_clip: Path, tmp_path: Path, turn1: str, calls: list[tuple[int, int]]
) -> None:
    counting = CountingTracker(tracker)
    context = ChainContext(policy=ScriptedPolicy([turn1, LEFT, RIGHT]), tracker=counting)
    inputs = {"video_path": str(small_clip), "query": "both riders", "out_dir": str(tmp_path)}
    state = asyncio.run(build_graph().ainvoke(inputs, context=context))  # type: ignore[arg-type]
    assert state["status"] == Status.OK.value, state.get("reason")
    assert counting.keyframes == calls, "targets sharing a keyframe are tracked jointly, in one pass"
    masks = read_masks_json(state["outputs"]["masks_json"])
    assert (masks.num_frames, masks.objects, masks.missing) == (24, 2, [])
    for index in range(24):
        per_object = masks.object_masks(index)
        assert per_object.shape == (2, 180, 320)
        assert np.array_equal(masks.union(index), per_object.any(axis=0))
    assert len(list((tmp_path / "masks").glob("*.png"))) == 24
