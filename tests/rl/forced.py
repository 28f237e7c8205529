"""A policy that answers with given texts but scores them under a real model, like a sampler would.

Wrapping the tiny Qwen2.5-VL, it records what ``HFPolicy.generate`` records (token ids
ending in ``<|im_end|>``, per-token log-probs under the tempered distribution without the
vision placeholders, which the hf backend never samples), computed
by one teacher-forced forward pass over the processor's own input. So a chain run with
it yields two-turn trajectories whose behaviour log-probs are exact, with answers that
parse, which a random tiny model would almost never write. Turn 2 is scored in the
context ``HFPolicy.build_inputs`` gives it: turn 1's generated ids spliced in as history.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import torch

from revseg.policies.base import Generation, Message
from revseg.policies.hf import HFPolicy
from revseg.policies.tokens import placeholder_token_ids
from revseg.settings import ChainSettings, SamplingParams
from revseg.trajectory import PolicyInfo, Status, Target, Trajectory, TurnRecord


@dataclass
class ForcedPolicy:
    """Answers turn after turn from ``answers`` (cycled), scored under ``inner``'s model."""

    inner: HFPolicy
    answers: list[str]
    calls: int = 0
    prompts: list[torch.Tensor] = field(default_factory=list)
    split_first: bool = False
    """Write turn 1 one character per token, as a sampler may: not how its text re-tokenises."""

    @property
    def info(self) -> PolicyInfo:
        """The wrapped model's identity: these records are on-policy for it."""
        return self.inner.info

    def seen_size(self, width: int, height: int) -> tuple[int, int]:
        """As the wrapped model."""
        return self.inner.seen_size(width, height)

    def generate(self, messages: Sequence[Message], sampling: SamplingParams) -> Generation:
        """The next scripted answer, with the model's tempered log-probs of its tokens."""
        text = self.answers[self.calls % len(self.answers)]
        self.calls += 1
        tokenizer = self.inner.processor.tokenizer
        if self.split_first and self.calls == 1:
            pieces = [tokenizer.encode(ch, add_special_tokens=False) for ch in text]
            body = [i for piece in pieces for i in piece]
        else:
            body = tokenizer.encode(text, add_special_tokens=False)
        ids = [*body, tokenizer.convert_tokens_to_ids("<|im_end|>")]
        inputs = self.inner.build_inputs(messages)
        self.prompts.append(inputs["input_ids"][0].clone())
        new = torch.tensor([ids])
        full = {
            **inputs,
            "input_ids": torch.cat([inputs["input_ids"], new], 1),
            "attention_mask": torch.ones(1, inputs["input_ids"].shape[1] + len(ids), dtype=torch.long),
            "mm_token_type_ids": torch.cat([inputs["mm_token_type_ids"], torch.zeros_like(new)], 1),
        }
        with torch.inference_mode():
            logits = self.inner.model(**full, use_cache=False).logits[0].float()
            logits[:, placeholder_token_ids(tokenizer)] = float("-inf")  # never sampled, as HFPolicy.generate does
        n = inputs["input_ids"].shape[1]
        temperature = sampling.temperature if sampling.temperature > 0 else 1.0
        logps = torch.log_softmax(logits[n - 1 : -1] / temperature, -1).gather(-1, new[0][:, None]).squeeze(-1)
        return Generation(
            text=tokenizer.decode(ids, skip_special_tokens=True),
            token_ids=ids,
            logprobs=logps.tolist(),
            finish_reason="stop",
        )

    async def agenerate(self, messages: Sequence[Message], sampling: SamplingParams) -> Generation:
        """As :meth:`generate` (the graph's nodes await this one)."""
        return self.generate(messages, sampling)


def forced_trajectory(
    policy: ForcedPolicy,
    video: str,
    query: str = "the person riding the bike",
    *,
    settings: ChainSettings | None = None,
    sampling: SamplingParams | None = None,
) -> Trajectory:
    """Run the two turns the way the graph does, without the graph, and return the record.

    Turn 1's answer is parsed; when it names a keyframe, turn 2 asks for its box.
    """
    from revseg.graphs.conversation import ground_messages, interpret_messages
    from revseg.policies.parsing import parse_box_answer, parse_keyframe_answer
    from revseg.policies.prompts import get_prompt_set
    from revseg.tools.frame_cache import read_resized
    from revseg.tools.frames import open_video, sample_indices

    settings = settings or ChainSettings(num_frames=4, frame_size=(112, 112), keyframe_size=(224, 224))
    sampling = sampling or SamplingParams(temperature=1.0)
    prompts = get_prompt_set(settings.prompt_set)
    reader = open_video(video)
    try:
        ref = reader.ref
        indices = sample_indices(ref.num_frames, settings.num_frames)
        frames = read_resized(reader, indices, settings.frame_size)
        p1 = prompts.render_interpret(query, len(frames), settings.fps_label)
        g1 = policy.generate(interpret_messages(frames, p1), sampling)
        t1 = TurnRecord(
            name="interpret",
            prompt=p1,
            image_frames=indices,
            image_size=settings.frame_size,
            response=g1.text,
            token_ids=g1.token_ids,
            logprobs=g1.logprobs,
        )
        answer = parse_keyframe_answer(g1.text, len(indices))
        t1.parse_ok = answer.ok
        turns, targets, status = [t1], [], Status.FAILED_SELECT_FRAMES
        if answer.ok and answer.objects:
            obj = answer.objects[0]
            k = indices[obj.sample_idx]
            keyframe = read_resized(reader, [k], settings.keyframe_size)[0]
            p2 = prompts.render_ground(obj.description)
            g2 = policy.generate(ground_messages(frames, p1, g1.text, keyframe, p2, g1.token_ids), sampling)
            box = parse_box_answer(g2.text)
            turns.append(
                TurnRecord(
                    name="ground",
                    prompt=p2,
                    image_frames=[k],
                    image_size=settings.keyframe_size,
                    response=g2.text,
                    token_ids=g2.token_ids,
                    logprobs=g2.logprobs,
                    parse_ok=box.ok,
                    target=0,
                )
            )
            coords = box.first.coords if box.first else None
            scale = (ref.width / settings.keyframe_size[0], ref.height / settings.keyframe_size[1])
            targets.append(
                Target(
                    description=obj.description,
                    sample_idx=obj.sample_idx,
                    frame_index=k,
                    box=None
                    if coords is None
                    else (coords[0] * scale[0], coords[1] * scale[1], coords[2] * scale[0], coords[3] * scale[1]),
                )
            )
            status = Status.OK if box.ok else Status.FAILED_GROUND
    finally:
        reader.close()
    return Trajectory(
        query=query,
        video=ref,
        policy=policy.info,
        sampling=sampling,
        settings=settings,
        sampled_indices=indices,
        targets=targets,
        turns=turns,
        status=status,
    )
