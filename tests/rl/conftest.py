"""Recorded, scored groups from the tiny Qwen2.5-VL, shared by the trainer and CLI tests."""

from __future__ import annotations

from pathlib import Path

import pytest

from revseg.rl.groundtruth import BoxGroundTruth
from revseg.rl.rewards import score
from revseg.trajectory import Trajectory
from revseg.trajectory_store import TrajectoryStore
from tests.rl.forced import ForcedPolicy, forced_trajectory

# Ground truth on small_clip (320x180, 24 frames; 4 sampled: 0, 8, 15, 23): largest at frame 15.
CLIP_TRUTH = {8: [(40.0, 40.0, 120.0, 100.0)], 15: [(40.0, 40.0, 200.0, 150.0)], 23: [(10.0, 10.0, 30.0, 30.0)]}

_ANSWERS = [
    ("<think>largest here</think> <answer>[{'frame_idx': 2, 'object description': 'the rider'}]</answer>", 2),
    ("<answer>[{'frame_idx': 1, 'object description': 'the bike'}]</answer>", 1),
    ("<think>first</think> <answer>[{'frame_idx': 0, 'object description': 'the person'}]</answer>", 0),
    ("I do not know.", None),
]
_BOXES = ['[{"bbox_2d": [28, 52, 140, 196]}]', "the box is 1, 2, 3", '[{"bbox_2d": [0, 0, 50, 50]}]']


def record_groups(policy: object, clip: Path, groups: int = 2, size: int = 4) -> list[list[Trajectory]]:
    """``groups`` groups of ``size`` scored rollouts with different answers (so rewards differ)."""
    truth = BoxGroundTruth(CLIP_TRUTH)
    out = []
    for g in range(groups):
        group = []
        for i in range(size):
            turn1, _ = _ANSWERS[(i + g) % len(_ANSWERS)]
            forced = ForcedPolicy(policy, [turn1, _BOXES[(i + 2 * g) % len(_BOXES)]])  # type: ignore[arg-type]
            t = score(forced_trajectory(forced, str(clip)), truth)
            group.append(t.model_copy(update={"group_id": f"g{g}", "group_size": size, "query_id": f"q{g}"}))
        out.append(group)
    return out


@pytest.fixture(scope="session")
def scored_store(tmp_path_factory: pytest.TempPathFactory, tiny_qwen25_dir: Path, small_clip: Path) -> Path:
    """A trajectory store with two on-policy groups of four rollouts for the tiny Qwen2.5-VL."""
    from revseg.policies.hf import HFPolicy

    policy = HFPolicy.from_spec(str(tiny_qwen25_dir))
    store = TrajectoryStore(tmp_path_factory.mktemp("store") / "trajectories")
    for group in record_groups(policy, small_clip):
        store.append(group)
    return store.root
