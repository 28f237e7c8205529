"""Policy backend for any OpenAI-compatible chat-completions endpoint (OpenAI, vLLM, ...).

Frames travel as base64 image parts. The main case is a self-hosted vLLM serving
Qwen2.5-VL: there we ask for the generated token ids and the per-token log-probs, which
RL needs; servers that refuse log-probs are detected once and then asked without them.

Token ids are taken, in this order of preference, from:

1. ``choice.token_ids`` (vLLM >= 0.10.2 with ``return_token_ids``): the sampler's own ids;
2. the log-prob entries' ``token`` strings when they read ``token_id:N`` (older vLLM with
   ``return_tokens_as_token_ids``, which we request alongside): exact as well;
3. the answer text re-tokenised with a local tokenizer, when the policy was given one
   (``tokenizer=PATH_OR_HUB_ID``; plus ``<|im_end|>`` unless the answer was cut). These ids
   are a guess at what was sampled, so the server's log-probs are kept only when their
   count matches, and the generation is marked ``logprobs_approximate``: GRPO refuses it,
   rejection-sampling fine-tuning (RFT) can use it.

Without any of these there are no ids; log-probs the server sent are kept as given and
marked approximate (they belong to tokens nobody recorded). ``Generation.token_source``
says which case applied, and the trajectory records it per turn.

Retries with backoff on 429/5xx/timeouts are the SDK's own;
malformed 200 answers are retried with tenacity. The graph uses the async client, so one
process keeps many queries in flight. The API key comes from the environment and is
never recorded.
"""

from __future__ import annotations

import asyncio
import math
import os
import re
import weakref
from collections.abc import AsyncIterator, Sequence
from typing import TYPE_CHECKING, Any

from revseg.errors import MalformedResponseError, ModelLoadError, PolicyError, SpecError
from revseg.policies.base import Generation, Message
from revseg.policies.images import EncodedImageCache, image_base64
from revseg.policies.tokens import answer_token_ids
from revseg.policies.wire import wire_messages
from revseg.settings import SamplingParams
from revseg.trajectory import BoxConvention, PolicyInfo, TokenSource

if TYPE_CHECKING:
    import openai
    from PIL.Image import Image

_BOX_CONVENTIONS: tuple[BoxConvention, ...] = ("absolute", "norm1000")
# Requests go through the client's ``post`` (the SDK's documented way to send a body as is),
# not ``chat.completions.create``: create walks every message part through its type-driven
# transform (about 10 ms of event-loop time per 17-image request, for plain dicts that need
# none), then ``json.dumps`` the ~5 MB body (20 ms; orjson takes 5). Retries, timeouts,
# auth and response parsing are the same client machinery.
_PATH = "/chat/completions"
_OPTIONS: openai.RequestOptions = {"security": {"bearer_auth": True}}
# vLLM's spelling of a token when asked for ``return_tokens_as_token_ids``.
_TOKEN_ID = re.compile(r"token_id:(\d+)")
# A tokenizer needs only these files of a hub checkpoint, not its weights.
_TOKENIZER_FILES = ["*.json", "*.txt", "*.model", "*.tiktoken"]


def encode_image(image: Image, image_format: str = "png", cache: EncodedImageCache | None = None) -> str:
    """Return an image as a ``data:`` URL; PNG keeps the pixels the graph resized exactly."""
    data, mime = cache.base64(image, image_format) if cache is not None else image_base64(image, image_format)
    return f"data:{mime};base64,{data}"


def to_openai_messages(
    messages: Sequence[Message], image_format: str = "png", cache: EncodedImageCache | None = None
) -> list[dict[str, Any]]:
    """Convert our messages to chat-completions messages (image parts before text, as sent)."""
    return wire_messages(
        messages,
        lambda part: {"type": "image_url", "image_url": {"url": encode_image(part.image, image_format, cache)}},
    )


class OpenAIPolicy:
    """A chat model behind an OpenAI-compatible endpoint.

    Faults are retried in two layers. The SDK's own machinery (``max_retries``) retries
    timeouts, dropped connections, 408/409/429 and 5xx with exponential backoff, honouring
    ``Retry-After``. A 200 that is not a completion (truncated JSON, an HTML page, no
    choices) is not an HTTP fault to the SDK; tenacity retries those ``malformed_retries``
    times with jittered backoff from ``retry_backoff_s``. What still fails becomes a
    PolicyError, which the graph records as the query's ``policy_error`` status.

    Encoded images are kept by content (``image_cache_mb``), so turn 2 and the queries
    that share a video do not encode the same frames again.

    ``tokenizer`` (a local folder or hub id of the served model's tokenizer, or a loaded
    tokenizer) lets a server that returns no token ids still give approximate ones: the
    answer re-tokenised (see the module notes).
    """

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
        malformed_retries: int = 2,
        retry_backoff_s: float = 0.5,
        logprobs: bool = True,
        image_format: str = "png",
        image_cache_mb: float = 256,
        extra_body: dict[str, Any] | None = None,
        tokenizer: str | Any | None = None,
    ) -> None:
        if box_convention not in _BOX_CONVENTIONS:
            raise SpecError(f"box convention '{box_convention}' unknown; use one of {', '.join(_BOX_CONVENTIONS)}")
        import openai

        self._model = model
        self._spec = spec or f"openai:{model}"
        self._box_convention: BoxConvention = box_convention
        self._want_logprobs = logprobs
        self._want_token_ids = True
        self._tokenizer = load_tokenizer(tokenizer) if isinstance(tokenizer, str) else tokenizer
        self._image_format = image_format
        self._images = EncodedImageCache(int(image_cache_mb * 2**20))
        self._extra_body = dict(extra_body or {})
        self._malformed_retries = malformed_retries
        self._retry_backoff_s = retry_backoff_s
        base_url = base_url or os.environ.get("OPENAI_BASE_URL")
        key = api_key or os.environ.get("OPENAI_API_KEY")
        if not key:
            if base_url is None:
                raise SpecError(
                    "openai: policy needs OPENAI_API_KEY in the environment (or --base-url for a local server)"
                )
            key = "EMPTY"  # self-hosted servers such as vLLM accept any key
        self._client_options: dict[str, Any] = {
            "api_key": key,
            "base_url": base_url,
            "timeout": timeout_s,
            "max_retries": max_retries,
        }
        self._client: openai.OpenAI = openai.OpenAI(**self._client_options)
        self._async_clients: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, _LoopClient] = (
            weakref.WeakKeyDictionary()
        )

    def __repr__(self) -> str:
        return f"OpenAIPolicy({self._spec!r})"  # never the key

    @property
    def info(self) -> PolicyInfo:
        """Identity of the served model; the endpoint URL and key are deliberately left out."""
        return PolicyInfo(spec=self._spec, backend="openai", model=self._model, box_convention=self._box_convention)

    def seen_size(self, width: int, height: int) -> tuple[int, int]:
        """The size sent; the chain's 448 and 840 are multiples of 28, which Qwen-VL servers keep."""
        return width, height

    def generate(self, messages: Sequence[Message], sampling: SamplingParams) -> Generation:
        """One chat completion; API faults after the retries become PolicyError."""
        import tenacity

        wire = to_openai_messages(messages, self._image_format, self._images)
        for attempt in tenacity.Retrying(**self._malformed_retry()):
            with attempt:
                return self._complete(wire, sampling)
        raise AssertionError("unreachable: tenacity reraises the last error")  # pragma: no cover

    async def agenerate(self, messages: Sequence[Message], sampling: SamplingParams) -> Generation:
        """One chat completion on the async client; images are encoded in a worker thread."""
        import tenacity

        wire = await asyncio.to_thread(to_openai_messages, messages, self._image_format, self._images)
        client = await self._async_client()
        async for attempt in tenacity.AsyncRetrying(**self._malformed_retry()):
            with attempt:
                return await self._acomplete(client, wire, sampling)
        raise AssertionError("unreachable: tenacity reraises the last error")  # pragma: no cover

    # ---- internals

    def _malformed_retry(self) -> dict[str, Any]:
        import tenacity

        return {
            "stop": tenacity.stop_after_attempt(self._malformed_retries + 1),
            "wait": tenacity.wait_exponential(multiplier=self._retry_backoff_s, max=8.0)
            + tenacity.wait_random(0, self._retry_backoff_s),
            "retry": tenacity.retry_if_exception_type(MalformedResponseError),
            "reraise": True,
        }

    def _request(self, wire: list[dict[str, Any]], sampling: SamplingParams) -> dict[str, Any]:
        """The request body, server extensions (``top_k``, vLLM's token-id switches, ``extra_body``) merged in."""
        request: dict[str, Any] = {
            "model": self._model,
            "messages": wire,
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
        if self._want_logprobs and self._want_token_ids:
            extra.setdefault("return_token_ids", True)  # vLLM >= 0.10.2: choice.token_ids
            extra.setdefault("return_tokens_as_token_ids", True)  # older vLLM: "token_id:N" log-prob tokens
        return {**request, **extra}

    def _complete(self, wire: list[dict[str, Any]], sampling: SamplingParams) -> Generation:
        import orjson
        from openai.types.chat import ChatCompletion

        while True:
            asked = (self._want_logprobs, self._want_token_ids)
            try:
                body = orjson.dumps(self._request(wire, sampling))
                response = self._client.post(_PATH, content=body, cast_to=ChatCompletion, options=_OPTIONS)
                return _generation_from(response, self._spec, self._tokenizer)
            except Exception as exc:  # noqa: BLE001 - sorted into retry, fallback or PolicyError below
                self._handle(exc, *asked)

    async def _acomplete(
        self, client: openai.AsyncOpenAI, wire: list[dict[str, Any]], sampling: SamplingParams
    ) -> Generation:
        import orjson
        from openai.types.chat import ChatCompletion

        while True:
            asked = (self._want_logprobs, self._want_token_ids)
            try:
                body = orjson.dumps(self._request(wire, sampling))
                response = await client.post(_PATH, content=body, cast_to=ChatCompletion, options=_OPTIONS)
                return _generation_from(response, self._spec, self._tokenizer)
            except Exception as exc:  # noqa: BLE001 - sorted into retry, fallback or PolicyError below
                self._handle(exc, *asked)

    def _handle(self, exc: Exception, asked_logprobs: bool, asked_token_ids: bool) -> None:
        """Return to ask again without log-probs (or token-id switches); otherwise raise the PolicyError ``exc`` is."""
        import openai

        if isinstance(exc, PolicyError):
            raise exc
        if isinstance(exc, openai.BadRequestError):
            message = str(exc).lower()
            if asked_logprobs and asked_token_ids and "return_token" in message:
                self._want_token_ids = False  # a server that rejects vLLM's extensions: stop sending them
                return
            if asked_logprobs and "logprob" in message:
                self._want_logprobs = False  # this server does not offer log-probs: stop asking
                return
            raise PolicyError(f"{self._spec}: request rejected: {_short(exc)}") from exc
        if isinstance(exc, openai.APIResponseValidationError | ValueError):
            # A 200 whose body is not a completion (cut JSON, say); the SDK does not retry these.
            raise MalformedResponseError(f"{self._spec}: malformed response: {_short(exc)}") from exc
        if isinstance(exc, openai.APIError):
            raise PolicyError(f"{self._spec}: {type(exc).__name__}: {_short(exc)}") from exc
        raise exc

    async def _async_client(self) -> openai.AsyncOpenAI:
        """This event loop's client: httpx connections belong to the loop that opened them."""
        loop = asyncio.get_running_loop()
        entry = self._async_clients.get(loop)
        if entry is None:
            entry = _LoopClient(self._client_options)
            self._async_clients[loop] = entry
            await entry.closer.__anext__()
        return entry.client


class _LoopClient:
    """An async client and a suspended async generator that closes it when its loop shuts down.

    ``asyncio.run`` closes every live async generator before closing the loop
    (``loop.shutdown_asyncgens``), so the connections are closed on the loop that owns them
    instead of being left for a garbage collector running under some later loop.
    """

    def __init__(self, options: dict[str, Any]) -> None:
        import openai

        self.client = openai.AsyncOpenAI(**options, http_client=openai.DefaultAsyncHttpxClient())
        self.closer = self._close_at_shutdown()

    async def _close_at_shutdown(self) -> AsyncIterator[None]:
        try:
            yield
        finally:
            await self.client.close()


def load_tokenizer(ref: str) -> Any:
    """The tokenizer in a local folder or hub checkpoint (tokenizer files only; no weights are fetched)."""
    from revseg.hub import resolve_model_dir

    path = resolve_model_dir(
        ref, what="tokenizer", hint="--tokenizer /path/to/the/served/model", allow_patterns=_TOKENIZER_FILES
    )
    from transformers import AutoTokenizer

    try:
        return AutoTokenizer.from_pretrained(path)
    except Exception as exc:  # transformers raises OSError, ValueError, KeyError...
        raise ModelLoadError(f"could not load a tokenizer from {path}: {type(exc).__name__}: {exc}") from exc


def _generation_from(response: Any, spec: str, tokenizer: Any = None) -> Generation:
    """Extract text, token ids and log-probs from a chat completion, tolerating missing pieces."""
    if isinstance(response, str | bytes):
        # The SDK hands back the raw body when a 200 is not JSON (an HTML error page from a proxy, say).
        raise MalformedResponseError(f"{spec}: malformed response: not JSON but {_short(ValueError(response), 80)}")
    choices = getattr(response, "choices", None)
    if not choices:
        raise MalformedResponseError(f"{spec}: malformed response with no choices")
    choice = choices[0]
    text = getattr(choice.message, "content", None)
    if not isinstance(text, str):
        raise MalformedResponseError(f"{spec}: malformed response: message content is {type(text).__name__}, not text")
    logprobs: list[float] | None = None
    content = getattr(choice.logprobs, "content", None) if choice.logprobs is not None else None
    if content:
        values = [float(item.logprob) for item in content]
        logprobs = [v if math.isfinite(v) else -1e9 for v in values]
    token_ids, source = _reported_ids(choice, content)
    approximate = False
    if token_ids is None and tokenizer is not None:
        token_ids = answer_token_ids(text, tokenizer, closed=choice.finish_reason != "length")
        source, approximate = "retokenised", True
        if logprobs is not None and len(logprobs) != len(token_ids):
            logprobs = None  # they belong to another tokenisation: no way to pair them with these ids
    elif token_ids is None:
        approximate = logprobs is not None  # log-probs of tokens nobody recorded
    usage: dict[str, int] = {}
    if response.usage is not None:
        usage = {"prompt_tokens": response.usage.prompt_tokens, "completion_tokens": response.usage.completion_tokens}
    return Generation(
        text=text,
        token_ids=token_ids,
        logprobs=logprobs,
        logprobs_approximate=approximate,
        token_source=source,
        finish_reason=choice.finish_reason,
        usage=usage,
    )


def _reported_ids(choice: Any, content: Any) -> tuple[list[int] | None, TokenSource | None]:
    """The ids the server reported: ``choice.token_ids``, else ``token_id:N`` log-prob tokens, else none."""
    token_ids = (choice.model_extra or {}).get("token_ids")
    if isinstance(token_ids, list) and all(isinstance(t, int) for t in token_ids):
        return token_ids, "generated"
    if not content:
        return None, None
    ids = []
    for item in content:
        match = _TOKEN_ID.fullmatch(getattr(item, "token", None) or "")
        if match is None:
            return None, None
        ids.append(int(match.group(1)))
    return ids, "logprob_tokens"


def _short(exc: Exception, limit: int = 300) -> str:
    """One line of an SDK error, cut to a readable length."""
    line = " ".join(str(exc).split())
    return line if len(line) <= limit else line[: limit - 3] + "..."
