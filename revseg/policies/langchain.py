"""Policy backend for any langchain-core chat model (``ChatOpenAI``, ``ChatAnthropic``, a local model, ...).

Frames travel as langchain-core standard image content blocks
(``{"type": "image", "base64": ..., "mime_type": "image/png"}``), which every provider
integration translates into its own wire format. Sampling parameters are passed to the
model only under names the model declares (``temperature``, ``top_p``, ``top_k``,
``max_tokens``, ``seed``), so a model that has none of them keeps its own settings.
Log-probs are kept when the model reports them in ``response_metadata["logprobs"]``
(``ChatOpenAI(logprobs=True)``); such models do not report token ids. Retries are the
model's own (``max_retries`` on most integrations); what still fails becomes PolicyError.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from revseg.errors import PolicyError, SpecError
from revseg.policies.base import Generation, ImagePart, Message
from revseg.policies.images import EncodedImageCache, image_base64, wire_encoding
from revseg.policies.wire import content_blocks
from revseg.settings import SamplingParams
from revseg.trajectory import BoxConvention, PolicyInfo

if TYPE_CHECKING:
    from langchain_core.language_models import BaseChatModel
    from langchain_core.messages import AIMessage, BaseMessage

_BOX_CONVENTIONS: tuple[BoxConvention, ...] = ("absolute", "norm1000")
_FINISH = {"stop": "stop", "end_turn": "stop", "stop_sequence": "stop", "length": "length", "max_tokens": "length"}


def to_langchain_messages(
    messages: Sequence[Message], image_format: str = "png", cache: EncodedImageCache | None = None
) -> list[BaseMessage]:
    """Convert our messages to langchain-core messages with standard image blocks (images before text)."""
    from langchain_core.messages import AIMessage, HumanMessage, SystemMessage

    def image_block(part: ImagePart) -> dict[str, Any]:
        data, mime = cache.base64(part.image, image_format) if cache else image_base64(part.image, image_format)
        return {"type": "image", "base64": data, "mime_type": mime}

    out: list[BaseMessage] = []
    for message in messages:
        if message.role == "assistant":
            out.append(AIMessage(content=message.text))
        elif message.role == "system":
            out.append(SystemMessage(content=message.text))
        else:
            blocks: list[str | dict[str, Any]] = [*content_blocks(message, image_block)]
            out.append(HumanMessage(content=blocks))
    return out


def model_name(model: BaseChatModel) -> str:
    """The served model's name as the integration spells it, else the integration's type."""
    for attribute in ("model_name", "model", "model_id"):
        value = getattr(model, attribute, None)
        if isinstance(value, str) and value:
            return value
    return model._llm_type


class LangChainPolicy:
    """A langchain-core ``BaseChatModel`` as the chain's policy."""

    def __init__(
        self,
        model: BaseChatModel,
        *,
        spec: str | None = None,
        box_convention: str = "absolute",
        image_format: str = "png",
        image_cache_mb: float = 128,
    ) -> None:
        if box_convention not in _BOX_CONVENTIONS:
            raise SpecError(f"box convention '{box_convention}' unknown; use one of {', '.join(_BOX_CONVENTIONS)}")
        self.model = model
        self._name = model_name(model)
        self._spec = spec or f"langchain:{type(model).__name__}:{self._name}"
        self._box_convention: BoxConvention = box_convention
        self._image_format = image_format
        self._images = EncodedImageCache(int(image_cache_mb * 2**20))

    @classmethod
    def from_spec(cls, ref: str, *, spec: str | None = None, **options: Any) -> LangChainPolicy:
        """``langchain:PROVIDER:MODEL`` through langchain's ``init_chat_model`` (needs the ``langchain`` package)."""
        try:
            from langchain.chat_models import init_chat_model
        except ImportError as exc:
            raise SpecError(
                f"policy spec '{spec or ref}' needs the langchain package (pip install langchain) and the "
                "provider's integration; or pass the chat model object itself as the policy"
            ) from exc
        mine = {k: options.pop(k) for k in ("box_convention", "image_format", "image_cache_mb") if k in options}
        return cls(init_chat_model(ref, **options), spec=spec, **mine)

    def __repr__(self) -> str:
        return f"LangChainPolicy({self._spec!r})"

    @property
    def info(self) -> PolicyInfo:
        """The integration and model name; never the model's credentials or endpoint."""
        return PolicyInfo(
            spec=self._spec,
            backend="langchain",
            model=self._name,
            box_convention=self._box_convention,
            image_encoding=wire_encoding(self._image_format),
        )

    def seen_size(self, width: int, height: int) -> tuple[int, int]:
        """The size sent: what a provider does to images is not visible through langchain."""
        return width, height

    def generate(self, messages: Sequence[Message], sampling: SamplingParams) -> Generation:
        """One model call through ``invoke``."""
        wire = to_langchain_messages(messages, self._image_format, self._images)
        try:
            reply = self.model.invoke(wire, **self._sampling_kwargs(sampling))
        except Exception as exc:  # any integration's failure is a backend failure
            raise PolicyError(f"{self._spec}: {type(exc).__name__}: {_short(exc)}") from exc
        return generation_from(reply, self._spec)

    async def agenerate(self, messages: Sequence[Message], sampling: SamplingParams) -> Generation:
        """One model call through ``ainvoke``; images are encoded in a worker thread."""
        import asyncio

        wire = await asyncio.to_thread(to_langchain_messages, messages, self._image_format, self._images)
        try:
            reply = await self.model.ainvoke(wire, **self._sampling_kwargs(sampling))
        except Exception as exc:  # any integration's failure is a backend failure
            raise PolicyError(f"{self._spec}: {type(exc).__name__}: {_short(exc)}") from exc
        return generation_from(reply, self._spec)

    def _sampling_kwargs(self, sampling: SamplingParams) -> dict[str, Any]:
        fields = type(self.model).model_fields
        wanted = {
            "temperature": sampling.temperature,
            "top_p": sampling.top_p,
            "top_k": sampling.top_k,
            "max_tokens": sampling.max_new_tokens,
            "seed": sampling.seed,
        }
        return {k: v for k, v in wanted.items() if v is not None and k in fields}


def generation_from(reply: Any, spec: str) -> Generation:
    """Text, log-probs, finish reason and usage of a chat model's reply.

    A reply carries no token ids, so its log-probs belong to tokens nobody recorded: they
    are marked approximate, as the openai backend marks a server's log-probs without ids.
    """
    from langchain_core.messages import AIMessage

    if not isinstance(reply, AIMessage):
        raise PolicyError(f"{spec}: the chat model returned {type(reply).__name__}, not an AIMessage")
    metadata = reply.response_metadata or {}
    finish = metadata.get("finish_reason") or metadata.get("stop_reason")
    logprobs = _logprobs(reply)
    return Generation(
        text=reply.text,
        logprobs=logprobs,
        logprobs_approximate=logprobs is not None,
        finish_reason=_FINISH.get(finish) if isinstance(finish, str) else None,
        usage=_usage(reply),
    )


def _logprobs(reply: AIMessage) -> list[float] | None:
    """Per-token log-probs from OpenAI-style ``response_metadata["logprobs"]["content"]``, if any."""
    logprobs = (reply.response_metadata or {}).get("logprobs")
    content = logprobs.get("content") if isinstance(logprobs, dict) else None
    if not isinstance(content, list) or not content:
        return None
    values: list[float] = []
    for item in content:
        value = item.get("logprob") if isinstance(item, dict) else None
        if not isinstance(value, int | float):
            return None
        values.append(float(value) if math.isfinite(value) else -1e9)
    return values


def _usage(reply: AIMessage) -> dict[str, int]:
    usage = reply.usage_metadata
    if not usage:
        return {}
    return {"prompt_tokens": int(usage["input_tokens"]), "completion_tokens": int(usage["output_tokens"])}


def _short(exc: Exception, limit: int = 300) -> str:
    line = " ".join(str(exc).split())
    return line if len(line) <= limit else line[: limit - 3] + "..."
