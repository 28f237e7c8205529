"""Module-level graphs for ``langgraph dev`` and LangGraph servers (``langgraph.json`` points here).

A server cannot pass backend objects: the run's ``context`` arrives as JSON and LangGraph
turns it into a :class:`ServeContext` (backend specs and a few settings). Each field left
out comes from the environment (``REVSEG_POLICY``, ``REVSEG_TRACKER``, ``OPENAI_BASE_URL``;
``OPENAI_API_KEY`` for API policies) or from the paper's defaults. Backends are built once
per process and spec, then shared by every run, as is one frame cache. The server brings
its own checkpointer, so threads, ``stream_mode="updates"`` and the review interrupts of
``review_graph`` work as with any LangGraph graph (tests/graphs/test_langgraph_dev.py runs
both under ``langgraph dev``). For example::

    langgraph dev   # then, with the langgraph SDK:
    client.runs.stream(thread_id, "revseg", input={"video_path": ..., "query": ..., "out_dir": ...},
                       context={"policy": "openai:Qwen/Qwen2.5-VL-7B-Instruct", "tracker": "none"})
"""

from __future__ import annotations

import functools
import os
from dataclasses import dataclass, field
from typing import Any

from revseg.graphs.build import build_graph
from revseg.graphs.state import ChainContext
from revseg.policies import DEFAULT_POLICY, Policy, build_policy
from revseg.settings import DEFAULT_SAMPLING, PAPER_SETTINGS, ChainSettings, Program, SamplingParams
from revseg.tools.frame_cache import ResizedFrameCache
from revseg.tools.trackers import DEFAULT_TRACKER, build_tracker
from revseg.tools.trackers.base import Tracker


def _env(name: str, default: str | None = None) -> Any:
    return field(default_factory=lambda: os.environ.get(name, default))


@dataclass
class ServeContext:
    """The JSON context of a served run: backend specs and the settings a caller may change."""

    policy: str = _env("REVSEG_POLICY", DEFAULT_POLICY)
    tracker: str = _env("REVSEG_TRACKER", DEFAULT_TRACKER)
    base_url: str | None = _env("OPENAI_BASE_URL")
    box_convention: str | None = None
    device: str | None = None
    num_frames: int = PAPER_SETTINGS.num_frames
    program: Program = PAPER_SETTINGS.program
    temperature: float = DEFAULT_SAMPLING.temperature
    max_new_tokens: int = DEFAULT_SAMPLING.max_new_tokens
    seed: int | None = None
    frame_backend: str = "auto"
    _built: ChainContext | None = field(default=None, init=False, repr=False)

    def chain_context(self) -> ChainContext:
        """The run's ChainContext, with backends shared across runs of this process."""
        if self._built is None:
            self._built = ChainContext(
                policy=_policy(self.policy, self.base_url, self.box_convention, self.device),
                tracker=_tracker(self.tracker, self.device),
                settings=ChainSettings(num_frames=self.num_frames, program=self.program),
                sampling=SamplingParams(
                    temperature=self.temperature, max_new_tokens=self.max_new_tokens, seed=self.seed
                ),
                frame_backend=self.frame_backend,
                frame_cache=_frame_cache(),
            )
        return self._built


@functools.cache
def _policy(spec: str, base_url: str | None, box_convention: str | None, device: str | None) -> Policy:
    if spec.startswith("openai:"):
        return build_policy(spec, base_url=base_url, box_convention=box_convention)
    return build_policy(spec, box_convention=box_convention, device=device)


@functools.cache
def _tracker(spec: str, device: str | None) -> Tracker | None:
    return build_tracker(spec, device=device)


@functools.cache
def _frame_cache() -> ResizedFrameCache:
    """One per server process, like the backends: runs on the same video decode it once."""
    return ResizedFrameCache()


graph = build_graph(context_schema=ServeContext, name="revseg")
"""The chain as ``langgraph dev`` serves it."""

review_graph = build_graph(review=True, context_schema=ServeContext, name="revseg_review")
"""The chain with human review after select_frames and after ground (resume with ``Command(resume=...)``)."""
