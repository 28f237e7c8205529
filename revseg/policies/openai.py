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
import dataclasses
import math
import os
import re
import threading
import time
import weakref
from collections.abc import AsyncIterator, Callable, Sequence
from typing import TYPE_CHECKING, Any

from revseg.errors import MalformedResponseError, ModelLoadError, PolicyError, SpecError
from revseg.policies.base import Generation, Message
from revseg.policies.images import EncodedImageCache, image_base64, wire_encoding
from revseg.policies.tokens import answer_token_ids
from revseg.policies.tool_calls import LOOK_AGAIN_TOOLS, call_text, first_call, with_tool_calls
from revseg.policies.wire import wire_messages
from revseg.settings import SamplingParams
from revseg.trajectory import BoxConvention, PolicyInfo, ServerExchange, TokenSource

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
    """A chat model behind one or more OpenAI-compatible endpoints.

    Faults are retried in two layers. The SDK's own machinery (``max_retries``) retries
    timeouts, dropped connections, 408/409/429 and 5xx with exponential backoff, honouring
    ``Retry-After``. A 200 that is not a completion (truncated JSON, an HTML page, no
    choices) is not an HTTP fault to the SDK; tenacity retries those ``malformed_retries``
    times with jittered backoff from ``retry_backoff_s``. What still fails becomes a
    PolicyError, which the graph records as the query's ``policy_error`` status.

    **Server extensions.** Besides the plain API's fields, a request asks for ``logprobs``,
    vLLM's ``return_token_ids`` and ``return_tokens_as_token_ids``, ``seed`` and ``top_k``
    when the sampling parameters set them. A strict server (OpenAI's API, ``transformers
    serve``) answers 400/422 naming the fields it does not take; the request is sent again
    at once without exactly the fields the error names, and that endpoint is not sent them
    again. Each turn's :class:`~revseg.trajectory.ServerExchange` records what was asked,
    what was refused and what came back; log-probs, ids or seeds a server does not give
    are recorded as absent, never invented. ``extra_body`` adds fields (and is never
    dropped), but may not replace ``model`` or ``messages``.

    **Several endpoints.** ``base_url`` may name several replicas of one served model (a
    list, or URLs separated by commas). Each request goes to the endpoint with the fewest
    requests in flight; one whose request fails after the SDK's retries (connection
    errors, timeouts, 5xx, 429) is rested for ``endpoint_cooldown_s`` and the request goes
    to the next endpoint; only when every endpoint failed it is a PolicyError.

    Encoded images are kept by content (``image_cache_mb``), so turn 2 and the queries
    that share a video do not encode the same frames again.

    ``tokenizer`` (a local folder or hub id of the served model's tokenizer, or a loaded
    tokenizer) lets a server that returns no token ids still give approximate ones: the
    answer re-tokenised (see the module notes).

    ``tool_calls=True`` offers the look_again actions as native functions (``tools=``,
    :data:`revseg.policies.tool_calls.LOOK_AGAIN_TOOLS`). A call the model makes is recorded as
    the same JSON-in-text answer a text reply would be (:func:`~revseg.policies.tool_calls.call_text`),
    and sent back in the history as the call it was; ``exchange.returned`` lists ``tool_calls``.
    """

    def __init__(
        self,
        model: str,
        *,
        spec: str | None = None,
        base_url: str | Sequence[str] | None = None,
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
        endpoint_cooldown_s: float = 30.0,
        tool_calls: bool = False,
    ) -> None:
        if box_convention not in _BOX_CONVENTIONS:
            raise SpecError(f"box convention '{box_convention}' unknown; use one of {', '.join(_BOX_CONVENTIONS)}")
        clash = sorted(set(extra_body or {}) & _OWN_FIELDS)
        if clash:
            raise SpecError(f"extra_body may not set {', '.join(clash)}: the policy sends them from its own settings")
        self._model = model
        self._spec = spec or f"openai:{model}"
        self._box_convention: BoxConvention = box_convention
        self._want_logprobs = logprobs
        self._tokenizer = load_tokenizer(tokenizer) if isinstance(tokenizer, str) else tokenizer
        self._image_format = image_format
        self._images = EncodedImageCache(int(image_cache_mb * 2**20))
        self._extra_body = dict(extra_body or {})
        self._malformed_retries = malformed_retries
        self._retry_backoff_s = retry_backoff_s
        self._cooldown_s = endpoint_cooldown_s
        self._tool_calls = tool_calls
        urls = _base_urls(base_url if base_url is not None else os.environ.get("OPENAI_BASE_URL"))
        key = api_key or os.environ.get("OPENAI_API_KEY")
        if not key:
            if not urls:
                raise SpecError(
                    "openai: policy needs OPENAI_API_KEY in the environment (or --base-url for a local server)"
                )
            key = "EMPTY"  # self-hosted servers such as vLLM accept any key
        options: dict[str, Any] = {"api_key": key, "timeout": timeout_s, "max_retries": max_retries}
        targets: list[str | None] = [*urls] or [None]  # None: the SDK's default, OpenAI's API
        self._endpoints = [_Endpoint({**options, "base_url": url}) for url in targets]
        self._lock = threading.Lock()
        self._turn = 0

    def __repr__(self) -> str:
        return f"OpenAIPolicy({self._spec!r})"  # never the key

    @property
    def info(self) -> PolicyInfo:
        """Identity of the served model; the endpoint URLs and key are deliberately left out."""
        return PolicyInfo(
            spec=self._spec,
            backend="openai",
            model=self._model,
            box_convention=self._box_convention,
            image_encoding=wire_encoding(self._image_format),
        )

    @property
    def endpoint_requests(self) -> list[int]:
        """Requests each endpoint has answered, in the order given (for logs and tests)."""
        return [endpoint.answered for endpoint in self._endpoints]

    def seen_size(self, width: int, height: int) -> tuple[int, int]:
        """The size sent; the chain's 448 and 840 are multiples of 28, which Qwen-VL servers keep."""
        return width, height

    def generate(self, messages: Sequence[Message], sampling: SamplingParams) -> Generation:
        """One chat completion; API faults after the retries become PolicyError."""
        import tenacity

        wire = self._wire(messages)
        for attempt in tenacity.Retrying(**self._malformed_retry()):
            with attempt:
                return self._over_endpoints(lambda endpoint: self._complete(endpoint, wire, sampling))
        raise AssertionError("unreachable: tenacity reraises the last error")  # pragma: no cover

    async def agenerate(self, messages: Sequence[Message], sampling: SamplingParams) -> Generation:
        """One chat completion on the async client; images are encoded in a worker thread."""
        import tenacity

        wire = await asyncio.to_thread(self._wire, messages)
        async for attempt in tenacity.AsyncRetrying(**self._malformed_retry()):
            with attempt:
                tried: list[_Endpoint] = []
                while True:
                    endpoint = self._pick(tried)
                    try:
                        return await self._acomplete(endpoint, wire, sampling)
                    except _EndpointDown as down:
                        self._failed(endpoint, tried, down)
                    finally:
                        with self._lock:
                            endpoint.in_flight -= 1
        raise AssertionError("unreachable: tenacity reraises the last error")  # pragma: no cover

    # ---- internals

    def _wire(self, messages: Sequence[Message]) -> list[dict[str, Any]]:
        wire = to_openai_messages(messages, self._image_format, self._images)
        return with_tool_calls(wire) if self._tool_calls else wire

    def _malformed_retry(self) -> dict[str, Any]:
        import tenacity

        return {
            "stop": tenacity.stop_after_attempt(self._malformed_retries + 1),
            "wait": tenacity.wait_exponential(multiplier=self._retry_backoff_s, max=8.0)
            + tenacity.wait_random(0, self._retry_backoff_s),
            "retry": tenacity.retry_if_exception_type(MalformedResponseError),
            "reraise": True,
        }

    def _over_endpoints(self, call: Callable[[_Endpoint], Generation]) -> Generation:
        tried: list[_Endpoint] = []
        while True:
            endpoint = self._pick(tried)
            try:
                return call(endpoint)
            except _EndpointDown as down:
                self._failed(endpoint, tried, down)
            finally:
                with self._lock:
                    endpoint.in_flight -= 1

    def _pick(self, tried: list[_Endpoint]) -> _Endpoint:
        """The untried endpoint with the fewest requests in flight, rested ones last; taken (in flight +1)."""
        now = time.monotonic()
        with self._lock:
            self._turn += 1
            n = len(self._endpoints)
            order = [self._endpoints[(self._turn + i) % n] for i in range(n)]  # ties go round the ring
            candidates = [e for e in order if e not in tried]
            best = min(candidates, key=lambda e: (e.rested_until > now, e.in_flight))
            best.in_flight += 1
            return best

    def _failed(self, endpoint: _Endpoint, tried: list[_Endpoint], down: _EndpointDown) -> None:
        """Rest ``endpoint``; raise the PolicyError when no endpoint is left to try."""
        endpoint.rested_until = time.monotonic() + self._cooldown_s
        tried.append(endpoint)
        if len(tried) == len(self._endpoints):
            where = "" if len(tried) == 1 else f" (all {len(tried)} endpoints failed)"
            raise PolicyError(f"{down.args[0]}{where}") from down.__cause__

    def _request(self, endpoint: _Endpoint, wire: list[dict[str, Any]], sampling: SamplingParams) -> dict[str, Any]:
        """The request body: the plain API's fields, then the optional ones this endpoint has not refused.

        ``extra_body`` may add fields but never replace ``model`` or ``messages`` (the constructor
        refuses those keys); the optional fields a server refused are left out from then on.
        """
        request: dict[str, Any] = {
            "model": self._model,
            "messages": wire,
            "temperature": sampling.temperature,
            "top_p": sampling.top_p,
            "max_tokens": sampling.max_new_tokens,
        }
        optional: dict[str, Any] = {}
        if sampling.seed is not None:
            optional["seed"] = sampling.seed
        if sampling.top_k is not None:
            optional["top_k"] = sampling.top_k  # vLLM and others; not OpenAI's API
        if self._want_logprobs:
            optional["logprobs"] = True
            optional["return_token_ids"] = True  # vLLM >= 0.10.2: choice.token_ids
            optional["return_tokens_as_token_ids"] = True  # older vLLM: "token_id:N" log-prob tokens
        if self._tool_calls:
            request["tools"] = LOOK_AGAIN_TOOLS
        request.update({k: v for k, v in optional.items() if k not in endpoint.refused})
        request.update(self._extra_body)
        return request

    def _complete(self, endpoint: _Endpoint, wire: list[dict[str, Any]], sampling: SamplingParams) -> Generation:
        import orjson
        from openai.types.chat import ChatCompletion

        while True:
            request = self._request(endpoint, wire, sampling)
            try:
                response = endpoint.client.post(
                    _PATH, content=orjson.dumps(request), cast_to=ChatCompletion, options=_OPTIONS
                )
                return self._answer(endpoint, request, response)
            except Exception as exc:  # noqa: BLE001 - sorted into retry, fallback or PolicyError below
                self._handle(endpoint, request, exc)

    async def _acomplete(self, endpoint: _Endpoint, wire: list[dict[str, Any]], sampling: SamplingParams) -> Generation:
        import orjson
        from openai.types.chat import ChatCompletion

        client = await endpoint.async_client()
        while True:
            request = self._request(endpoint, wire, sampling)
            try:
                response = await client.post(
                    _PATH, content=orjson.dumps(request), cast_to=ChatCompletion, options=_OPTIONS
                )
                return self._answer(endpoint, request, response)
            except Exception as exc:  # noqa: BLE001 - sorted into retry, fallback or PolicyError below
                self._handle(endpoint, request, exc)

    def _answer(self, endpoint: _Endpoint, request: dict[str, Any], response: Any) -> Generation:
        generation = _generation_from(response, self._spec, self._tokenizer)
        endpoint.answered += 1
        asked = sorted(k for k in request if k in _EXTENSIONS)
        choice = response.choices[0]  # _generation_from checked there is one
        returned = []  # what the server sent, not what re-tokenising added
        if getattr(choice.logprobs, "content", None):
            returned.append("logprobs")
        if generation.token_source in ("generated", "logprob_tokens"):
            returned.append("token_ids")
        if first_call(choice.message) is not None:
            returned.append("tool_calls")
        exchange = ServerExchange(asked=asked, refused=sorted(endpoint.refused), returned=returned)
        return dataclasses.replace(generation, exchange=exchange)

    def _handle(self, endpoint: _Endpoint, request: dict[str, Any], exc: Exception) -> None:
        """Return to send again without the fields a 400/422 named; otherwise raise what ``exc`` is."""
        import openai

        if isinstance(exc, PolicyError):
            raise exc
        if isinstance(exc, openai.BadRequestError | openai.UnprocessableEntityError):
            # FastAPI servers (transformers serve) say it in ``detail``, which the SDK leaves out of str(exc).
            said = f"{exc} {_body_text(exc)}"
            named = _named_fields(said, [k for k in request if k in _EXTENSIONS and k not in self._extra_body])
            if "logprobs" in named:
                named |= {"return_token_ids", "return_tokens_as_token_ids"}  # ids without log-probs: not asked
            if named:
                with self._lock:
                    endpoint.refused |= named  # this server does not take them: stop sending them there
                return
            raise PolicyError(f"{self._spec}: request rejected: {_short(ValueError(said))}") from exc
        if isinstance(exc, openai.APIResponseValidationError | ValueError):
            # A 200 whose body is not a completion (cut JSON, say); the SDK does not retry these.
            raise MalformedResponseError(f"{self._spec}: malformed response: {_short(exc)}") from exc
        if isinstance(exc, openai.APIConnectionError | openai.InternalServerError | openai.RateLimitError):
            # The SDK's retries are spent: this endpoint is down or overloaded; another may answer.
            raise _EndpointDown(f"{self._spec}: {type(exc).__name__}: {_short(exc)}") from exc
        if isinstance(exc, openai.APIError):
            raise PolicyError(f"{self._spec}: {type(exc).__name__}: {_short(exc)}") from exc
        raise exc


# The plain API's fields, which ``extra_body`` may not replace.
_OWN_FIELDS = frozenset({"model", "messages"})
# Optional fields the policy asks for and drops when a server names them in a 400/422.
_EXTENSIONS = frozenset({"logprobs", "return_token_ids", "return_tokens_as_token_ids", "seed", "top_k"})


class _EndpointDown(Exception):
    """An endpoint failed after the SDK's retries; the request may go to another."""


class _Endpoint:
    """One server: its sync client, one async client per event loop, and what it refused."""

    def __init__(self, options: dict[str, Any]) -> None:
        import openai

        self.options = options
        self.client: openai.OpenAI = openai.OpenAI(**options)
        self.async_clients: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, _LoopClient] = (
            weakref.WeakKeyDictionary()
        )
        self.refused: set[str] = set()
        self.in_flight = 0
        self.answered = 0
        self.rested_until = 0.0

    async def async_client(self) -> openai.AsyncOpenAI:
        """This event loop's client: httpx connections belong to the loop that opened them."""
        loop = asyncio.get_running_loop()
        entry = self.async_clients.get(loop)
        if entry is None:
            entry = _LoopClient(self.options)
            self.async_clients[loop] = entry
            await entry.closer.__anext__()
        return entry.client


def _base_urls(base_url: str | Sequence[str] | None) -> list[str]:
    """Endpoint URLs from one URL, URLs separated by commas, or a list."""
    if base_url is None:
        return []
    parts = base_url.split(",") if isinstance(base_url, str) else list(base_url)
    urls = [part.strip() for part in parts if part.strip()]
    if len(set(urls)) != len(urls):
        raise SpecError(f"openai: base URLs name one endpoint twice: {', '.join(urls)}")
    return urls


def _body_text(exc: Any) -> str:
    """The error response's body as text ('' when there is none to read)."""
    try:
        return str(exc.response.text)
    except Exception:  # noqa: BLE001 - a streamed or closed body: the SDK's message is all there is
        return ""


def _named_fields(message: str, candidates: Sequence[str]) -> set[str]:
    """Which of ``candidates`` an error message names (whole words: ``logprobs`` is not ``top_logprobs``)."""
    return {name for name in candidates if re.search(rf"(?<![\w]){re.escape(name)}(?![\w])", message)}


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
    call = first_call(choice.message)
    if call is not None:  # a native tool call, recorded as the JSON-in-text answer it stands for
        text = call_text(call[0], call[1], text if isinstance(text, str) else None)
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
