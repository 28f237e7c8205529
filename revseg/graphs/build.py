"""``build_graph()``: the ReVSeg chain as a compiled LangGraph state machine."""

from __future__ import annotations

from typing import Any

from langgraph.graph import END, START, StateGraph
from langgraph.graph.state import CompiledStateGraph

from revseg.graphs.edges import after_ground, after_interpret, after_select_frames
from revseg.graphs.nodes import ground, interpret, sample, segment, select_frames
from revseg.graphs.state import ChainContext, ChainInput, ChainState


def build_graph(checkpointer: Any = None) -> CompiledStateGraph[ChainState, ChainContext, ChainInput, ChainState]:
    """Compile sample -> interpret -> select_frames -> ground -> segment with failure edges.

    Invoke it with ``{"video_path", "query", "out_dir"}`` and ``context=ChainContext(...)``.
    The compiled graph can be used as a subgraph of a larger graph.
    """
    builder = StateGraph(ChainState, context_schema=ChainContext, input_schema=ChainInput)
    builder.add_node("sample", sample)
    builder.add_node("interpret", interpret)
    builder.add_node("select_frames", select_frames)
    builder.add_node("ground", ground)
    builder.add_node("segment", segment)
    builder.add_edge(START, "sample")
    builder.add_edge("sample", "interpret")
    builder.add_conditional_edges("interpret", after_interpret, ["select_frames", END])
    builder.add_conditional_edges("select_frames", after_select_frames, ["ground", "segment", END])
    builder.add_conditional_edges("ground", after_ground, ["segment", END])
    builder.add_edge("segment", END)
    return builder.compile(checkpointer=checkpointer, name="revseg")
