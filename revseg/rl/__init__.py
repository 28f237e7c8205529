"""Training side: rewards, rollout collection, curation and the offline GRPO trainer (DESIGN.md 1.4-1.5).

The flow is collect -> train -> collect: :func:`~revseg.rl.collect.collect` runs the chain
n times per (video, query) with sampling on, scores each run against ground truth
(:mod:`revseg.rl.rewards`) and appends the groups to a
:class:`~revseg.trajectory_store.TrajectoryStore`; :func:`~revseg.rl.train.train` rebuilds every
recorded turn through the real processor and takes GRPO steps (:mod:`revseg.rl.grpo`).

Names are imported on first use, so ``import revseg.rl`` loads no torch.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from revseg._lazy import lazy_getattr

if TYPE_CHECKING:
    from revseg.rl.groundtruth import BoxGroundTruth, GroundTruth, MaskGroundTruth
    from revseg.rl.grpo import GRPOConfig, group_advantages, grpo_loss
    from revseg.rl.rewards import RewardConfig, Rewards, compute_rewards, score

_EXPORTS = {
    "BoxGroundTruth": "revseg.rl.groundtruth",
    "GroundTruth": "revseg.rl.groundtruth",
    "MaskGroundTruth": "revseg.rl.groundtruth",
    "GRPOConfig": "revseg.rl.grpo",
    "group_advantages": "revseg.rl.grpo",
    "grpo_loss": "revseg.rl.grpo",
    "RewardConfig": "revseg.rl.rewards",
    "Rewards": "revseg.rl.rewards",
    "compute_rewards": "revseg.rl.rewards",
    "score": "revseg.rl.rewards",
}

__all__ = [
    "BoxGroundTruth",
    "GRPOConfig",
    "GroundTruth",
    "MaskGroundTruth",
    "RewardConfig",
    "Rewards",
    "compute_rewards",
    "group_advantages",
    "grpo_loss",
    "score",
]


__getattr__ = lazy_getattr(__name__, _EXPORTS)
