"""Rebuilding a recorded rollout's exact model inputs, and scoring its tokens under a model.

A rollout is one conversation: turn 1 (the sampled frames and prompt P1, then the
model's answer) and, per target, turn 2 (the keyframe and prompt P2, then a box). Both
turns are rebuilt through :func:`~revseg.graphs.conversation.interpret_messages` /
:func:`~revseg.graphs.conversation.ground_messages` and the real processor, from the
record alone: the video reference with the reader that decoded it, each turn's image
frames and sizes, and each turn's prompt text.

Turn 1's answer enters turn 2's input as the **generated token ids**, not as a
re-tokenisation of its text (DESIGN.md 2.3b): the processor renders turn 2 with the text
history, and the span of that history is swapped for the recorded ids by
:func:`~revseg.policies.tokens.splice_history`, the very splice the hf policy applies
when it generates turn 2. So every token the model produced appears in the sequence
exactly once as it was sampled, in the context it was sampled in, and the recorded
behaviour log-probs line up with it one to one.

One :class:`RolloutSequence` per forward pass: a rollout that stopped after turn 1 is one
sequence (turn-1 prompt + answer); a rollout with turn 2 is one sequence per grounding
turn (turn-1 prompt + turn-1 answer + turn-2 prompt + turn-2 answer), and turn 1's
tokens count in the first of them only.

A look_again rollout (``settings.program``) is one conversation of any number of turns
(interpret, zoom, ground, verify, reselect), each continuing the last, so it is one
sequence: every turn's images rebuilt from the record
(:func:`~revseg.graphs.images.turn_images`, verify's masks re-drawn from the recorded
masks.json), every answer spliced in as its generated ids, exactly as
:meth:`~revseg.policies.hf.HFPolicy.build_inputs` gave them to the policy.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from revseg.errors import PolicyError, RevsegError, TrainingError
from revseg.graphs.conversation import ground_messages, interpret_messages, user_message
from revseg.graphs.images import turn_images
from revseg.policies.base import Message
from revseg.policies.tokens import (
    answer_token_ids,
    closed_turn,
    end_of_turn_id,
    extend_inputs,
    placeholder_token_ids,
    splice_history,
)
from revseg.tools.frame_cache import ResizedFrameCache, read_resized
from revseg.tools.frames import FRAME_READERS, open_video
from revseg.trajectory import Trajectory, TurnRecord

if TYPE_CHECKING:
    import torch

BuildInputs = Callable[[Sequence[Message]], Any]
"""messages -> the processor's batch (``input_ids``, ``pixel_values``, ...), e.g. ``HFPolicy.build_inputs``."""


@dataclass
class RolloutSequence:
    """One forward pass of one rollout: the model inputs, and which positions hold the model's own tokens.

    ``positions`` index ``inputs["input_ids"][0]``; ``behaviour_logps`` are the recorded
    log-probs of those tokens (None for text-only records, usable for SFT only);
    ``turns`` names the turn each position belongs to (``interpret`` or ``ground``);
    ``suppressed`` are token ids the policy never samples (the vision placeholders), left
    out of the distribution the answer is scored under, as they were when it was sampled.
    """

    inputs: dict[str, Any]
    positions: torch.Tensor
    behaviour_logps: torch.Tensor | None
    turns: list[str]
    suppressed: tuple[int, ...] = ()

    @property
    def num_tokens(self) -> int:
        """Answer tokens in this sequence (the ones in the loss)."""
        return int(self.positions.numel())

    def to(self, device: Any) -> RolloutSequence:
        """A copy with every tensor on ``device``."""
        inputs = {k: v.to(device) if hasattr(v, "to") else v for k, v in self.inputs.items()}
        logps = None if self.behaviour_logps is None else self.behaviour_logps.to(device)
        return RolloutSequence(inputs, self.positions.to(device), logps, self.turns, self.suppressed)


def turn_tokens(turn: TurnRecord, tokenizer: Any, *, need_logprobs: bool) -> tuple[list[int], list[float] | None]:
    """A turn's generated ids and log-probs; without recorded ids, the answer re-tokenised (SFT only).

    Raises TrainingError when ``need_logprobs`` and the record has none, or they do not
    line up with the ids, or they are approximate (not the sampler's own for these ids,
    say a server's paired with a re-tokenised answer): whoever produced the record, a
    policy-gradient ratio over them would not be one.
    """
    ids, logps = turn.token_ids, turn.logprobs
    if need_logprobs and turn.logprobs_approximate:
        source = f" (token ids {turn.token_source})" if turn.token_source else ""
        raise TrainingError(
            f"a {turn.name} turn has approximate log-probs{source}; GRPO needs the behaviour policy's exact ones: "
            "collect with an hf: policy or a vLLM server that returns token ids, or train with --algorithm rft"
        )
    if ids is None:
        if need_logprobs:
            raise TrainingError(
                f"a {turn.name} turn has no recorded token ids (its policy did not return them); GRPO needs the "
                "behaviour policy's tokens and log-probs: collect with an hf: policy, or a vLLM server that "
                "returns token ids, or train with --algorithm rft"
            )
        return answer_token_ids(turn.response or "", tokenizer), None
    if need_logprobs and (logps is None or len(logps) != len(ids)):
        got = "no" if logps is None else f"{len(logps)}"
        raise TrainingError(f"a {turn.name} turn has {len(ids)} token ids but {got} log-probs; GRPO needs both")
    return list(ids), (list(logps) if logps is not None else None)


def rollout_sequences(
    trajectory: Trajectory,
    build_inputs: BuildInputs,
    tokenizer: Any,
    *,
    need_logprobs: bool = True,
    frame_cache: ResizedFrameCache | None = None,
) -> list[RolloutSequence]:
    """The forward passes that score every token ``trajectory``'s policy generated (CPU tensors).

    Returns ``[]`` for a record without a turn-1 answer (a policy error before any token).
    ``frame_cache`` shares decoded frames between rollouts (a group's rollouts see the same
    turn-1 frames); without it each call decodes its own. Raises TrainingError for an
    answer holding a vision placeholder token (see :func:`has_placeholder_tokens`).
    """
    import torch

    if not trajectory.turns or trajectory.turns[0].name != "interpret" or trajectory.turns[0].response is None:
        return []
    suppressed = placeholder_token_ids(tokenizer)
    if has_placeholder_tokens(trajectory, suppressed):
        raise TrainingError(
            f"trajectory {trajectory.run_id} has a vision placeholder token in an answer: its inputs cannot be "
            "rebuilt (the image tokens would not match the images); train() leaves such rollouts out"
        )
    if trajectory.settings.program == "look_again":
        return [_conversation_sequence(trajectory, build_inputs, tokenizer, need_logprobs, frame_cache, suppressed)]
    first = trajectory.turns[0]
    t1_ids, t1_logps = turn_tokens(first, tokenizer, need_logprobs=need_logprobs)
    frames = _frames(trajectory, first.image_frames, first.image_size, frame_cache)
    prefix = build_inputs(interpret_messages(frames, first.prompt))
    prefix_len = int(prefix["input_ids"].shape[1])
    grounds = [t for t in trajectory.turns[1:] if t.name == "ground" and t.response is not None]
    if not grounds:
        ids = [*t1_ids]
        inputs = extend_inputs(prefix, ids)
        positions = torch.arange(prefix_len, prefix_len + len(ids))
        return [_sequence(inputs, positions, t1_logps, ["interpret"] * len(ids), suppressed)]

    end = end_of_turn_id(tokenizer)
    history = closed_turn(t1_ids, end)  # a cut answer still closes its turn
    out = []
    for number, turn in enumerate(grounds):
        t2_ids, t2_logps = turn_tokens(turn, tokenizer, need_logprobs=need_logprobs)
        keyframe = _frames(trajectory, turn.image_frames[:1], turn.image_size, frame_cache)[0]
        rendered = build_inputs(ground_messages(frames, first.prompt, first.response or "", keyframe, turn.prompt))
        try:
            spliced = splice_history(rendered, prefix["input_ids"], history, end)
        except PolicyError as exc:
            raise TrainingError(f"cannot rebuild rollout {trajectory.run_id}: {exc}") from exc
        base = int(spliced["input_ids"].shape[1])
        inputs = extend_inputs(spliced, t2_ids)
        t2_positions = torch.arange(base, base + len(t2_ids))
        if number == 0:
            t1_positions = torch.arange(prefix_len, prefix_len + len(t1_ids))
            positions = torch.cat([t1_positions, t2_positions])
            logps = None if t1_logps is None or t2_logps is None else [*t1_logps, *t2_logps]
            names = ["interpret"] * len(t1_ids) + ["ground"] * len(t2_ids)
        else:
            positions, logps, names = t2_positions, t2_logps, ["ground"] * len(t2_ids)
        out.append(_sequence(inputs, positions, logps, names, suppressed))
    return out


def _conversation_sequence(
    trajectory: Trajectory,
    build_inputs: BuildInputs,
    tokenizer: Any,
    need_logprobs: bool,
    frame_cache: ResizedFrameCache | None,
    suppressed: Sequence[int],
) -> RolloutSequence:
    """A look_again rollout as one sequence: each answered turn's prompt, then its ids, in order.

    Each turn's answer starts where the conversation up to its prompt ends (the prompt as
    ``build_inputs`` renders it, earlier answers spliced in as ids), so the positions found
    turn by turn hold in the final sequence; a template that breaks that is a TrainingError.
    """
    import torch

    def read(indices: Sequence[int], size: tuple[int, int]) -> list[Any]:
        return _frames(trajectory, indices, size, frame_cache)

    messages: list[Message] = []
    spans: list[torch.Tensor] = []
    answer_ids: list[int] = []
    logps: list[float] | None = []
    names: list[str] = []
    prefix: Any = None
    for turn in (t for t in trajectory.turns if t.response is not None):
        ids, turn_logps = turn_tokens(turn, tokenizer, need_logprobs=need_logprobs)
        try:
            images = turn_images(turn.model_dump(mode="json"), read)
        except RevsegError as exc:
            raise TrainingError(f"cannot rebuild the {turn.name} turn of rollout {trajectory.run_id}: {exc}") from exc
        messages.append(user_message(images, turn.prompt))
        try:
            prefix = build_inputs(messages)
        except PolicyError as exc:
            raise TrainingError(f"cannot rebuild rollout {trajectory.run_id}: {exc}") from exc
        start = int(prefix["input_ids"].shape[1])
        spans.append(torch.arange(start, start + len(ids)))
        answer_ids += ids
        names += [turn.name] * len(ids)
        logps = None if logps is None or turn_logps is None else [*logps, *turn_logps]
        messages.append(Message.assistant(turn.response or "", ids))
    last_ids = answer_ids[len(answer_ids) - int(spans[-1].numel()) :]
    inputs = extend_inputs(prefix, last_ids)
    positions = torch.cat(spans)
    if inputs["input_ids"][0, positions].tolist() != answer_ids:
        raise TrainingError(
            f"cannot rebuild rollout {trajectory.run_id}: the chat template does not keep earlier turns in place "
            "when a turn is added, so the answers' positions do not line up"
        )
    return _sequence(inputs, positions, logps, names, suppressed)


def has_placeholder_tokens(trajectory: Trajectory, placeholder_ids: Sequence[int]) -> bool:
    """Whether an answer of ``trajectory`` holds one of ``placeholder_ids`` (a policy that did not suppress them)."""
    never = set(placeholder_ids)
    return any(never.intersection(turn.token_ids or ()) for turn in trajectory.turns)


def answer_logps(model: Any, sequence: RolloutSequence, *, temperature: float = 1.0) -> torch.Tensor:
    """Log-probs of the sequence's answer tokens under ``model`` (logits divided by ``temperature``).

    Only the logits from the first answer position on are computed (``logits_to_keep``),
    so a long image prompt costs no vocabulary-sized rows.
    """
    import torch

    input_ids = sequence.inputs["input_ids"]
    length = int(input_ids.shape[1])
    keep = length - int(sequence.positions.min()) + 1
    out = model(**sequence.inputs, use_cache=False, logits_to_keep=keep)
    rows = sequence.positions - 1 - (length - keep)
    logits = out.logits[0, rows].float()
    if temperature != 1.0:
        logits = logits / temperature
    if sequence.suppressed:
        never = torch.tensor(sequence.suppressed, device=logits.device)
        logits = logits.index_fill(-1, never, float("-inf"))
    tokens = input_ids[0, sequence.positions]
    return torch.log_softmax(logits, dim=-1).gather(-1, tokens[:, None]).squeeze(-1)


def _sequence(
    inputs: Any, positions: torch.Tensor, logps: list[float] | None, names: list[str], suppressed: Sequence[int]
) -> RolloutSequence:
    import torch

    device = inputs["input_ids"].device
    behaviour = None if logps is None else torch.tensor(logps, dtype=torch.float32, device=device)
    return RolloutSequence(dict(inputs), positions.to(device), behaviour, names, tuple(suppressed))


def _frames(
    trajectory: Trajectory, indices: Sequence[int], size: tuple[int, int], cache: ResizedFrameCache | None
) -> list[Any]:
    backend = trajectory.video.backend if trajectory.video.backend in FRAME_READERS else "auto"
    if cache is not None:
        return cache.read(trajectory.video.path, list(indices), size, backend=backend)
    reader = open_video(trajectory.video.path, backend=backend)
    try:
        return read_resized(reader, list(indices), size)
    finally:
        reader.close()
