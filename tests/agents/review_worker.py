"""One step of a reviewed run in its own process, for the two-process checkpoint test.

``python -m tests.agents.review_worker start DB CLIP OUT`` runs until the first review;
``python -m tests.agents.review_worker resume DB DECISION ANSWERS`` resumes thread "job-1"
with a JSON decision, the policy holding only the JSON list of ANSWERS. Prints a JSON summary.
``hang DB CLIP OUT`` runs thread "job-1" without review, answers turn 1, prints ``GROUNDING``
and hangs in turn 2 (to be SIGKILLed); ``continue DB ANSWERS`` resumes it.
"""

from __future__ import annotations

import json
import sys
import time
from collections.abc import Sequence
from typing import Any

from revseg import ReVSegAgent
from revseg.testing.fakes import BoxTracker, ScriptedPolicy

TURN1 = "<think>the rider in front</think><answer>[{'frame_idx': 3, 'object description': 'rider'}]</answer>"
TURN2 = '[{"bbox_2d": [84, 168, 420, 672], "label": "rider"}]'


class HangingPolicy(ScriptedPolicy):
    """Answers turn 1, then says so on stdout and never answers turn 2."""

    def generate(self, messages: Sequence[Any], sampling: Any) -> Any:
        if self.calls:
            print("GROUNDING", flush=True)
            time.sleep(600)
        return super().generate(messages, sampling)


def main(argv: list[str]) -> None:
    mode, db, *rest = argv
    answers = [TURN1] if mode in ("start", "hang") else json.loads(rest[-1])
    policy = HangingPolicy(list(answers)) if mode == "hang" else ScriptedPolicy(list(answers))
    tracker = BoxTracker()
    review = mode in ("start", "resume")
    agent = ReVSegAgent(policy, tracker, checkpointer=db, review=review, overlay=False, report=False)
    if mode in ("start", "hang"):
        result = agent.run(rest[0], "who leads?", rest[1], thread_id="job-1")
    elif mode == "continue":
        result = agent.resume("job-1")
    else:
        result = agent.resume("job-1", json.loads(rest[0]))
    summary = {
        "status": result.status.value,
        "review": result.review,
        "targets": [t.model_dump(mode="json") for t in result.trajectory.targets],
        "turns": [t.name for t in result.trajectory.turns],
        "reviews": result.trajectory.reviews,
        "policy_calls": len(policy.calls),
        "tracker_calls": [[k, [list(b) for b in boxes]] for k, boxes in tracker.calls],
        "has_masks": result.has_masks,
    }
    print(json.dumps(summary))


if __name__ == "__main__":
    main(sys.argv[1:])
