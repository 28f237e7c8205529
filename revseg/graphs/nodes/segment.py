"""Node ``segment``: the tracker turns keyframe boxes into masks for every frame."""

from __future__ import annotations

import asyncio
from collections import defaultdict
from pathlib import Path
from time import perf_counter
from typing import Any

import numpy as np
from langgraph.runtime import Runtime

from revseg.errors import TrackerError
from revseg.graphs.state import ChainContext, ChainState, chain_context, video_ref
from revseg.tools.frames import FrameReader
from revseg.tools.masks import MaskWriter, decode_rle, encode_rle
from revseg.trajectory import Status

MASKS_DIR = "masks"


async def segment(state: ChainState, runtime: Runtime[ChainContext]) -> dict[str, Any]:
    """Track every target from its keyframe, forwards and backwards, and write the masks.

    Targets that share a keyframe are tracked jointly in one pass that streams straight
    to disk. Targets on different keyframes need one pass each; their per-frame masks
    are held as RLE (small) and merged before writing. A no-target run writes empty
    masks; with no tracker (``--tracker none``) the run ends after ground. Tracking and
    writing block, so they run in a worker thread.
    """
    ctx = chain_context(runtime)
    if ctx.tracker is None:
        return {"status": state.get("status", Status.OK.value)}
    return await asyncio.to_thread(write_masks, state, ctx)


def write_masks(state: ChainState, ctx: ChainContext) -> dict[str, Any]:
    """The blocking part of :func:`segment`: track, write the masks, return the state update."""
    video = video_ref(state)
    out = Path(state["out_dir"]) / MASKS_DIR
    targets = state.get("targets", [])
    writer = MaskWriter(out, num_frames=video.num_frames, size=(video.width, video.height), num_objects=len(targets))
    start = perf_counter()
    try:
        if state.get("status") != Status.NO_TARGET.value:
            with ctx.frame_cache.borrow(video.path, ctx.frame_backend) as reader:  # open since sample
                _track_into(writer, reader, targets, ctx)
    except TrackerError as exc:
        return {
            "status": Status.TRACKER_ERROR.value,
            "reason": str(exc),
            "timings": {"segment": perf_counter() - start},
        }
    masks_json = writer.close()
    outputs = {**state.get("outputs", {}), "masks": str(out), "masks_json": str(masks_json)}
    return {
        "status": state.get("status", Status.OK.value),
        "outputs": outputs,
        "timings": {"segment": perf_counter() - start},
    }


def _track_into(writer: MaskWriter, reader: FrameReader, targets: list[dict[str, Any]], ctx: ChainContext) -> None:
    """Run the tracker once per distinct keyframe and hand every frame's masks to ``writer``."""
    assert ctx.tracker is not None
    groups: dict[int, list[int]] = defaultdict(list)
    for number, target in enumerate(targets):
        groups[target["frame_index"]].append(number)
    if len(groups) == 1:
        ((keyframe, numbers),) = groups.items()
        boxes = [tuple(targets[n]["box"]) for n in numbers]
        for item in ctx.tracker.track(reader, keyframe, boxes, progress=ctx.progress):
            writer.write(item.frame_index, item.masks)
        return
    per_frame: dict[int, dict[int, dict[str, Any]]] = defaultdict(dict)
    for keyframe, numbers in groups.items():
        boxes = [tuple(targets[n]["box"]) for n in numbers]
        for item in ctx.tracker.track(reader, keyframe, boxes, progress=ctx.progress):
            for number, mask in zip(numbers, item.masks, strict=True):
                per_frame[item.frame_index][number] = encode_rle(mask)
    for frame_index, by_target in sorted(per_frame.items()):
        writer.write(frame_index, np.stack([decode_rle(by_target[n]) for n in range(len(targets))]))
