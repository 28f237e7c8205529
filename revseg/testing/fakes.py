"""Deterministic stand-ins for the policy and the tracker, for tests of graphs and agents.

They implement the real protocols, so code under test cannot tell them apart from a
backend; they just do no learning. Use the tiny random models for tests of the
backends themselves.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import numpy as np

from revseg.errors import PolicyError
from revseg.policies.base import Generation, Message
from revseg.settings import SamplingParams
from revseg.tools.trackers.base import FrameMasks
from revseg.trajectory import BoxConvention, BoxXYXY, PolicyInfo

if TYPE_CHECKING:
    from revseg.tools.frames import FrameReader


@dataclass
class ScriptedPolicy:
    """Answers each turn with the next scripted text; an Exception in the script is raised instead.

    ``calls`` keeps every conversation it was given, for assertions on what the graph sent.
    """

    answers: list[str | Exception]
    box_convention: BoxConvention = "absolute"
    calls: list[list[Message]] = field(default_factory=list)
    delay_s: float = 0.0

    @property
    def info(self) -> PolicyInfo:
        """A fixed identity."""
        return PolicyInfo(
            spec="scripted:test", backend="scripted", model="scripted", box_convention=self.box_convention
        )

    def seen_size(self, width: int, height: int) -> tuple[int, int]:
        """The model sees what it is sent."""
        return width, height

    def generate(self, messages: Sequence[Message], sampling: SamplingParams) -> Generation:
        """Pop the next answer."""
        self.calls.append(list(messages))
        if not self.answers:
            raise PolicyError("scripted policy ran out of answers")
        answer = self.answers.pop(0)
        if isinstance(answer, Exception):
            raise answer
        ids = list(range(len(answer.split())))
        return Generation(text=answer, token_ids=ids, logprobs=[-0.5] * len(ids))

    async def agenerate(self, messages: Sequence[Message], sampling: SamplingParams) -> Generation:
        """Pop the next answer after ``delay_s`` (a stand-in for network latency)."""
        if self.delay_s:
            await asyncio.sleep(self.delay_s)
        return self.generate(messages, sampling)


@dataclass
class BoxTracker:
    """Fills each prompted box on every frame: a tracker whose output is easy to predict."""

    calls: list[tuple[int, list[BoxXYXY]]] = field(default_factory=list)

    @property
    def spec(self) -> str:
        """A fixed identity."""
        return "box:test"

    def track(
        self, video: FrameReader, keyframe_index: int, boxes: Sequence[BoxXYXY], *, progress: bool = False
    ) -> Iterator[FrameMasks]:
        """Yield the same box masks for every frame, keyframe first, then backwards, then forwards."""
        self.calls.append((keyframe_index, list(boxes)))
        ref = video.ref
        masks = np.zeros((len(boxes), ref.height, ref.width), dtype=bool)
        for k, (x1, y1, x2, y2) in enumerate(boxes):
            masks[k, int(y1) : int(np.ceil(y2)), int(x1) : int(np.ceil(x2))] = True
        order = [keyframe_index, *range(keyframe_index - 1, -1, -1), *range(keyframe_index + 1, ref.num_frames)]
        for index in order:
            yield FrameMasks(frame_index=index, masks=masks.copy())
