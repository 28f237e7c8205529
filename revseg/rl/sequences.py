"""Rebuilding a recorded rollout's exact model inputs, and scoring its tokens under a model.

A rollout is one conversation: turn 1 (the sampled frames and prompt P1, then the
model's answer) and, per target, turn 2 (the keyframe and prompt P2, then a box). Both
turns are rebuilt through :func:`~revseg.graphs.conversation.interpret_messages` /
:func:`~revseg.graphs.conversation.ground_messages` and the real processor, from the
record alone: the video reference with the reader that decoded it, each turn's image
frames and sizes, and each turn's prompt text.

Turn 1's answer enters turn 2's input as the **generated token ids**, not as a
re-tokenisation of its text (DESIGN.md 2.3b): the processor renders turn 2 with the text
history, and the span of that history is swapped for the recorded ids. So every token
the model produced appears in the sequence exactly once as it was sampled, and the
recorded behaviour log-probs line up with it one to one.

One :class:`RolloutSequence` per forward pass: a rollout that stopped after turn 1 is one
sequence (turn-1 prompt + answer); a rollout with turn 2 is one sequence per grounding
turn (turn-1 prompt + turn-1 answer + turn-2 prompt + turn-2 answer), and turn 1's
tokens count in the first of them only.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from revseg.errors import TrainingError
from revseg.graphs.conversation import ground_messages, interpret_messages
from revseg.policies.base import Message
from revseg.tools.frames import FRAME_READERS, open_video, read_resized
from revseg.trajectory import Trajectory, TurnRecord

if TYPE_CHECKING:
    import torch

logger = logging.getLogger(__name__)

BuildInputs = Callable[[Sequence[Message]], Any]
"""messages -> the processor's batch (``input_ids``, ``pixel_values``, ...), e.g. ``HFPolicy.build_inputs``."""

END_OF_TURN = "<|im_end|>"
_PER_TOKEN_KEYS = ("input_ids", "attention_mask", "mm_token_type_ids", "token_type_ids")


@dataclass
class RolloutSequence:
    """One forward pass of one rollout: the model inputs, and which positions hold the model's own tokens.

    ``positions`` index ``inputs["input_ids"][0]``; ``behaviour_logps`` are the recorded
    log-probs of those tokens (None for text-only records, usable for SFT only);
    ``turns`` names the turn each position belongs to (``interpret`` or ``ground``).
    """

    inputs: dict[str, Any]
    positions: torch.Tensor
    behaviour_logps: torch.Tensor | None
    turns: list[str]

    @property
    def num_tokens(self) -> int:
        """Answer tokens in this sequence (the ones in the loss)."""
        return int(self.positions.numel())

    def to(self, device: Any) -> RolloutSequence:
        """A copy with every tensor on ``device``."""
        inputs = {k: v.to(device) if hasattr(v, "to") else v for k, v in self.inputs.items()}
        logps = None if self.behaviour_logps is None else self.behaviour_logps.to(device)
        return RolloutSequence(inputs, self.positions.to(device), logps, self.turns)


def turn_tokens(turn: TurnRecord, tokenizer: Any, *, need_logprobs: bool) -> tuple[list[int], list[float] | None]:
    """A turn's generated ids and log-probs; without recorded ids, the answer re-tokenised (SFT only).

    Raises TrainingError when ``need_logprobs`` and the record has none (or they do not
    line up with the ids).
    """
    ids, logps = turn.token_ids, turn.logprobs
    if ids is None:
        if need_logprobs:
            raise TrainingError(
                f"a {turn.name} turn has no recorded token ids (its policy did not return them); GRPO needs the "
                "behaviour policy's tokens and log-probs: collect with an hf: policy, or a vLLM server that "
                "returns token ids, or train with --algorithm rft"
            )
        text_ids = tokenizer.encode(turn.response or "", add_special_tokens=False)
        return [*text_ids, _end_id(tokenizer)], None
    if need_logprobs and (logps is None or len(logps) != len(ids)):
        got = "no" if logps is None else f"{len(logps)}"
        raise TrainingError(f"a {turn.name} turn has {len(ids)} token ids but {got} log-probs; GRPO needs both")
    return list(ids), (list(logps) if logps is not None else None)


def rollout_sequences(
    trajectory: Trajectory, build_inputs: BuildInputs, tokenizer: Any, *, need_logprobs: bool = True
) -> list[RolloutSequence]:
    """The forward passes that score every token ``trajectory``'s policy generated (CPU tensors).

    Returns ``[]`` for a record without a turn-1 answer (a policy error before any token).
    """
    import torch

    if not trajectory.turns or trajectory.turns[0].name != "interpret" or trajectory.turns[0].response is None:
        return []
    first = trajectory.turns[0]
    t1_ids, t1_logps = turn_tokens(first, tokenizer, need_logprobs=need_logprobs)
    frames = _frames(trajectory, first.image_frames, first.image_size)
    prefix = build_inputs(interpret_messages(frames, first.prompt))
    prefix_len = int(prefix["input_ids"].shape[1])
    grounds = [t for t in trajectory.turns[1:] if t.name == "ground" and t.response is not None]
    if not grounds:
        ids = [*t1_ids]
        inputs = _extend(prefix, ids)
        positions = torch.arange(prefix_len, prefix_len + len(ids))
        return [_sequence(inputs, positions, t1_logps, ["interpret"] * len(ids))]

    end = _end_id(tokenizer)
    history = t1_ids if t1_ids and t1_ids[-1] == end else [*t1_ids, end]  # a cut answer still closes its turn
    out = []
    for number, turn in enumerate(grounds):
        t2_ids, t2_logps = turn_tokens(turn, tokenizer, need_logprobs=need_logprobs)
        keyframe = _frames(trajectory, turn.image_frames[:1], turn.image_size)[0]
        rendered = build_inputs(ground_messages(frames, first.prompt, first.response or "", keyframe, turn.prompt))
        spliced = _splice_history(rendered, prefix, history, end)
        base = int(spliced["input_ids"].shape[1])
        inputs = _extend(spliced, t2_ids)
        t2_positions = torch.arange(base, base + len(t2_ids))
        if number == 0:
            t1_positions = torch.arange(prefix_len, prefix_len + len(t1_ids))
            positions = torch.cat([t1_positions, t2_positions])
            logps = None if t1_logps is None or t2_logps is None else [*t1_logps, *t2_logps]
            names = ["interpret"] * len(t1_ids) + ["ground"] * len(t2_ids)
        else:
            positions, logps, names = t2_positions, t2_logps, ["ground"] * len(t2_ids)
        out.append(_sequence(inputs, positions, logps, names))
    return out


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
    tokens = input_ids[0, sequence.positions]
    return torch.log_softmax(logits, dim=-1).gather(-1, tokens[:, None]).squeeze(-1)


def _sequence(inputs: Any, positions: torch.Tensor, logps: list[float] | None, names: list[str]) -> RolloutSequence:
    import torch

    device = inputs["input_ids"].device
    behaviour = None if logps is None else torch.tensor(logps, dtype=torch.float32, device=device)
    return RolloutSequence(dict(inputs), positions.to(device), behaviour, names)


def _frames(trajectory: Trajectory, indices: Sequence[int], size: tuple[int, int]) -> list[Any]:
    backend = trajectory.video.backend if trajectory.video.backend in FRAME_READERS else "auto"
    reader = open_video(trajectory.video.path, backend=backend)
    try:
        return read_resized(reader, list(indices), size)
    finally:
        reader.close()


def _end_id(tokenizer: Any) -> int:
    end = tokenizer.convert_tokens_to_ids(END_OF_TURN)
    if end is None or end == tokenizer.unk_token_id:
        end = tokenizer.eos_token_id
    return int(end)


def _extend(batch: Any, ids: list[int]) -> dict[str, Any]:
    """``batch`` with ``ids`` appended as text tokens (attention 1, token type 0)."""
    import torch

    out = dict(batch)
    new = torch.tensor([ids], dtype=batch["input_ids"].dtype, device=batch["input_ids"].device)
    for key in _PER_TOKEN_KEYS:
        if key in out:
            fill = new if key == "input_ids" else torch.full_like(new, 1 if key == "attention_mask" else 0)
            out[key] = torch.cat([out[key], fill.to(out[key].dtype)], dim=1)
    return out


def _splice_history(rendered: Any, prefix: Any, history: list[int], end: int) -> dict[str, Any]:
    """Turn 2's rendered input with the re-tokenised turn-1 answer replaced by the generated ids."""
    import torch

    ids = rendered["input_ids"][0]
    n = int(prefix["input_ids"].shape[1])
    if not torch.equal(ids[:n], prefix["input_ids"][0]):
        raise TrainingError(
            "turn 2's rendered prompt does not start with turn 1's: the chat template is not prefix-stable, "
            "so the generated history cannot be spliced in"
        )
    closing = (ids[n:] == end).nonzero()
    if closing.numel() == 0:
        raise TrainingError("turn 2's rendered prompt has no end-of-turn token after turn 1's answer")
    stop = n + int(closing[0, 0]) + 1  # just past the history's <|im_end|>
    retokenised = ids[n:stop].tolist()
    if retokenised != history:
        logger.debug("turn-1 history re-tokenises to %d ids, generated %d", len(retokenised), len(history))
    out = dict(rendered)
    spliced = torch.tensor([history], dtype=ids.dtype, device=ids.device)
    for key in _PER_TOKEN_KEYS:
        if key in out:
            value = out[key]
            middle = spliced if key == "input_ids" else torch.full_like(spliced, 1 if key == "attention_mask" else 0)
            out[key] = torch.cat([value[:, :n], middle.to(value.dtype), value[:, stop:]], dim=1)
    return out
