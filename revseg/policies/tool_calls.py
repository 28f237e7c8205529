"""The look_again actions as native tool calls, and their one-to-one rendering as JSON in text.

An endpoint with function calling (``tools=``) can answer a look_again turn with a call
to ``zoom``, ``select_keyframe`` or ``verify`` instead of writing JSON in ``<answer>``.
:func:`call_text` renders such a call as exactly the text the prompts ask for
(``<think>...</think> <answer> JSON </answer>``), so the trajectory, the parsers, the
rewards and the report see one format whichever way the model answered. :func:`text_call`
inverts it, so the conversation sent back to a tool-calling endpoint shows the model its
own calls (an assistant ``tool_calls`` message and a ``tool`` result), not our text.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping, Sequence
from typing import Any

ZOOM_TOOL = "zoom"
SELECT_TOOL = "select_keyframe"
VERIFY_TOOL = "verify"

LOOK_AGAIN_TOOLS: list[dict[str, Any]] = [
    {
        "type": "function",
        "function": {
            "name": ZOOM_TOOL,
            "description": "See new frames sampled between two of the frames shown (indices into those frames).",
            "parameters": {
                "type": "object",
                "properties": {
                    "first": {"type": "integer", "description": "Index of the first frame of the window."},
                    "last": {"type": "integer", "description": "Index of the last frame of the window."},
                },
                "required": ["first", "last"],
            },
        },
    },
    {
        "type": "function",
        "function": {
            "name": SELECT_TOOL,
            "description": "Choose the keyframe of each target among the frames shown and describe the target; "
            "an empty list means the target is not in the video.",
            "parameters": {
                "type": "object",
                "properties": {
                    "objects": {
                        "type": "array",
                        "items": {
                            "type": "object",
                            "properties": {
                                "frame_idx": {"type": "integer"},
                                "object description": {"type": "string"},
                            },
                            "required": ["frame_idx", "object description"],
                        },
                    }
                },
                "required": ["objects"],
            },
        },
    },
    {
        "type": "function",
        "function": {
            "name": VERIFY_TOOL,
            "description": "Accept the tracked mask, or reject it saying what is wrong.",
            "parameters": {
                "type": "object",
                "properties": {
                    "verdict": {"type": "string", "enum": ["accept", "reject"]},
                    "reason": {"type": "string"},
                },
                "required": ["verdict"],
            },
        },
    },
]
"""OpenAI function definitions of the three look_again actions."""

_RENDERED_RE = re.compile(r"<think>(.*)</think> <answer> (.*) </answer>", re.S)


def call_text(name: str, arguments: Mapping[str, Any] | str, think: str | None = None) -> str:
    """A tool call as the answer text the look_again prompts ask for (unknown tools: their JSON, unparsed)."""
    args = _arguments(arguments)
    if name == ZOOM_TOOL:
        value: Any = {"action": "zoom", "first": args.get("first"), "last": args.get("last")}
    elif name == SELECT_TOOL:
        objects = args.get("objects", [args] if "frame_idx" in args else [])
        value = list(objects) if isinstance(objects, Sequence) and not isinstance(objects, str) else objects
    elif name == VERIFY_TOOL:
        value = {"verdict": args.get("verdict")}
        if args.get("reason"):
            value["reason"] = args["reason"]
    else:
        value = {"tool": name, "arguments": args}
    return f"<think>{(think or '').strip()}</think> <answer> {json.dumps(value, ensure_ascii=False)} </answer>"


def text_call(text: str) -> tuple[str, dict[str, Any], str] | None:
    """(tool name, arguments, reasoning) when ``text`` is exactly a :func:`call_text` rendering, else None."""
    match = _RENDERED_RE.fullmatch(text)
    if match is None:
        return None
    try:
        value = json.loads(match.group(2))
    except ValueError:
        return None
    think = match.group(1)
    if isinstance(value, dict) and value.get("action") == "zoom" and set(value) == {"action", "first", "last"}:
        return ZOOM_TOOL, {"first": value["first"], "last": value["last"]}, think
    if isinstance(value, dict) and "verdict" in value and set(value) <= {"verdict", "reason"}:
        return VERIFY_TOOL, dict(value), think
    if isinstance(value, list) and all(isinstance(v, dict) and "frame_idx" in v for v in value):
        return SELECT_TOOL, {"objects": value}, think
    return None


def with_tool_calls(wire: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Chat-completions messages with each rendered call in the history sent back as a call and its result.

    Each assistant message that is a :func:`call_text` rendering becomes an assistant
    message carrying ``tool_calls`` (its reasoning as content), followed by the ``tool``
    message the protocol requires before the next user message; the next user message
    (the new frames, the mask to verify) is the call's real result.
    """
    out: list[dict[str, Any]] = []
    for number, message in enumerate(wire):
        content = message.get("content")
        call = text_call(content) if message.get("role") == "assistant" and isinstance(content, str) else None
        if call is None:
            out.append(message)
            continue
        name, arguments, think = call
        call_id = f"call_{number}"
        out.append(
            {
                "role": "assistant",
                "content": think or None,
                "tool_calls": [
                    {"id": call_id, "type": "function", "function": {"name": name, "arguments": json.dumps(arguments)}}
                ],
            }
        )
        out.append({"role": "tool", "tool_call_id": call_id, "content": "done; see the next message"})
    return out


def first_call(message: Any) -> tuple[str, str | dict[str, Any]] | None:
    """(name, arguments) of the first tool call of an SDK or dict chat message, or None."""
    calls = message.get("tool_calls") if isinstance(message, dict) else getattr(message, "tool_calls", None)
    if not calls:
        return None
    call = calls[0]
    function = call.get("function") if isinstance(call, dict) else getattr(call, "function", None)
    if function is None:
        return None
    name = function.get("name") if isinstance(function, dict) else getattr(function, "name", None)
    arguments = function.get("arguments") if isinstance(function, dict) else getattr(function, "arguments", None)
    return (str(name), arguments or {}) if name else None


def _arguments(arguments: Mapping[str, Any] | str) -> dict[str, Any]:
    if isinstance(arguments, str):
        try:
            decoded = json.loads(arguments or "{}")
        except ValueError:
            return {"raw": arguments}
        return decoded if isinstance(decoded, dict) else {"value": decoded}
    return dict(arguments)
