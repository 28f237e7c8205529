"""GRPO learns: on a task the tiny model can learn in a few steps, the mean reward clearly rises.

The task: name the sampled frame where the object is largest (small_clip's ground truth
is largest on sampled frame 2), scored by the soft temporal reward alone (paper Eq. 7).
A random tiny model cannot write the answer format, so each rollout is one of four strict
turn-1 answers that differ only in ``frame_idx``, drawn from the model's own distribution
over them (the softmax of their sequence log-probs) and recorded with the model's exact
token log-probs: on-policy data, as ``HFPolicy`` would record it. The check is on the
reward: the expected reward under the model, computed exactly from those log-probs
before and after training, must rise clearly. It fails if the advantage sign is flipped
(the reward falls) or the loss is detached (nothing moves).
"""

from __future__ import annotations

import math
import random
from pathlib import Path

import pytest

from revseg.policies.hf import HFPolicy
from revseg.rl.groundtruth import BoxGroundTruth
from revseg.rl.grpo import GRPOConfig
from revseg.rl.rewards import RewardConfig, compute_rewards
from revseg.rl.train import train
from revseg.trajectory import Trajectory
from tests.rl.conftest import CLIP_TRUTH
from tests.rl.forced import ForcedPolicy, forced_trajectory

pytestmark = pytest.mark.learning

ANSWER = "<think>largest</think> <answer>[{{'frame_idx': {k}, 'object description': 'the rider'}}]</answer>"
BOX = '[{"bbox_2d": [28, 52, 140, 196]}]'
ROUNDS, GROUPS, GROUP_SIZE = 4, 2, 8


def candidates(checkpoint: Path, clip: Path) -> list[tuple[Trajectory, float]]:
    """Each candidate answer's turn-1 record under ``checkpoint`` and its soft temporal reward."""
    inner = HFPolicy.from_spec(str(checkpoint))
    truth = BoxGroundTruth(CLIP_TRUTH)
    out = []
    for k in range(4):
        record = forced_trajectory(ForcedPolicy(inner, [ANSWER.format(k=k), BOX]), str(clip))
        record = record.model_copy(update={"turns": record.turns[:1], "targets": record.targets[:1]})
        out.append((record, compute_rewards(record, truth, RewardConfig(temporal="soft")).temporal))
    return out


def probabilities(cands: list[tuple[Trajectory, float]]) -> list[float]:
    """The model's distribution over the candidates: softmax of their answers' sequence log-probs."""
    scores = [sum(t.turns[0].logprobs or []) for t, _ in cands]
    top = max(scores)
    weights = [math.exp(s - top) for s in scores]
    return [w / sum(weights) for w in weights]


def expected_reward(cands: list[tuple[Trajectory, float]]) -> float:
    """The exact mean reward of a rollout drawn from the model (no sampling noise)."""
    return sum(p * r for p, (_, r) in zip(probabilities(cands), cands, strict=True))


def sample_groups(cands: list[tuple[Trajectory, float]], rng: random.Random, round_: int) -> list[Trajectory]:
    """GROUPS groups of GROUP_SIZE rollouts drawn from the model, scored (total = soft temporal)."""
    probs = probabilities(cands)
    out = []
    for g in range(GROUPS):
        for _ in range(GROUP_SIZE):
            record, reward = rng.choices(cands, weights=probs)[0]
            out.append(
                Trajectory.model_validate(
                    {
                        **record.model_dump(exclude={"run_id"}),
                        "group_id": f"r{round_}g{g}",
                        "group_size": GROUP_SIZE,
                        "query_id": f"r{round_}g{g}",
                        "rewards": {"total": reward, "temporal": reward},
                    }
                )
            )
    return out


def test_grpo_raises_the_reward_of_choosing_the_frame_where_the_object_is_largest(
    tiny_qwen25_dir: Path, small_clip: Path, tmp_path: Path
) -> None:
    rng = random.Random(0)
    checkpoint = tiny_qwen25_dir
    cands = candidates(checkpoint, small_clip)
    rewards = [r for _, r in cands]
    assert rewards.index(max(rewards)) == 2 and max(rewards) == 1.0  # sampled frame 2 is where it is largest
    before = expected_reward(cands)
    curve = [before]
    for round_ in range(1, ROUNDS + 1):
        config = GRPOConfig(learning_rate=3e-3, prompts_per_step=GROUPS, beta=0.0, seed=round_)
        data = sample_groups(cands, rng, round_)
        result = train(data, f"hf:{checkpoint}", tmp_path / f"round{round_}", config)
        if round_ == 1:
            assert result.history[0]["groups_with_signal"] > 0  # the untrained model's groups disagree
        checkpoint = result.checkpoint
        cands = candidates(checkpoint, small_clip)
        curve.append(expected_reward(cands))
    print("expected soft temporal reward by round:", [round(v, 3) for v in curve])
    assert curve[-1] > before + 0.3, curve
    assert probabilities(cands)[2] > 0.5, probabilities(cands)
