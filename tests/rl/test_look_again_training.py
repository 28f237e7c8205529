"""Training on look_again rollouts of any length with the tiny Qwen2.5-VL: exact rebuilds, one GRPO step."""

from __future__ import annotations

import asyncio
import shutil
from pathlib import Path

import pytest
import torch

from revseg.errors import TrainingError
from revseg.graphs import ChainContext, build_graph, trajectory_from_state
from revseg.policies.hf import HFPolicy
from revseg.rl.groundtruth import BoxGroundTruth
from revseg.rl.grpo import GRPOConfig
from revseg.rl.rewards import score
from revseg.rl.sequences import answer_logps, rollout_sequences
from revseg.rl.train import train
from revseg.settings import ChainSettings, SamplingParams
from revseg.testing.fakes import BoxTracker
from revseg.trajectory import Trajectory
from revseg.trajectory_store import TrajectoryStore
from tests.rl.forced import ForcedPolicy

ZOOM = "<think>small</think> <answer> {'action': 'zoom', 'first': 0, 'last': 2} </answer>"
SELECT = "<think>there</think> <answer> [{'frame_idx': 1, 'object description': 'the rider'}] </answer>"
OTHER = "<think>then</think> <answer> [{'frame_idx': 2, 'object description': 'the bike'}] </answer>"
BOX = '[{"bbox_2d": [10, 20, 110, 200], "label": "rider"}]'
REJECT = "<think>no</think> <answer> {'verdict': 'reject', 'reason': 'wrong one'} </answer>"
ACCEPT = "<think>yes</think> <answer> {'verdict': 'accept'} </answer>"


@pytest.fixture(scope="module")
def policy(tiny_qwen25_dir: Path) -> HFPolicy:
    """On the CPU in float32: these tests compare log-probs to 1e-4."""
    return HFPolicy.from_spec(str(tiny_qwen25_dir), device="cpu")


def look_again_run(policy: HFPolicy, clip: Path, out: Path, answers: list[str]) -> Trajectory:
    settings = ChainSettings(
        program="look_again", num_frames=4, frame_size=(112, 112), keyframe_size=(224, 224), verify_frames=2
    )
    context = ChainContext(
        policy=ForcedPolicy(policy, answers),
        tracker=BoxTracker(),
        settings=settings,
        sampling=SamplingParams(temperature=1.0),
    )
    inputs = {"video_path": str(clip), "query": "the rider", "out_dir": str(out)}
    state = asyncio.run(build_graph().ainvoke(inputs, context=context))  # type: ignore[arg-type]
    return trajectory_from_state(dict(state), context)


def test_every_turn_of_a_seven_turn_rollout_is_rebuilt_with_its_recorded_logprobs(
    policy: HFPolicy, small_clip: Path, tmp_path: Path
) -> None:
    answers = [ZOOM, SELECT, BOX, REJECT, OTHER, BOX, ACCEPT]
    traj = look_again_run(policy, small_clip, tmp_path, answers)
    assert [t.name for t in traj.turns] == ["interpret", "zoom", "ground", "verify", "reselect", "ground", "verify"]
    assert [a.verdict for a in traj.attempts] == ["reject", "accept"]
    (seq,) = rollout_sequences(traj, policy.build_inputs, policy.processor.tokenizer)
    recorded = [i for t in traj.turns for i in t.token_ids or []]
    assert seq.inputs["input_ids"][0, seq.positions].tolist() == recorded  # every generated token, once
    assert [seq.turns.count(k) for k in ("zoom", "verify", "reselect")] == [
        len(traj.turns[1].token_ids or []),
        len(traj.turns[3].token_ids or []) + len(traj.turns[6].token_ids or []),
        len(traj.turns[4].token_ids or []),
    ]
    with torch.no_grad():
        logps = answer_logps(policy.model, seq, temperature=1.0)
    assert seq.behaviour_logps is not None
    assert torch.allclose(logps, seq.behaviour_logps, atol=1e-4), (logps - seq.behaviour_logps).abs().max()


def test_a_record_whose_verify_masks_are_gone_cannot_be_rebuilt(
    policy: HFPolicy, small_clip: Path, tmp_path: Path
) -> None:
    traj = look_again_run(policy, small_clip, tmp_path, [SELECT, BOX, ACCEPT])
    shutil.rmtree(tmp_path / "masks")
    with pytest.raises(TrainingError, match="cannot rebuild the verify turn"):
        rollout_sequences(traj, policy.build_inputs, policy.processor.tokenizer)


def test_grpo_trains_on_a_group_of_rollouts_of_different_lengths(
    policy: HFPolicy, tiny_qwen25_dir: Path, small_clip: Path, tmp_path: Path
) -> None:
    scripts = [
        [SELECT, BOX, ACCEPT],
        [ZOOM, SELECT, BOX, REJECT, OTHER, BOX, ACCEPT],
        [SELECT, BOX, REJECT, "no other frame"],
        ["I cannot tell."],
    ]
    truth = BoxGroundTruth({8: [(20.0, 20.0, 120.0, 150.0)], 15: [(40.0, 40.0, 200.0, 150.0)]})
    group = []
    for number, answers in enumerate(scripts):
        record = score(look_again_run(policy, small_clip, tmp_path / f"run{number}", answers), truth)
        group.append(record.model_copy(update={"group_id": "g", "group_size": len(scripts), "query_id": "q"}))
    assert [len(t.turns) for t in group] == [3, 7, 4, 1]
    assert len({t.rewards["total"] for t in group if t.rewards}) > 1
    store = TrajectoryStore(tmp_path / "store")
    store.append(group)
    logged: list[dict[str, float]] = []
    config = GRPOConfig(learning_rate=1e-3, prompts_per_step=1, max_steps=1)
    result = train(store.root, f"hf:{tiny_qwen25_dir}", tmp_path / "ckpt", config, log=logged.append)
    (step,) = result.history
    assert step["tokens"] == sum(len(turn.token_ids or []) for t in group for turn in t.turns)
    assert step["ratio"] == pytest.approx(1.0, abs=1e-4)  # every turn rebuilt as it was sampled
    assert step["kl"] == pytest.approx(0.0, abs=1e-6)
    assert "reward/verify" in step and step["rollouts"] == 4.0
