"""Rebuilding recorded rollouts through the real processor, with the tiny Qwen2.5-VL."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from revseg.errors import TrainingError
from revseg.policies.hf import HFPolicy
from revseg.rl.grpo import grpo_loss
from revseg.rl.sequences import answer_logps, rollout_sequences
from revseg.settings import SamplingParams
from tests.rl.forced import ForcedPolicy, forced_trajectory

T1 = "<think>the rider</think> <answer>[{'frame_idx': 2, 'object description': 'the person riding the bike'}]</answer>"
T2 = '[{"bbox_2d": [10, 20, 110, 200], "label": "rider"}]'


@pytest.fixture(scope="module")
def policy(tiny_qwen25_dir: Path) -> HFPolicy:
    return HFPolicy.from_spec(str(tiny_qwen25_dir))


def test_spliced_two_turn_sequence_reproduces_the_behaviour_logprobs(policy: HFPolicy, small_clip: Path) -> None:
    forced = ForcedPolicy(policy, [T1, T2])
    traj = forced_trajectory(forced, str(small_clip))
    assert [t.name for t in traj.turns] == ["interpret", "ground"] and traj.turns[1].parse_ok
    (seq,) = rollout_sequences(traj, policy.build_inputs, policy.processor.tokenizer)
    t1, t2 = traj.turns[0].token_ids, traj.turns[1].token_ids
    assert t1 is not None and t2 is not None
    assert seq.num_tokens == len(t1) + len(t2) and seq.turns.count("interpret") == len(t1)
    ids = seq.inputs["input_ids"][0]
    assert ids[seq.positions].tolist() == t1 + t2  # every generated token, once, as sampled
    assert ids[-len(t2) :].tolist() == t2  # turn 2's answer ends the sequence
    turn2_prompt = forced.prompts[1]  # what the policy saw for turn 2 (history re-tokenised there)
    assert torch.equal(ids[: len(turn2_prompt)], turn2_prompt)
    with torch.no_grad():
        logps = answer_logps(policy.model, seq)
    assert seq.behaviour_logps is not None
    assert torch.allclose(logps, seq.behaviour_logps, atol=1e-4)


def test_history_is_the_generated_ids_not_a_retokenisation(policy: HFPolicy, small_clip: Path) -> None:
    forced = ForcedPolicy(policy, [T1, T2], split_first=True)
    traj = forced_trajectory(forced, str(small_clip))
    t1 = traj.turns[0].token_ids
    assert t1 is not None
    retokenised = policy.processor.tokenizer.encode(traj.turns[0].response, add_special_tokens=False)
    assert len(retokenised) + 1 < len(t1)  # the sampler's ids really differ from the text's tokens
    (seq,) = rollout_sequences(traj, policy.build_inputs, policy.processor.tokenizer)
    ids = seq.inputs["input_ids"][0]
    first = int(seq.positions[0])
    assert ids[first : first + len(t1)].tolist() == t1
    with torch.no_grad():  # turn 1's log-probs depend only on its prompt, so they still match exactly
        logps = answer_logps(policy.model, seq)[: len(t1)]
    assert seq.behaviour_logps is not None
    assert torch.allclose(logps, seq.behaviour_logps[: len(t1)], atol=1e-4)


def test_sampled_turn1_logprobs_from_generate_are_reproduced(policy: HFPolicy, small_clip: Path) -> None:
    sampling = SamplingParams(temperature=0.7, max_new_tokens=24, seed=3)

    class Sampled(ForcedPolicy):
        def generate(self, messages, sampling):  # type: ignore[no-untyped-def]
            self.calls += 1
            return self.inner.generate(messages, sampling)

    traj = forced_trajectory(Sampled(policy, []), str(small_clip), sampling=sampling)
    (seq,) = rollout_sequences(traj, policy.build_inputs, policy.processor.tokenizer)
    assert seq.num_tokens == len(traj.turns[0].token_ids or [])
    with torch.no_grad():
        logps = answer_logps(policy.model, seq, temperature=0.7)
    assert seq.behaviour_logps is not None
    assert torch.allclose(logps, seq.behaviour_logps, atol=1e-4)


def test_loss_gradient_reaches_only_answer_positions(policy: HFPolicy, small_clip: Path) -> None:
    traj = forced_trajectory(ForcedPolicy(policy, [T1, T2]), str(small_clip))
    (seq,) = rollout_sequences(traj, policy.build_inputs, policy.processor.tokenizer)
    kept: list[torch.Tensor] = []

    def keep(module: torch.nn.Module, args: object, out: torch.Tensor) -> None:
        out.retain_grad()
        kept.append(out)

    handle = policy.model.lm_head.register_forward_hook(keep)
    try:
        logps = answer_logps(policy.model, seq)
    finally:
        handle.remove()
    assert seq.behaviour_logps is not None
    weights = torch.full_like(logps, 1.0 / seq.num_tokens)[None]
    loss, _ = grpo_loss(
        logps[None], seq.behaviour_logps[None] - 0.1, torch.tensor([1.0]), weights, ref_logps=logps.detach()[None]
    )
    loss.backward()
    policy.model.zero_grad()
    (logits,) = kept
    assert logits.grad is not None
    length = seq.inputs["input_ids"].shape[1]
    start = length - logits.shape[1]  # logits are kept from the first answer position on
    predicts_answer = torch.zeros(logits.shape[1], dtype=torch.bool)
    predicts_answer[seq.positions - 1 - start] = True
    row_grad = logits.grad[0].abs().sum(-1)
    assert (row_grad[~predicts_answer] == 0).all()  # turn-2 prompt and keyframe image tokens: exactly zero
    assert (~predicts_answer).sum() > 50  # ... and there are many of them in the kept range
    assert (row_grad[predicts_answer] > 0).all()
    assert start > 100  # turn-1 prompt and frames produce no logits at all


def test_records_without_token_ids_train_only_by_sft(policy: HFPolicy, small_clip: Path) -> None:
    traj = forced_trajectory(ForcedPolicy(policy, [T1, T2]), str(small_clip))
    for turn in traj.turns:
        turn.token_ids = turn.logprobs = None
    with pytest.raises(TrainingError, match="no recorded token ids"):
        rollout_sequences(traj, policy.build_inputs, policy.processor.tokenizer)
    (seq,) = rollout_sequences(traj, policy.build_inputs, policy.processor.tokenizer, need_logprobs=False)
    end = policy.processor.tokenizer.convert_tokens_to_ids("<|im_end|>")
    tokens = seq.inputs["input_ids"][0, seq.positions].tolist()
    assert seq.behaviour_logps is None and tokens[-1] == end and tokens.count(end) == 2
