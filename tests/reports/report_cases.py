"""Runs to build reports from: every way a run can end, a hostile model, and a real run with tiny models.

Each case goes through the real agent (graph, mask writer, overlay, report) with a
scripted policy, so the trajectories are exactly what ``revseg segment`` records; only
the model's words are chosen. Shared by the report tests and the browser tests.
"""

from __future__ import annotations

import json
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

from revseg.agents import ReVSegAgent, SegmentationResult
from revseg.errors import PolicyError, TrackerError
from revseg.testing.chat_server import chat_server, paper_responder
from revseg.testing.fakes import BoxTracker, ScriptedPolicy
from revseg.tools.frames import FrameReader
from revseg.tools.trackers.base import FrameMasks
from revseg.trajectory import BoxXYXY, Status

QUERY = "the rider who leads the group"
TURN1 = (
    "<think>Several cyclists ride along the street. The one in front is the leader; in sampled frame 3"
    " she is large, centred and not occluded.</think>"
    "<answer>[{'frame_idx': 3, 'object description': 'the cyclist at the front in a dark jacket'}]</answer>"
)
TURN2 = '[{"bbox_2d": [84, 168, 420, 672], "label": "cyclist"}]'

PWN_SCRIPT = "<script>window.__pwned=1</script>"
PWN_IMG = '<img src=x onerror="window.__pwned=2">'
HOSTILE_TURN1 = (
    f"<think>I will take over the page {PWN_SCRIPT} {PWN_IMG} and then pick frame 2.</think>"
    f"<answer>[{{'frame_idx': 2, 'object description': 'the rider {PWN_SCRIPT} in red {PWN_IMG}'}}]</answer>"
)
HOSTILE_TURN2 = json.dumps([{"bbox_2d": [100, 150, 500, 700], "label": f"rider {PWN_IMG}{PWN_SCRIPT}"}])
HOSTILE_QUERY = f"the leader {PWN_SCRIPT}"


@dataclass
class FailingTracker:
    """A tracker that fails on every prompt: the way a run ends in ``tracker_error``."""

    @property
    def spec(self) -> str:
        """A fixed identity."""
        return "failing:test"

    def track(
        self, video: FrameReader, keyframe_index: int, boxes: Sequence[BoxXYXY], *, progress: bool = False
    ) -> Iterator[FrameMasks]:
        """Raise at once, as a backend that runs out of memory would."""
        raise TrackerError(f"{video.ref.path}: out of memory while tracking from frame {keyframe_index}")


def scripted_cases(clip: Path, root: Path) -> dict[str, SegmentationResult]:
    """One run per way a run can end, plus a hostile model answer, each in ``root/<name>``."""
    plans: dict[str, tuple[list[str | Exception], object, str]] = {
        "ok": ([TURN1, TURN2], BoxTracker(), QUERY),
        "no_target": (["<think>Nobody here rides a horse.</think><answer>[]</answer>"], BoxTracker(), "the horse"),
        "failed_select_frames": (["I am not sure <b>what</b> you mean.", TURN2], BoxTracker(), QUERY),
        "failed_ground": ([TURN1, "The cyclist is somewhere on the left."], BoxTracker(), QUERY),
        "policy_error": ([PolicyError("HTTP 503 from the policy server after 3 retries")], BoxTracker(), QUERY),
        "tracker_error": ([TURN1, TURN2], FailingTracker(), QUERY),
        "hostile": ([HOSTILE_TURN1, HOSTILE_TURN2], BoxTracker(), HOSTILE_QUERY),
    }
    results = {}
    for name, (answers, tracker, query) in plans.items():
        agent = ReVSegAgent(ScriptedPolicy(answers), tracker)  # type: ignore[arg-type]
        results[name] = agent.run(clip, query, root / name)
    assert {name: r.status for name, r in results.items()} == {
        "ok": Status.OK,
        "no_target": Status.NO_TARGET,
        "failed_select_frames": Status.FAILED_SELECT_FRAMES,
        "failed_ground": Status.FAILED_GROUND,
        "policy_error": Status.POLICY_ERROR,
        "tracker_error": Status.TRACKER_ERROR,
        "hostile": Status.OK,
    }
    return results


def real_run(clip: Path, sam2_spec: str, out: Path) -> SegmentationResult:
    """A real run: the OpenAI-compatible policy against the local chat server, and a tiny random SAM2."""
    with chat_server(paper_responder(keyframe=5, box=(84, 168, 420, 672))) as url:
        agent = ReVSegAgent(
            "openai:qwen2.5-vl", sam2_spec, policy_options={"base_url": url}, tracker_options={"device": "cpu"}
        )
        return agent.run(clip, "the rider in front", out)
