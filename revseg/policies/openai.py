"""Policy backend for any OpenAI-compatible chat-completions endpoint (OpenAI, vLLM, ...).

Frames travel as base64 image parts. The main case is a self-hosted vLLM serving
Qwen2.5-VL: there we ask for the generated token ids (``return_token_ids``) and the
per-token log-probs, which RL needs; servers that refuse log-probs are detected once and
then asked without them. Retries with backoff on 429/5xx/timeouts are the SDK's own.
The API key comes from the environment and is never recorded.
"""

from __future__ import annotations

import base64
import io
import math
import os
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from revseg.errors import PolicyError, SpecError
from revseg.policies.base import Generation, ImagePart, Message, TextPart
from revseg.settings import SamplingParams
from revseg.trajectory import BoxConvention, PolicyInfo

if TYPE_CHECKING:
    import openai
    from PIL.Image import Image

_BOX_CONVENTIONS: tuple[BoxConvention, ...] = ("absolute", "norm1000")


def encode_image(image: Image, image_format: str = "png") -> str:
    """Return an image as a ``data:`` URL; PNG keeps the pixels the graph resized exactly."""
    buffer = io.BytesIO()
    fmt = image_format.lower()
    if fmt in {"jpg", "jpeg"}:
        image.convert("RGB").save(buffer, format="JPEG", quality=95)
        mime = "image/jpeg"
    else:
        image.save(buffer, format="PNG")
        mime = "image/png"
    return f"data:{mime};base64,{base64.b64encode(buffer.getvalue()).decode('ascii')}"


def to_openai_messages(messages: Sequence[Message], image_format: str = "png") -> list[dict[str, Any]]:
    """Convert our messages to chat-completions messages (image parts before text, as sent)."""
    out: list[dict[str, Any]] = []
    for message in messages:
        if message.role == "assistant":
            out.append({"role": "assistant", "content": message.text})
            continue
        content: list[dict[str, Any]] = []
        for part in message.parts:
            if isinstance(part, ImagePart):
                content.append({"type": "image_url", "image_url": {"url": encode_image(part.image, image_format)}})
            elif isinstance(part, TextPart):
                content.append({"type": "text", "text": part.text})
        out.append({"role": message.role, "content": content})
    return out


class OpenAIPolicy:
    """A chat model behind an OpenAI-compatible endpoint."""

    def __init__(
        self,
        model: str,
        *,
        spec: str | None = None,
        base_url: str | None = None,
        api_key: str | None = None,
        box_convention: str = "absolute",
        timeout_s: float = 120.0,
        max_retries: int = 3,
        logprobs: bool = True,
        image_format: str = "png",
        extra_body: dict[str, Any] | None = None,
    ) -> None:
        if box_convention not in _BOX_CONVENTIONS:
            raise SpecError(f"box convention '{box_convention}' unknown; use one of {', '.join(_BOX_CONVENTIONS)}")
        import openai

        self._model = model
        self._spec = spec or f"openai:{model}"
        self._box_convention: BoxConvention = box_convention
        self._want_logprobs = logprobs
        self._image_format = image_format
        self._extra_body = dict(extra_body or {})
        base_url = base_url or os.environ.get("OPENAI_BASE_URL")
        key = api_key or os.environ.get("OPENAI_API_KEY")
        if not key:
            if base_url is None:
                raise SpecError(
                    "openai: policy needs OPENAI_API_KEY in the environment (or --base-url for a local server)"
                )
            key = "EMPTY"  # self-hosted servers such as vLLM accept any key
        self._client: openai.OpenAI = openai.OpenAI(
            api_key=key, base_url=base_url, timeout=timeout_s, max_retries=max_retries
        )

    @property
    def info(self) -> PolicyInfo:
        """Identity of the served model; the endpoint URL and key are deliberately left out."""
        return PolicyInfo(spec=self._spec, backend="openai", model=self._model, box_convention=self._box_convention)

    def seen_size(self, width: int, height: int) -> tuple[int, int]:
        """The size sent; the chain's 448 and 840 are multiples of 28, which Qwen-VL servers keep."""
        return width, height

    def generate(self, messages: Sequence[Message], sampling: SamplingParams) -> Generation:
        """One chat completion; API faults after the SDK's retries become PolicyError."""
        import openai

        request: dict[str, Any] = {
            "model": self._model,
            "messages": to_openai_messages(messages, self._image_format),
            "temperature": sampling.temperature,
            "top_p": sampling.top_p,
            "max_tokens": sampling.max_new_tokens,
        }
        if sampling.seed is not None:
            request["seed"] = sampling.seed
        extra = dict(self._extra_body)
        if sampling.top_k is not None:
            extra["top_k"] = sampling.top_k
        if self._want_logprobs:
            request["logprobs"] = True
            extra.setdefault("return_token_ids", True)
        try:
            response = self._client.chat.completions.create(**request, extra_body=extra or None)
        except openai.BadRequestError as exc:
            if not self._want_logprobs or "logprob" not in str(exc).lower():
                raise PolicyError(f"{self._spec}: request rejected: {_short(exc)}") from exc
            self._want_logprobs = False  # this server does not offer log-probs: stop asking
            return self.generate(messages, sampling)
        except openai.APIError as exc:
            raise PolicyError(f"{self._spec}: {type(exc).__name__}: {_short(exc)}") from exc
        return _generation_from(response, self._spec)


def _generation_from(response: Any, spec: str) -> Generation:
    """Extract text, token ids and log-probs from a chat completion, tolerating missing pieces."""
    choices = getattr(response, "choices", None)
    if not choices:
        raise PolicyError(f"{spec}: malformed response with no choices")
    choice = choices[0]
    text = getattr(choice.message, "content", None)
    if not isinstance(text, str):
        raise PolicyError(f"{spec}: malformed response: message content is {type(text).__name__}, not text")
    logprobs: list[float] | None = None
    content = getattr(choice.logprobs, "content", None) if choice.logprobs is not None else None
    if content:
        values = [float(item.logprob) for item in content]
        logprobs = [v if math.isfinite(v) else -1e9 for v in values]
    extra = choice.model_extra or {}
    token_ids = extra.get("token_ids")
    if not (isinstance(token_ids, list) and all(isinstance(t, int) for t in token_ids)):
        token_ids = None
    usage: dict[str, int] = {}
    if response.usage is not None:
        usage = {"prompt_tokens": response.usage.prompt_tokens, "completion_tokens": response.usage.completion_tokens}
    return Generation(
        text=text,
        token_ids=token_ids,
        logprobs=logprobs,
        finish_reason=choice.finish_reason,
        usage=usage,
    )


def _short(exc: Exception, limit: int = 300) -> str:
    """One line of an SDK error, cut to a readable length."""
    line = " ".join(str(exc).split())
    return line if len(line) <= limit else line[: limit - 3] + "..."
