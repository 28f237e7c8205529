"""Native tool calls for the look_again actions: rendered as the JSON-in-text answer, and back."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

import pytest

from revseg.graphs import ChainContext, build_graph, trajectory_from_state
from revseg.policies.actions import parse_look_answer, parse_verdict
from revseg.policies.openai import OpenAIPolicy
from revseg.policies.tool_calls import LOOK_AGAIN_TOOLS, call_text, text_call, with_tool_calls
from revseg.settings import ChainSettings
from revseg.testing.chat_server import ChatServerLog, chat_server
from revseg.testing.fakes import BoxTracker
from revseg.trajectory import Trajectory

BOX = '[{"bbox_2d": [84, 168, 420, 672], "label": "rider"}]'
# The run as tool calls: (tool, arguments, reasoning); None stands for the text-only box turns.
CALLS: list[tuple[str, dict[str, Any], str] | None] = [
    ("zoom", {"first": 2, "last": 4}, "too small"),
    ("select_keyframe", {"objects": [{"frame_idx": 3, "object description": "rider in red"}]}, "there"),
    None,
    ("verify", {"verdict": "reject", "reason": "it follows the car"}, "wrong"),
    ("select_keyframe", {"objects": [{"frame_idx": 5, "object description": "rider in blue"}]}, "other"),
    None,
    ("verify", {"verdict": "accept"}, "good"),
]


def test_each_call_renders_as_the_strict_text_answer_and_back() -> None:
    zoom = call_text("zoom", {"first": 2, "last": 4}, "look")
    assert zoom == '<think>look</think> <answer> {"action": "zoom", "first": 2, "last": 4} </answer>'
    assert parse_look_answer(zoom, 8).window == (2, 4) and parse_look_answer(zoom, 8).strict
    select = call_text("select_keyframe", '{"objects": [{"frame_idx": 3, "object description": "dog"}]}')
    assert parse_look_answer(select, 8).strict and parse_look_answer(select, 8).objects[0].description == "dog"
    reject = call_text("verify", {"verdict": "reject", "reason": "cat"})
    assert parse_verdict(reject).strict and parse_verdict(reject).why == "cat"
    for name, args, think in [c for c in CALLS if c is not None]:
        assert text_call(call_text(name, args, think)) == (name, args, think)
    assert text_call("<think>x</think> <answer> [1, 2] </answer>") is None and text_call(BOX) is None


def test_history_sends_rendered_calls_back_as_calls_with_their_results() -> None:
    rendered = call_text("zoom", {"first": 2, "last": 4}, "look")
    wire = [
        {"role": "user", "content": "q"},
        {"role": "assistant", "content": rendered},
        {"role": "user", "content": "frames"},
        {"role": "assistant", "content": BOX},
    ]
    out = with_tool_calls(wire)
    assert [m["role"] for m in out] == ["user", "assistant", "tool", "user", "assistant"]
    call = out[1]["tool_calls"][0]
    assert out[1]["content"] == "look" and call["function"]["name"] == "zoom"
    assert json.loads(call["function"]["arguments"]) == {"first": 2, "last": 4}
    assert out[2]["tool_call_id"] == call["id"] and out[4] == wire[3]


def run_served(clip: Path, out: Path, *, tools: bool) -> tuple[Trajectory, ChatServerLog]:
    log = ChatServerLog()

    def respond(request: dict[str, Any]) -> Any:
        call = CALLS[len(log.requests) - 1]
        if call is None:
            return BOX
        name, args, think = call
        if not tools:
            return call_text(name, args, think)
        return {"content": think, "tool_calls": [_tool_call(name, args)]}

    settings = ChainSettings(program="look_again", num_frames=8, verify_frames=2)
    with chat_server(respond, log) as url:
        context = ChainContext(
            policy=OpenAIPolicy("qwen2.5-vl", base_url=url, tool_calls=tools), tracker=BoxTracker(), settings=settings
        )
        inputs = {"video_path": str(clip), "query": "who leads?", "out_dir": str(out)}
        state = asyncio.run(build_graph().ainvoke(inputs, context=context))  # type: ignore[arg-type]
    return trajectory_from_state(dict(state), context), log


def test_tool_calls_and_json_in_text_give_the_same_trajectory(small_clip: Path, tmp_path: Path) -> None:
    native, log = run_served(small_clip, tmp_path / "tools", tools=True)
    text, text_log = run_served(small_clip, tmp_path / "text", tools=False)
    assert [t.name for t in native.turns] == ["interpret", "zoom", "ground", "verify", "reselect", "ground", "verify"]
    assert [a.verdict for a in native.attempts] == ["reject", "accept"]
    for a, b in zip(native.turns, text.turns, strict=True):
        assert (a.name, a.response, a.parsed, a.image_frames) == (b.name, b.response, b.parsed, b.image_frames)
    assert native.targets == text.targets and native.status == text.status
    assert all(r.get("tools") == LOOK_AGAIN_TOOLS for r in log.requests)
    assert all("tools" not in r for r in text_log.requests)
    assert "tool_calls" in (native.turns[0].exchange.returned if native.turns[0].exchange else [])
    last = log.requests[-1]["messages"]  # the history holds the model's own calls and their results
    assert [m["role"] for m in last].count("tool") == 4
    assert [c["function"]["name"] for m in last if m.get("tool_calls") for c in m["tool_calls"]] == [
        "zoom",
        "select_keyframe",
        "verify",
        "select_keyframe",
    ]


@pytest.mark.parametrize("arguments", ['{"first": 9, "last": 2}', "not json"])
def test_a_bad_tool_call_is_a_failed_parse_not_a_crash(arguments: str) -> None:
    answer = parse_look_answer(call_text("zoom", arguments), 8)
    assert not answer.ok and answer.reason


def _tool_call(name: str, arguments: dict[str, Any]) -> dict[str, Any]:
    return {"id": f"call-{name}", "type": "function", "function": {"name": name, "arguments": json.dumps(arguments)}}
