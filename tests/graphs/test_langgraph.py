"""The graph as a LangGraph citizen: a subgraph of a user's graph, streamed, checkpointed, reviewed, served."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any, TypedDict

import pytest
from langgraph.checkpoint.memory import InMemorySaver
from langgraph.graph import END, START, StateGraph
from langgraph.types import Command

from revseg.errors import GraphError
from revseg.graphs import ChainContext, build_graph
from revseg.testing.chat_server import chat_server, paper_responder
from revseg.testing.fakes import BoxTracker, ScriptedPolicy

TURN1 = "<think>the rider in front</think><answer>[{'frame_idx': 3, 'object description': 'rider'}]</answer>"
TURN2 = '[{"bbox_2d": [84, 168, 420, 672], "label": "rider"}]'


class VideoQA(TypedDict, total=False):
    """A user's state: the chain's input keys, the chain's outputs it wants, and its own."""

    video_path: str
    query: str
    out_dir: str
    status: str
    targets: list[dict[str, Any]]
    answer: str


def test_the_compiled_graph_runs_as_a_node_of_a_parent_graph(small_clip: Path, tmp_path: Path) -> None:
    def answer(state: VideoQA) -> dict[str, Any]:
        target = state["targets"][0]
        return {"answer": f"{target['description']} is clearest in frame {target['frame_index']}"}

    parent = StateGraph(VideoQA, context_schema=ChainContext)
    parent.add_node("segment_object", build_graph())
    parent.add_node("answer", answer)
    parent.add_edge(START, "segment_object")
    parent.add_edge("segment_object", "answer")
    parent.add_edge("answer", END)
    context = ChainContext(policy=ScriptedPolicy([TURN1, TURN2]), tracker=BoxTracker())
    inputs = {"video_path": str(small_clip), "query": "who leads?", "out_dir": str(tmp_path)}
    state = asyncio.run(parent.compile().ainvoke(inputs, context=context))  # type: ignore[arg-type]
    assert state["status"] == "ok" and state["answer"] == "rider is clearest in frame 5"
    assert (tmp_path / "masks" / "masks.json").exists()


def test_updates_stream_shows_each_reasoning_step_as_it_finishes(small_clip: Path, tmp_path: Path) -> None:
    context = ChainContext(policy=ScriptedPolicy([TURN1, TURN2]), tracker=BoxTracker())
    inputs = {"video_path": str(small_clip), "query": "q", "out_dir": str(tmp_path)}

    async def steps() -> list[tuple[str, list[str]]]:
        graph = build_graph()
        return [
            (node, sorted(update))
            async for chunk in graph.astream(inputs, context=context, stream_mode="updates")  # type: ignore[arg-type]
            for node, update in chunk.items()
        ]

    seen = asyncio.run(steps())
    assert [node for node, _ in seen] == ["sample", "interpret", "select_frames", "ground", "segment"]
    assert seen[1] == ("interpret", ["timings", "turns"])


def test_sync_invoke_says_to_use_the_async_api(small_clip: Path, tmp_path: Path) -> None:
    context = ChainContext(policy=ScriptedPolicy([]))
    with pytest.raises(TypeError, match="ainvoke"):
        build_graph().invoke({"video_path": str(small_clip), "query": "q", "out_dir": str(tmp_path)}, context=context)


def test_a_missing_context_is_an_error_that_says_what_to_pass(small_clip: Path, tmp_path: Path) -> None:
    with pytest.raises(GraphError, match=r"context=ChainContext\(policy="):
        asyncio.run(build_graph().ainvoke({"video_path": str(small_clip), "query": "q", "out_dir": str(tmp_path)}))


def test_review_on_a_bare_graph_pauses_reasks_on_a_bad_decision_and_resumes(small_clip: Path, tmp_path: Path) -> None:
    graph = build_graph(InMemorySaver(), review=True)
    context = ChainContext(policy=ScriptedPolicy([TURN1, TURN2]), tracker=BoxTracker())
    config: Any = {"configurable": {"thread_id": "t"}}
    inputs = {"video_path": str(small_clip), "query": "q", "out_dir": str(tmp_path)}

    async def run(payload: Any) -> dict[str, Any]:
        return await graph.ainvoke(payload, config, context=context)  # type: ignore[no-any-return]

    paused = asyncio.run(run(inputs))
    (question,) = paused["__interrupt__"]
    assert question.value["stage"] == "keyframe" and question.value["targets"][0]["frame_index"] == 5
    again = asyncio.run(run(Command(resume={"frame_index": 500})))
    assert "frame_index 500 is not a frame" in again["__interrupt__"][0].value["error"]
    at_box = asyncio.run(run(Command(resume={"frame_index": 7})))
    assert at_box["__interrupt__"][0].value["stage"] == "box" and at_box["targets"][0]["frame_index"] == 7
    done = asyncio.run(run(Command(resume=True)))
    assert done["status"] == "ok" and "__interrupt__" not in done
    assert [r["stage"] for r in done["reviews"]] == ["keyframe", "box"]


def test_the_served_graph_builds_its_backends_from_a_json_context(small_clip: Path, tmp_path: Path) -> None:
    from revseg.graphs.serve import graph

    inputs = {"video_path": str(small_clip), "query": "the rider", "out_dir": str(tmp_path)}
    with chat_server(paper_responder(keyframe=3, box=(84, 168, 420, 672))) as url:
        context = {"policy": "openai:served", "tracker": "none", "base_url": url, "num_frames": 8}
        state = asyncio.run(graph.ainvoke(inputs, context=context))  # type: ignore[arg-type]
    assert state["status"] == "ok" and len(state["sampled_indices"]) == 8
    assert state["targets"][0]["box"] == pytest.approx([32.0, 36.0, 160.0, 144.0])


def test_langgraph_json_points_at_the_served_graphs() -> None:
    import importlib
    import json

    config = json.loads((Path(__file__).resolve().parents[2] / "langgraph.json").read_text())
    for target in config["graphs"].values():
        module, _, name = target.removeprefix("./").removesuffix(".py").partition(".py:")
        assert getattr(importlib.import_module(module.replace("/", ".")), name).name in ("revseg", "revseg_review")
