"""Rebuilding recorded rollouts through the real processor, with the tiny Qwen2.5-VL."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from PIL import Image

from revseg.errors import TrainingError
from revseg.policies.hf import HFPolicy
from revseg.rl.grpo import grpo_loss
from revseg.rl.sequences import answer_logps, rollout_sequences, turn_tokens
from revseg.settings import SamplingParams
from tests.rl.forced import ForcedPolicy, forced_trajectory

T1 = "<think>the rider</think> <answer>[{'frame_idx': 2, 'object description': 'the person riding the bike'}]</answer>"
T2 = '[{"bbox_2d": [10, 20, 110, 200], "label": "rider"}]'


@pytest.fixture(scope="module")
def policy(tiny_qwen25_dir: Path) -> HFPolicy:
    """On the CPU in float32 even where a GPU is visible: these tests compare log-probs to 1e-4 and below."""
    return HFPolicy.from_spec(str(tiny_qwen25_dir), device="cpu")


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
    turn2_prompt = forced.prompts[1]  # what turn 2 was scored after: the policy's own spliced history
    assert torch.equal(ids[: len(turn2_prompt)], turn2_prompt)
    with torch.no_grad():
        logps = answer_logps(policy.model, seq)
    assert seq.behaviour_logps is not None
    assert torch.allclose(logps, seq.behaviour_logps, atol=1e-4)


class SplitThenSampled(ForcedPolicy):
    """Turn 1 forced, one character a token (not how its text re-tokenises); turn 2 sampled by ``HFPolicy``."""

    def generate(self, messages, sampling):  # type: ignore[no-untyped-def]
        if self.calls == 0:
            return super().generate(messages, sampling)
        self.calls += 1
        return self.inner.generate(messages, sampling)


def test_turn2_generated_after_a_split_history_is_scored_in_the_context_it_was_sampled_in(
    policy: HFPolicy, small_clip: Path, tmp_path: Path
) -> None:
    # Through the real graph: interpret records turn 1's ids, ground hands them to the policy as history,
    # HFPolicy.generate samples turn 2 after them; training then rebuilds the record and re-scores it.
    import asyncio

    from revseg.graphs import ChainContext, build_graph, trajectory_from_state
    from revseg.settings import ChainSettings

    settings = ChainSettings(num_frames=4, frame_size=(112, 112), keyframe_size=(224, 224))
    sampling = SamplingParams(temperature=1.0, max_new_tokens=12, seed=5)
    context = ChainContext(
        policy=SplitThenSampled(policy, [T1], split_first=True), settings=settings, sampling=sampling
    )
    inputs = {"video_path": str(small_clip), "query": "the rider", "out_dir": str(tmp_path)}
    state = asyncio.run(build_graph().ainvoke(inputs, context=context))  # type: ignore[arg-type]
    traj = trajectory_from_state(dict(state), context)
    first, second = traj.turns
    assert first.token_ids is not None and second.token_ids is not None and second.logprobs is not None
    tokenizer = policy.processor.tokenizer
    end = tokenizer.convert_tokens_to_ids("<|im_end|>")
    retokenised = [*tokenizer.encode(first.response or "", add_special_tokens=False), end]
    assert len(first.token_ids) > len(retokenised)  # the history really is not what its text re-tokenises to
    assert second.token_source == "generated" and not second.logprobs_approximate
    (seq,) = rollout_sequences(traj, policy.build_inputs, tokenizer)
    with torch.no_grad():
        logps = answer_logps(policy.model, seq, temperature=1.0)
    assert seq.behaviour_logps is not None
    n1 = len(first.token_ids)
    recorded, rescored = seq.behaviour_logps[n1:], logps[n1:]
    assert len(recorded) == len(second.token_ids)
    assert torch.allclose(rescored, recorded, atol=1e-5, rtol=0), (rescored - recorded).abs().max()


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


def test_approximate_logprobs_are_refused_for_grpo_but_serve_sft(policy: HFPolicy, small_clip: Path) -> None:
    traj = forced_trajectory(ForcedPolicy(policy, [T1, T2]), str(small_clip))
    for turn in traj.turns:  # what an openai: policy records when it re-tokenises a server's text answer
        turn.logprobs_approximate, turn.token_source = True, "retokenised"
    tokenizer = policy.processor.tokenizer
    with pytest.raises(TrainingError, match=r"approximate log-probs \(token ids retokenised\).*--algorithm rft"):
        turn_tokens(traj.turns[0], tokenizer, need_logprobs=True)
    assert turn_tokens(traj.turns[0], tokenizer, need_logprobs=False)[0] == traj.turns[0].token_ids
    (seq,) = rollout_sequences(traj, policy.build_inputs, tokenizer, need_logprobs=False)
    assert seq.num_tokens == sum(len(t.token_ids or []) for t in traj.turns)


def test_vision_placeholders_are_never_sampled_and_left_out_when_scoring(policy: HFPolicy, small_clip: Path) -> None:
    from revseg.policies.base import ImagePart, Message, TextPart
    from revseg.policies.tokens import placeholder_token_ids

    tokenizer = policy.processor.tokenizer
    never = placeholder_token_ids(tokenizer)
    assert len(never) == 5 and tokenizer.convert_tokens_to_ids("<|image_pad|>") in never
    head = policy.model.lm_head.weight
    saved = head.data.clone()
    try:
        head.data[never] *= 50  # make the placeholders the model's favourite tokens, as an untrained model may
        traj = forced_trajectory(ForcedPolicy(policy, [T1, T2]), str(small_clip))
        image = Image.new("RGB", (56, 56), (90, 30, 10))
        messages = [Message(role="user", parts=(ImagePart(image), TextPart("describe")))]
        sampled = policy.generate(messages, SamplingParams(temperature=1.0, max_new_tokens=12, seed=0))
        assert sampled.token_ids and not set(sampled.token_ids) & set(never)
        (seq,) = rollout_sequences(traj, policy.build_inputs, tokenizer)
        assert seq.suppressed == tuple(never)
        with torch.no_grad():
            logps = answer_logps(policy.model, seq)
        assert seq.behaviour_logps is not None
        assert torch.allclose(logps, seq.behaviour_logps, atol=1e-5)  # both sides without the placeholders
    finally:
        head.data.copy_(saved)
    poisoned = traj.model_copy(deep=True)
    assert poisoned.turns[1].token_ids is not None
    poisoned.turns[1].token_ids[0] = never[0]
    with pytest.raises(TrainingError, match="vision placeholder"):
        rollout_sequences(poisoned, policy.build_inputs, tokenizer)
