"""Token-level helpers shared by generation and training: answers as ids, and history spliced in as ids.

A chat template renders an assistant message of the history from its *text*, and that
text does not always re-tokenise to the ids the model generated (a sampler may emit
``"a", "b"`` where the tokenizer writes ``"ab"``). RL scores every generated token in the
context it was sampled in, so the history must enter the next turn as the generated ids
(DESIGN.md 2.3b). :func:`splice_history` does that on a rendered batch; the hf backend
builds every prompt through it and so does training (``revseg.rl.sequences``), which
makes the context a turn was generated in and the one it is scored in the same sequence.

No torch at import: tensors are handled only inside the functions that get them.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from revseg.errors import PolicyError

END_OF_TURN = "<|im_end|>"
"""The token Qwen-style chat templates write after every message, and the model's stop token for a turn."""

PLACEHOLDER_TOKENS = ("<|vision_start|>", "<|vision_end|>", "<|vision_pad|>", "<|image_pad|>", "<|video_pad|>")
"""Qwen-VL's image and video markers: the processor expands them into vision features. A model
that generates one (a barely trained model can) writes a prompt whose image tokens no longer
match its images, so the next turn and training fail; the hf backend never samples them and
training scores answers under the same restriction."""

PER_TOKEN_KEYS = ("input_ids", "attention_mask", "mm_token_type_ids", "token_type_ids")
"""Batch entries with one value per token: the ones a splice or an extension must keep aligned."""


def end_of_turn_id(tokenizer: Any) -> int:
    """The id of ``<|im_end|>``, or the tokenizer's end-of-sequence id when it has no such token."""
    end = tokenizer.convert_tokens_to_ids(END_OF_TURN)
    if end is None or end == tokenizer.unk_token_id:
        end = tokenizer.eos_token_id
    return int(end)


def placeholder_token_ids(tokenizer: Any) -> list[int]:
    """Ids of the :data:`PLACEHOLDER_TOKENS` this tokenizer has (sorted; empty for a text-only tokenizer)."""
    ids = set()
    for token in PLACEHOLDER_TOKENS:
        found = tokenizer.convert_tokens_to_ids(token)
        if isinstance(found, int) and found != tokenizer.unk_token_id:
            ids.add(found)
    return sorted(ids)


def closed_turn(ids: Sequence[int], end: int) -> list[int]:
    """``ids`` ending in the end-of-turn token ``end``: an answer cut by the token budget still closes its turn."""
    return list(ids) if ids and ids[-1] == end else [*ids, end]


def answer_token_ids(text: str, tokenizer: Any, *, closed: bool = True) -> list[int]:
    """An answer's text re-tokenised, followed by the end-of-turn token when ``closed``.

    This is only an approximation of what a sampler generated (the same text has many
    tokenisations); it is what a backend that returns text alone can offer, and what
    training falls back on for text-only records (SFT).
    """
    ids = [int(i) for i in tokenizer.encode(text, add_special_tokens=False)]
    return [*ids, end_of_turn_id(tokenizer)] if closed else ids


def splice_history(rendered: Any, prefix_ids: Any, history: Sequence[int], end: int) -> dict[str, Any]:
    """``rendered`` with the assistant answer that starts right after ``prefix_ids`` replaced by ``history``.

    ``rendered`` is a processor batch (``input_ids`` of shape (1, L) and friends) for a
    conversation that contains the answer as text; ``prefix_ids`` are the ids of the same
    conversation cut before that answer and ending in the generation cue (so the answer's
    text starts at ``len(prefix_ids)``); ``history`` are the ids generated for the answer,
    ending in ``end``. The re-tokenised answer, up to and including its first ``end``, is
    swapped for ``history``; per-token entries get attention 1 and token type 0 there.

    Raises PolicyError when the template is not prefix-stable or writes no end token.
    """
    import torch

    ids = rendered["input_ids"][0]
    prefix = torch.as_tensor(prefix_ids).reshape(-1).to(ids.device)
    n = int(prefix.numel())
    if n > ids.numel() or not torch.equal(ids[:n], prefix.to(ids.dtype)):
        raise PolicyError(
            "the next turn's rendered prompt does not start with the previous turn's: the chat template is not "
            "prefix-stable, so the generated history cannot be spliced in"
        )
    closing = (ids[n:] == end).nonzero()
    if closing.numel() == 0:
        raise PolicyError("the rendered prompt has no end-of-turn token after the history's answer")
    stop = n + int(closing[0, 0]) + 1  # just past the history's <|im_end|>
    out = dict(rendered)
    middle = torch.tensor([list(history)], dtype=ids.dtype, device=ids.device)
    for key in PER_TOKEN_KEYS:
        if key in out:
            value = out[key]
            fill = middle if key == "input_ids" else torch.full_like(middle, 1 if key == "attention_mask" else 0)
            out[key] = torch.cat([value[:, :n], fill.to(value.dtype), value[:, stop:]], dim=1)
    return out


def extend_inputs(batch: Any, ids: Sequence[int]) -> dict[str, Any]:
    """``batch`` with ``ids`` appended as text tokens (attention 1, token type 0)."""
    import torch

    out = dict(batch)
    new = torch.tensor([list(ids)], dtype=batch["input_ids"].dtype, device=batch["input_ids"].device)
    for key in PER_TOKEN_KEYS:
        if key in out:
            fill = new if key == "input_ids" else torch.full_like(new, 1 if key == "attention_mask" else 0)
            out[key] = torch.cat([out[key], fill.to(out[key].dtype)], dim=1)
    return out
