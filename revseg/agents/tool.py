"""ReVSeg as a LangChain tool: a video agent asks "segment this object in this video".

The tool returns a compact JSON answer the calling model can read (status, keyframe,
box, the mask file and a one-line rationale from turn 1's reasoning) while the masks,
trajectory and overlay go to disk. The artefact of the tool message carries the full
paths for the program around the model. A bad input (a missing video) comes back to the
model as an error message instead of ending its loop.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pydantic import BaseModel, Field

from revseg.errors import RevsegError

if TYPE_CHECKING:
    from langchain_core.tools import BaseTool

    from revseg.agents.request import SegmentationResult
    from revseg.agents.revseg_agent import ReVSegAgent

DESCRIPTION = (
    "Find and segment one object in a video from a description in words, which may need reasoning "
    "('the cyclist about to be overtaken'). Returns the keyframe where the object is clearest, its box "
    "[x1, y1, x2, y2] in pixels on that frame, a one-line rationale, and the file holding its mask on every frame."
)
RATIONALE_CHARS = 240


class SegmentVideoInput(BaseModel):
    """The tool's arguments, as the calling model sees them."""

    video: str = Field(description="Path to a video file (mp4, avi, mkv, webm, mov) or a folder of frames.")
    query: str = Field(description="The object to segment, described in words; implicit descriptions are fine.")
    out_dir: str | None = Field(None, description="Folder for the masks and the record; a fresh one when omitted.")


def compact_answer(result: SegmentationResult) -> dict[str, Any]:
    """What the calling model reads: status, keyframe, box, mask file and a one-line rationale."""
    trajectory = result.trajectory
    answer: dict[str, Any] = {"status": trajectory.status.value}
    if trajectory.reason:
        answer["reason"] = trajectory.reason
    if trajectory.targets:
        target = trajectory.targets[0]
        answer["keyframe"] = target.frame_index
        answer["object"] = target.description
        if target.box is not None:
            answer["box"] = [round(v, 1) for v in target.box]
        if len(trajectory.targets) > 1:
            answer["objects"] = len(trajectory.targets)
    if "masks_json" in trajectory.outputs:
        answer["masks"] = trajectory.outputs["masks_json"]
    rationale = one_line_rationale(result)
    if rationale:
        answer["rationale"] = rationale
    return answer


def one_line_rationale(result: SegmentationResult) -> str | None:
    """Turn 1's ``<think>`` text on one line, cut to a readable length."""
    turns = result.trajectory.turns
    think = (turns[0].parsed or {}).get("think") if turns else None
    if not isinstance(think, str) or not think.strip():
        return None
    line = " ".join(think.split())
    return line if len(line) <= RATIONALE_CHARS else line[: RATIONALE_CHARS - 3] + "..."


def segment_tool(
    agent: ReVSegAgent, *, name: str = "segment_video_object", out_dir: str | Path | None = None
) -> BaseTool:
    """A ``StructuredTool`` that runs ``agent`` on ``(video, query)`` and answers compactly.

    Without an ``out_dir`` argument a call writes to ``out_dir/<n>`` when the tool was
    given a folder, else to a fresh temporary folder. The tool message's artefact holds
    the output folder, the trajectory path and the run's thread id.
    """
    from langchain_core.tools import StructuredTool, ToolException

    root = Path(out_dir) if out_dir is not None else None
    calls = [0]

    def place(requested: str | None) -> Path | None:
        if requested is not None:
            return Path(requested)
        if root is None:
            return None
        calls[0] += 1
        return root / f"{calls[0]:04d}"

    def reply(result: SegmentationResult) -> tuple[str, dict[str, Any]]:
        artefact = {
            "out_dir": str(result.out_dir),
            "trajectory": result.trajectory.outputs.get("trajectory"),
            "thread_id": result.thread_id,
        }
        return json.dumps(compact_answer(result)), artefact

    def run(video: str, query: str, out_dir: str | None = None) -> tuple[str, dict[str, Any]]:
        try:
            return reply(agent.run(video, query, place(out_dir)))
        except RevsegError as exc:
            raise ToolException(str(exc)) from exc

    async def arun(video: str, query: str, out_dir: str | None = None) -> tuple[str, dict[str, Any]]:
        try:
            return reply(await agent.arun(video, query, place(out_dir)))
        except RevsegError as exc:
            raise ToolException(str(exc)) from exc

    return StructuredTool.from_function(
        func=run,
        coroutine=arun,
        name=name,
        description=DESCRIPTION,
        args_schema=SegmentVideoInput,
        response_format="content_and_artifact",
        handle_tool_error=True,
    )
