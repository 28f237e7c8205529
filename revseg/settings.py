"""Chain settings and sampling parameters: the single place where the paper's defaults live.

Both are frozen pydantic models so that a trajectory can record them verbatim and a
replay can rebuild the exact model inputs from the record alone.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

PAPER_PROMPT_SET = "revseg-paper-v1"
LOOK_AGAIN_PROMPT_SET = "revseg-look-again-v1"
COMPACT_PROMPT_SET = "revseg-compact-v1"

Program = Literal["paper", "look_again"]
"""Which chain a run follows: the paper's two turns, or the opt-in agent that can look again.

``paper``: sample -> interpret -> select_frames -> ground -> segment (DESIGN.md 1.2).
``look_again``: the same start, but turn 1 may answer ``zoom(first, last)`` to see the
frames inside a window of its view, and after tracking the policy ``verify``-s the mask
(accept, or reject with a reason, then re-select another keyframe and ground again),
all within ``max_turns`` model turns (DESIGN.md 1.7, issue 16).
"""


class ChainSettings(BaseModel):
    """How the two-turn chain looks at a video (DESIGN.md 1.2)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    num_frames: int = Field(16, ge=1, le=256, description="Frames sampled uniformly for turn 1 (paper: 16).")
    frame_size: tuple[int, int] = Field(
        (448, 448), description="(width, height) each sampled frame is resized to for turn 1 (paper: 448x448)."
    )
    keyframe_size: tuple[int, int] = Field(
        (840, 840), description="(width, height) the keyframe is resized to for turn 2 (paper: 840x840)."
    )
    prompt_set: str = Field(PAPER_PROMPT_SET, description="Named prompt set (DESIGN.md 1.3).")
    fps_label: float = Field(2.0, gt=0, description="The fps the turn-1 prompt claims; the paper's prompt says 2.")
    max_objects: int | None = Field(
        None, ge=1, description="Ground at most this many listed objects; None keeps all (DESIGN.md 1.7)."
    )
    program: Program = Field("paper", description="'paper' (two turns, default) or 'look_again' (zoom, verify).")
    max_turns: int = Field(
        8,
        ge=2,
        le=64,
        description="look_again: model turns a run may take in all, enforced by the graph (paper: ignored).",
    )
    verify_frames: int = Field(
        4, ge=1, le=64, description="look_again: frames spread over the video that verify shows with the mask drawn."
    )

    @model_validator(mode="before")
    @classmethod
    def _look_again_prompts(cls, data: Any) -> Any:
        """``program='look_again'`` without a prompt set uses the look-again set (the paper's has no actions)."""
        if isinstance(data, dict) and data.get("program") == "look_again" and "prompt_set" not in data:
            return {**data, "prompt_set": LOOK_AGAIN_PROMPT_SET}
        return data


class SamplingParams(BaseModel):
    """Decoding parameters passed to every policy backend.

    ``temperature == 0`` means greedy decoding. Backends map these onto their own
    knobs (``generate`` kwargs, chat-completions fields) and record what they used.
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    temperature: float = Field(0.0, ge=0.0, le=5.0)
    top_p: float = Field(1.0, gt=0.0, le=1.0)
    top_k: int | None = Field(None, ge=1)
    max_new_tokens: int = Field(1024, ge=1, le=32768)
    seed: int | None = None

    @property
    def greedy(self) -> bool:
        """True when decoding is deterministic (temperature 0)."""
        return self.temperature == 0.0


PAPER_SETTINGS = ChainSettings()
"""The paper's chain settings: the defaults every CLI command and the server read."""

DEFAULT_SAMPLING = SamplingParams()
"""Greedy decoding, for single runs, batches and evaluation."""

DEFAULT_COLLECT_SAMPLING = SamplingParams(temperature=1.0)
"""Sampling on, so the rollouts of one GRPO group differ."""
