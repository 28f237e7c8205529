"""The Policy contract: a conversation of text and images in, generated text (and tokens) out.

Every backend (local transformers VLM, OpenAI-compatible API, langchain chat model)
implements :class:`Policy`, in a blocking and an async form. The graph builds the conversation; the backend only
turns it into its own wire format and reports what it generated.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Literal, Protocol, runtime_checkable

from revseg.settings import SamplingParams
from revseg.trajectory import PolicyInfo, ServerExchange, TokenSource

if TYPE_CHECKING:
    from PIL.Image import Image


@dataclass(frozen=True)
class TextPart:
    """A piece of text inside a message."""

    text: str


@dataclass(frozen=True)
class ImagePart:
    """An image inside a message, already resized by the graph to the size the chain prescribes."""

    image: Image


Part = TextPart | ImagePart


@dataclass(frozen=True)
class Message:
    """One chat message. Images come before text in our prompts, as in Qwen-VL's own examples.

    An assistant message replaying an earlier answer may carry the ``token_ids`` the
    policy generated for it. A backend that tokenises (hf) feeds the history as those ids
    rather than re-tokenising the text, so the next turn is generated in the very context
    training scores it in (:func:`revseg.policies.tokens.splice_history`). Text-only
    backends send the text.
    """

    role: Literal["system", "user", "assistant"]
    parts: tuple[Part, ...]
    token_ids: tuple[int, ...] | None = None

    @property
    def text(self) -> str:
        """All text parts joined, for logging and for assistant turns replayed as history."""
        return "".join(p.text for p in self.parts if isinstance(p, TextPart))

    @classmethod
    def assistant(cls, text: str, token_ids: Sequence[int] | None = None) -> Message:
        """An assistant message holding a previous answer (conversation history), with its generated ids if known."""
        ids = None if token_ids is None else tuple(int(i) for i in token_ids)
        return cls(role="assistant", parts=(TextPart(text),), token_ids=ids)


@dataclass(frozen=True)
class Generation:
    """What a backend produced for one turn.

    ``token_ids`` and ``logprobs`` are the generated tokens and their behaviour
    log-probabilities (one per token) when the backend can report them; RL needs
    both. ``logprobs_approximate`` flags log-probs that cannot be trusted as the
    sampler's own for these ids (re-scored after the fact, paired with a re-tokenised
    answer, or with no ids at all); GRPO refuses them. ``token_source`` says where the
    ids came from (:data:`revseg.trajectory.TokenSource`; None without ids).
    ``exchange`` is what an API backend asked its server for and what came back.
    """

    text: str
    token_ids: list[int] | None = None
    logprobs: list[float] | None = None
    logprobs_approximate: bool = False
    token_source: TokenSource | None = None
    finish_reason: str | None = None
    usage: dict[str, int] = field(default_factory=dict)
    exchange: ServerExchange | None = None


@runtime_checkable
class Policy(Protocol):
    """A vision-language model that answers the chain's turns."""

    @property
    def info(self) -> PolicyInfo:
        """Identity and box convention, recorded in every trajectory."""
        ...

    def seen_size(self, width: int, height: int) -> tuple[int, int]:
        """The (width, height) the model actually sees for an image of this size.

        Qwen2.5-VL answers boxes in pixels of its own resized image (multiples of 28),
        so rescaling a box needs this size, not the size we sent.
        """
        ...

    def generate(self, messages: Sequence[Message], sampling: SamplingParams) -> Generation:
        """Answer the last user message given the whole conversation."""
        ...

    async def agenerate(self, messages: Sequence[Message], sampling: SamplingParams) -> Generation:
        """The same answer without blocking the event loop; the graph's nodes call this one.

        Network backends await their async client; local models run ``generate`` in a
        worker thread. Many queries then share one process, each awaiting its own turn.
        """
        ...
