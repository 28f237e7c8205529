"""ReVSeg as a LangChain tool, called by a tool-calling chat model, and the example video agent."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest
from langchain_core.language_models.fake_chat_models import GenericFakeChatModel
from langchain_core.messages import AIMessage, ToolMessage

from revseg import ReVSegAgent
from revseg.testing.chat_server import ChatServerLog, chat_server, paper_responder
from revseg.testing.fakes import BoxTracker, ScriptedPolicy

TURN1 = (
    "<think>Two riders lead.\n The one in red is ahead and fully visible in frame 3.</think>"
    "<answer>[{'frame_idx': 3, 'object description': 'rider in red'}]</answer>"
)
TURN2 = '[{"bbox_2d": [84, 168, 420, 672], "label": "rider"}]'
EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "video_agent.py"


def load_example() -> ModuleType:
    spec = importlib.util.spec_from_file_location("video_agent", EXAMPLE)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


class ToolCallingFake(GenericFakeChatModel):
    """A fake chat model that accepts tools (it answers from its script regardless)."""

    def bind_tools(self, tools: Any, **kwargs: Any) -> ToolCallingFake:  # type: ignore[override]
        return self


def test_the_tool_has_typed_arguments_and_a_description() -> None:
    tool = ReVSegAgent(ScriptedPolicy([]), None).as_tool()
    assert tool.name == "segment_video_object" and "keyframe" in tool.description
    assert set(tool.args) == {"video", "query", "out_dir"}
    schema = tool.get_input_schema().model_json_schema()
    assert schema["required"] == ["video", "query"]


def test_a_fake_tool_calling_model_segments_through_the_tool(small_clip: Path, tmp_path: Path) -> None:
    call = {"name": "segment_video_object", "args": {"video": str(small_clip), "query": "the leader"}, "id": "c1"}
    model = ToolCallingFake(messages=iter([AIMessage("", tool_calls=[call]), AIMessage("The rider in red, frame 5.")]))
    agent = ReVSegAgent(ScriptedPolicy([TURN1, TURN2]), BoxTracker(), overlay=False, report=False)
    tool = agent.as_tool(out_dir=tmp_path / "tool")
    answer = load_example().ask(model, tool, str(small_clip), "Who leads?")
    assert answer == "The rider in red, frame 5."
    runs = sorted((tmp_path / "tool").iterdir())
    assert [r.name for r in runs] == ["0001"] and (runs[0] / "trajectory.json").exists()


def test_the_tool_answers_compactly_and_keeps_paths_in_the_artefact(small_clip: Path, tmp_path: Path) -> None:
    agent = ReVSegAgent(ScriptedPolicy([TURN1, TURN2]), BoxTracker(), overlay=False, report=False)
    call = {"name": "segment_video_object", "args": {"video": str(small_clip), "query": "the leader",
            "out_dir": str(tmp_path / "o")}, "id": "c1", "type": "tool_call"}  # fmt: skip
    message = agent.as_tool().invoke(call)
    assert isinstance(message, ToolMessage) and message.tool_call_id == "c1"
    answer = json.loads(message.content)  # type: ignore[arg-type]
    assert answer == {
        "status": "ok",
        "keyframe": 5,
        "object": "rider in red",
        "box": [32.0, 36.0, 160.0, 144.0],
        "masks": str(tmp_path / "o" / "masks" / "masks.json"),
        "rationale": "Two riders lead. The one in red is ahead and fully visible in frame 3.",
    }
    assert message.artifact["trajectory"] == str(tmp_path / "o" / "trajectory.json")


def test_a_bad_video_comes_back_to_the_model_as_an_error_message(tmp_path: Path) -> None:
    call = {"name": "segment_video_object", "args": {"video": str(tmp_path / "nope.mp4"), "query": "x"}, "id": "c2",
            "type": "tool_call"}  # fmt: skip
    message = ReVSegAgent(ScriptedPolicy([]), None).as_tool().invoke(call)
    assert isinstance(message, ToolMessage) and message.status == "error" and "nope.mp4" in str(message.content)


def test_the_example_runs_against_an_openai_compatible_server(
    small_clip: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    pytest.importorskip("langchain_openai")
    revseg_turns = paper_responder(keyframe=3, box=(84, 168, 420, 672))

    def respond(request: dict[str, Any]) -> str | dict[str, Any]:
        if "tools" not in request:
            return revseg_turns(request)
        last = request["messages"][-1]
        if last["role"] == "tool":
            found = json.loads(last["content"])
            return f"The rider is clearest in frame {found['keyframe']}, at {found['box']}."
        args = {"video": str(small_clip), "query": "the rider who leads"}
        call = {
            "id": "call_1",
            "type": "function",
            "function": {"name": "segment_video_object", "arguments": json.dumps(args)},
        }
        return {"content": None, "tool_calls": [call]}

    log = ChatServerLog()
    monkeypatch.setenv("OPENAI_API_KEY", "sk-local")
    with chat_server(respond, log) as url:
        load_example().main([str(small_clip), "Who leads?", "--base-url", url, "--model", "qwen",
                             "--out", str(tmp_path / "out")])  # fmt: skip
    printed = capsys.readouterr().out
    assert "The rider is clearest in frame 5, at [32.0, 36.0, 160.0, 144.0]." in printed
    assert [bool(r.get("tools")) for r in log.requests] == [True, False, False, True]
