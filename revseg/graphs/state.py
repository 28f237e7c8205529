"""The graph's typed state and run context.

State holds small JSON-like values only (DESIGN.md 2.2): the query, a video reference,
sampled indices, the conversation turns as records, parsed targets, status and output
paths. Frames are re-read from the video reference; masks are written to the output
folder and referenced. Policy, tracker and settings travel in :class:`ChainContext`
through LangGraph's runtime context, never through state or ``configurable``.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Annotated, Any, TypedDict

from langgraph.runtime import Runtime

from revseg.errors import GraphError
from revseg.policies.base import Policy
from revseg.settings import ChainSettings, SamplingParams
from revseg.tools.frame_cache import ResizedFrameCache
from revseg.tools.trackers.base import Tracker
from revseg.trajectory import VideoRef


def merge_timings(left: dict[str, float] | None, right: dict[str, float] | None) -> dict[str, float]:
    """Reducer: each node adds its own stage timings, summed when a stage runs again (look_again tracks twice)."""
    merged = dict(left or {})
    for stage, seconds in (right or {}).items():
        merged[stage] = merged.get(stage, 0.0) + seconds
    return merged


class ChainInput(TypedDict):
    """What a caller passes to the graph."""

    video_path: str
    query: str
    out_dir: str


class ChainState(ChainInput, total=False):
    """Everything the nodes read and write; each key is owned by the node that sets it."""

    video: dict[str, Any]  # VideoRef dumped without its path, which is video_path: read both with video_ref()
    sampled_indices: list[int]
    turns: list[dict[str, Any]]  # TurnRecord dumps, in conversation order
    targets: list[dict[str, Any]]  # Target dumps
    status: str  # trajectory.Status value once decided
    reason: str | None
    outputs: dict[str, str]
    timings: Annotated[dict[str, float], merge_timings]
    reviews: list[dict[str, Any]]  # a person's decisions at the review points, in order
    # look_again only (ChainSettings.program):
    action: str  # the operation the last deciding node chose: "zoom", "ground", "segment", "reselect" or "end"
    zoom: list[int] | None  # the window [first, last] of the last view that the next zoom turn samples
    attempts: list[dict[str, Any]]  # Attempt dumps: every verified grounding attempt, rejected ones kept


def video_ref(state: Mapping[str, Any]) -> VideoRef:
    """The run's video: what ``sample`` measured (``state["video"]``) at ``state["video_path"]``.

    The path is held once, as the input names it; a ``video`` saved with its own path (by
    an older version, in a checkpoint) reads the same.
    """
    return VideoRef.model_validate({**state["video"], "path": state["video_path"]})


@dataclass
class ChainContext:
    """The run-scoped dependencies every node receives through ``Runtime.context``."""

    policy: Policy
    tracker: Tracker | None = None
    settings: ChainSettings = field(default_factory=ChainSettings)
    sampling: SamplingParams = field(default_factory=SamplingParams)
    frame_backend: str = "auto"
    progress: bool = False
    frame_cache: ResizedFrameCache = field(default_factory=ResizedFrameCache)


def chain_context(runtime: Runtime[Any]) -> ChainContext:
    """The run's :class:`ChainContext`, from ``Runtime.context``.

    A context that is not one (the JSON context a LangGraph server passes, see
    ``revseg.graphs.serve``) must build one with a ``chain_context()`` method.
    """
    context = runtime.context
    if isinstance(context, ChainContext):
        return context
    build = getattr(context, "chain_context", None)
    if build is None:
        raise GraphError(
            "the revseg graph needs its backends in the runtime context: "
            "invoke it with context=ChainContext(policy=..., tracker=...)"
        )
    built = build()
    if not isinstance(built, ChainContext):
        raise GraphError(f"{type(context).__name__}.chain_context() returned {type(built).__name__}, not ChainContext")
    return built
