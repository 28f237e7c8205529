"""``build_graph()``: the ReVSeg chain as a compiled LangGraph state machine."""

from __future__ import annotations

from typing import Any

from langgraph.graph import END, START, StateGraph
from langgraph.graph.state import CompiledStateGraph

from revseg.graphs.edges import (
    after_ask,
    after_decide,
    after_ground,
    after_interpret,
    after_segment,
    after_select_frames,
    after_verify,
)
from revseg.graphs.nodes import (
    decide,
    ground,
    interpret,
    reselect,
    review_box,
    review_keyframe,
    sample,
    segment,
    select_frames,
    verify,
    zoom,
)
from revseg.graphs.state import ChainContext, ChainInput, ChainState


def build_graph(
    checkpointer: Any = None, *, review: bool = False, context_schema: type[Any] = ChainContext, name: str = "revseg"
) -> CompiledStateGraph[ChainState, Any, ChainInput, ChainState]:
    """Compile sample -> interpret -> select_frames -> ground -> segment with failure edges.

    The same graph runs the look_again program when the context's ``ChainSettings.program``
    says so: interpret -> decide -> (zoom -> decide)* -> ground -> segment -> verify ->
    (reselect -> decide -> ground -> segment -> verify)*, within ``max_turns`` model turns.

    Run it with ``ainvoke``/``astream`` (the nodes are async, so the policy calls of many
    runs overlap in one process), passing ``{"video_path", "query", "out_dir"}`` and
    ``context=ChainContext(...)``. ``stream_mode="updates"`` yields each reasoning step as it
    finishes. The compiled graph works as a node of a larger graph whose state has those keys.

    ``checkpointer`` (any LangGraph saver, e.g. ``AsyncSqliteSaver``) makes a run resumable
    by ``config={"configurable": {"thread_id": ...}}``. ``review=True`` adds the human
    review points ``review_keyframe`` (before turn 2) and ``review_box`` (before tracking),
    which pause the run with ``interrupt()`` until it is resumed with
    ``Command(resume={...})``; they need a checkpointer (see ``revseg.graphs.nodes.review``).
    ``context_schema`` is for contexts that build a ChainContext themselves (``serve.py``).
    """
    builder = StateGraph(ChainState, context_schema=context_schema, input_schema=ChainInput)
    builder.add_node("sample", sample)
    builder.add_node("interpret", interpret)
    builder.add_node("select_frames", select_frames)
    builder.add_node("ground", ground)
    builder.add_node("segment", segment)
    builder.add_node("decide", decide)
    builder.add_node("zoom", zoom)
    builder.add_node("verify", verify)
    builder.add_node("reselect", reselect)
    builder.add_edge(START, "sample")
    builder.add_edge("sample", "interpret")
    builder.add_conditional_edges("interpret", after_interpret, ["select_frames", "decide", END])
    to_ground, to_segment = "ground", "segment"
    if review:
        builder.add_node("review_keyframe", review_keyframe)
        builder.add_node("review_box", review_box)
        builder.add_edge("review_keyframe", "ground")
        builder.add_edge("review_box", "segment")
        to_ground, to_segment = "review_keyframe", "review_box"
    builder.add_conditional_edges(
        "select_frames", after_select_frames, {"ground": to_ground, "segment": "segment", END: END}
    )
    builder.add_conditional_edges("ground", after_ground, {"segment": to_segment, END: END})
    builder.add_conditional_edges("segment", after_segment, ["verify", END])
    # look_again: decide -> zoom -> decide ... -> ground -> segment -> verify -> reselect -> decide ...
    builder.add_conditional_edges(
        "decide", after_decide, {"zoom": "zoom", "ground": to_ground, "segment": "segment", END: END}
    )
    builder.add_conditional_edges("zoom", after_ask, ["decide", END])
    builder.add_conditional_edges("verify", after_verify, ["reselect", END])
    builder.add_conditional_edges("reselect", after_ask, ["decide", END])
    return builder.compile(checkpointer=checkpointer, name=name)
