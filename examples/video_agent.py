"""A small video agent: it answers a question about a clip by calling the ReVSeg tool.

A tool-calling chat model gets the question and one tool, ``segment_video_object``
(``ReVSegAgent.as_tool()``). When it needs to know where something is, or which object
the question means, it calls the tool; ReVSeg picks a keyframe, boxes the object and
tracks it (masks go to disk), and the model answers from the tool's compact reply:
status, keyframe, box, mask file and a one-line rationale.

Any OpenAI-compatible endpoint works for both models, for example one vLLM server::

    vllm serve Qwen/Qwen2.5-VL-7B-Instruct --enable-auto-tool-choice --tool-call-parser hermes
    pip install 'revseg[agents]'
    python examples/video_agent.py clip.mp4 "Which cyclist is about to be overtaken, and where is it?" \\
        --base-url http://localhost:8000/v1 --model Qwen/Qwen2.5-VL-7B-Instruct --tracker none

``--model`` is the tool-calling agent, ``--policy`` the VLM behind ReVSeg (default: the same
model, ``openai:MODEL`` at the same URL), ``--tracker`` the SAM2 spec or ``none`` (keyframe and
box only). The key comes from ``OPENAI_API_KEY`` (any value, e.g. ``EMPTY``, for a local
server). The loop below is plain langchain-core, so ``ask`` works with any chat model that
supports ``bind_tools`` (``ChatAnthropic``, a local model, ...).
"""

from __future__ import annotations

import argparse
import json
from typing import Any

SYSTEM = (
    "You answer questions about a video. To find or locate an object in it, call segment_video_object with the "
    "video path and a description of the object; then answer in one or two sentences using its keyframe and box."
)


def ask(model: Any, tool: Any, video: str, question: str, max_steps: int = 4) -> str:
    """Run the tool-calling loop: the model may call ``tool`` until it answers in text."""
    from langchain_core.messages import HumanMessage, SystemMessage, ToolMessage

    bound = model.bind_tools([tool])
    messages: list[Any] = [SystemMessage(SYSTEM), HumanMessage(f"Video: {video}\nQuestion: {question}")]
    for _ in range(max_steps):
        reply = bound.invoke(messages)
        messages.append(reply)
        if not reply.tool_calls:
            return str(reply.text)
        for call in reply.tool_calls:
            result = tool.invoke(call) if call["name"] == tool.name else None
            if not isinstance(result, ToolMessage):
                result = ToolMessage(f"unknown tool {call['name']}", tool_call_id=call["id"], status="error")
            messages.append(result)
    return "(no answer within the step limit)"


def main(argv: list[str] | None = None) -> None:
    """Parse the command line, build the agent and its tool, and print the answer."""
    from langchain_openai import ChatOpenAI

    from revseg import ReVSegAgent

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("video", help="video file or folder of frames")
    parser.add_argument("question", help="a question about the video")
    parser.add_argument("--base-url", default=None, help="OpenAI-compatible endpoint (default: OPENAI_BASE_URL)")
    parser.add_argument("--model", required=True, help="the tool-calling chat model")
    parser.add_argument("--policy", default=None, help="ReVSeg's VLM spec (default: openai:MODEL)")
    parser.add_argument("--tracker", default="none", help="sam2:... spec, or none for keyframe and box only")
    parser.add_argument("--out", default="video-agent-out", help="where the tool writes masks and trajectories")
    args = parser.parse_args(argv)

    segmenter = ReVSegAgent(
        args.policy or f"openai:{args.model}",
        args.tracker,
        policy_options={"base_url": args.base_url} if args.base_url else None,
        overlay=False,
    )
    model = ChatOpenAI(model=args.model, base_url=args.base_url, temperature=0)
    tool = segmenter.as_tool(out_dir=args.out)
    print(ask(model, tool, args.video, args.question))
    print(json.dumps({"outputs": args.out}))


if __name__ == "__main__":
    main()
