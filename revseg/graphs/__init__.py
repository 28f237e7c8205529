"""The ReVSeg chain as a LangGraph state machine: state, one module per node, edges, build_graph()."""

from revseg.graphs.build import build_graph
from revseg.graphs.record import trajectory_from_state
from revseg.graphs.state import ChainContext, ChainInput, ChainState

__all__ = ["ChainContext", "ChainInput", "ChainState", "build_graph", "trajectory_from_state"]
