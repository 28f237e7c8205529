"""A small local server that speaks the OpenAI chat-completions protocol, for tests.

It lets the real ``openai`` client, graph, parsers, tracker and writers run end to end
with deterministic answers: a *responder* function sees each request (messages with
their image parts) and returns the assistant text (or a whole assistant message, for
tool calls). Responses carry per-token log-probs and vLLM-style ``token_ids`` when the
request asks for them, so RL code paths run too. Loopback only; the server stops with
its context manager.

How the server splits an answer into tokens is a function (:data:`Tokenize`): four
characters a token by default, or a real tokenizer's ids (:func:`tokenizer_tokens`) so that
client-side re-tokenisation can be checked against it. Servers of other vintages are a
keyword away: ``token_ids=False`` ignores ``return_token_ids`` (vLLM before 0.10.2), and
``token_id_strings=True`` honours ``return_tokens_as_token_ids`` by spelling each log-prob
entry's token ``token_id:N``, as vLLM does.

Faults a real endpoint has are injected by raising :class:`ChatServerFault` from a
responder: HTTP errors (429 with ``Retry-After``, 500, ...), replies slower than the
client's timeout, dropped connections, and 200 answers that are not completions
(truncated JSON, the wrong content type, no choices). :func:`inject_faults` wraps a
responder with a deterministic schedule, and ``latency_s`` delays every reply.
Run ``python -m revseg.testing.chat_server --latency 0.5`` for a standalone server.

``strict=True`` makes it a plain OpenAI-compatible server: a request with any field
outside :data:`PLAIN_FIELDS` is answered 422 ``Unexpected fields in the request: {...}``
(``transformers serve``'s words; ``strict=400`` answers 400 as OpenAI's API does), so
vLLM's ``return_token_ids`` and ``top_k`` are refused.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import contextmanager, nullcontext, suppress
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Literal

import orjson

Answer = str | dict[str, Any]
Responder = Callable[[dict[str, Any]], Answer]
Tokenize = Callable[[str], list[tuple[int, str]]]
"""An answer's text -> the (token id, text piece) pairs the server "generated"; the pieces join back to the text."""
FaultKind = Literal["http", "timeout", "drop", "truncated", "wrong_content_type", "no_choices"]


class ChatServerFault(Exception):
    """Raise from a responder to answer with a fault instead of a completion.

    ``ChatServerFault(status, message, headers)`` answers with that HTTP error; the class
    methods build the other kinds of fault a real endpoint shows.
    """

    def __init__(
        self,
        status: int = 500,
        message: str = "injected fault",
        headers: dict[str, str] | None = None,
        *,
        kind: FaultKind = "http",
        delay_s: float = 0.0,
    ) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.headers = headers or {}
        self.kind = kind
        self.delay_s = delay_s

    @classmethod
    def rate_limited(cls, retry_after_s: float = 0.05) -> ChatServerFault:
        """429 Too Many Requests with a ``Retry-After`` header (seconds, fractions allowed)."""
        return cls(429, "rate limited", {"Retry-After": f"{retry_after_s:g}"})

    @classmethod
    def server_error(cls, status: int = 500) -> ChatServerFault:
        """A 5xx without any hint of when to retry."""
        return cls(status, "internal server error")

    @classmethod
    def timeout(cls, delay_s: float) -> ChatServerFault:
        """Answer normally, but only after ``delay_s`` seconds: longer than the client's timeout."""
        return cls(200, "slow", kind="timeout", delay_s=delay_s)

    @classmethod
    def dropped(cls) -> ChatServerFault:
        """Close the connection without sending a response."""
        return cls(0, "connection dropped", kind="drop")

    @classmethod
    def truncated(cls) -> ChatServerFault:
        """200 with a JSON body cut in half."""
        return cls(200, "truncated body", kind="truncated")

    @classmethod
    def wrong_content_type(cls) -> ChatServerFault:
        """200 with an HTML page instead of JSON (a proxy's error page, say)."""
        return cls(200, "html instead of json", kind="wrong_content_type")

    @classmethod
    def no_choices(cls) -> ChatServerFault:
        """200 with well-formed JSON that holds no choices."""
        return cls(200, "no choices", kind="no_choices")


def count_images(message: dict[str, Any]) -> int:
    """Number of image parts in one chat message."""
    content = message.get("content")
    if not isinstance(content, list):
        return 0
    return sum(1 for part in content if isinstance(part, dict) and part.get("type") == "image_url")


def paper_responder(
    keyframe: int = 5, box: tuple[float, ...] = (100, 150, 500, 700), label: str = "target"
) -> Responder:
    """Answer turn 1 with a keyframe and turn 2 with a box, as a trained ReVSeg policy would.

    Turn 1 is recognised as the request whose last user message carries several images;
    turn 2 carries exactly one (the keyframe).
    """

    def respond(request: dict[str, Any]) -> str:
        last = request["messages"][-1]
        if count_images(last) > 1:
            return (
                "<think>The query asks for the moving object; it is largest and sharp in frame "
                f"{keyframe}.</think> <answer>[{{'frame_idx': {keyframe}, "
                f"'object description': 'the {label} in the centre of the frame'}}]</answer>"
            )
        x1, y1, x2, y2 = box
        return f'```json\n[{{"bbox_2d": [{x1:g}, {y1:g}, {x2:g}, {y2:g}], "label": "{label}"}}]\n```'

    return respond


def request_key(request: dict[str, Any]) -> str:
    """A digest of a request's conversation: retries of one request share it."""
    return hashlib.sha1(json.dumps(request.get("messages"), sort_keys=True).encode()).hexdigest()


def inject_faults(responder: Responder, schedule: Callable[[dict[str, Any], int], ChatServerFault | None]) -> Responder:
    """Wrap ``responder`` so that ``schedule(request, attempt)`` may answer with a fault instead.

    ``attempt`` counts earlier requests with the same conversation (0 the first time), so a
    schedule can fail a request once and let its retry through, or fail it every time. The
    schedule decides from the request alone, so the faults do not depend on arrival order.
    """
    seen: Counter[str] = Counter()
    lock = threading.Lock()

    def respond(request: dict[str, Any]) -> Answer:
        key = request_key(request)
        with lock:
            attempt = seen[key]
            seen[key] += 1
        fault = schedule(request, attempt)
        if fault is not None:
            raise fault
        return responder(request)

    return respond


# The chat-completions request fields of OpenAI's API (what a strict server accepts).
PLAIN_FIELDS = frozenset(
    {
        "model", "messages", "audio", "frequency_penalty", "function_call", "functions", "logit_bias", "logprobs",
        "max_completion_tokens", "max_tokens", "metadata", "modalities", "n", "parallel_tool_calls", "prediction",
        "presence_penalty", "reasoning_effort", "response_format", "seed", "service_tier", "stop", "store",
        "stream", "stream_options", "temperature", "tool_choice", "tools", "top_logprobs", "top_p", "user",
    }
)  # fmt: skip


def unexpected_fields(request: dict[str, Any]) -> set[str]:
    """The fields of ``request`` a plain OpenAI-compatible server does not know."""
    return set(request) - PLAIN_FIELDS


@dataclass
class ChatServerLog:
    """What the server received, for assertions."""

    requests: list[dict[str, Any]] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)


def four_char_tokens(text: str) -> list[tuple[int, str]]:
    """The default :data:`Tokenize`: four characters a token, ids from the characters (no vocabulary behind them)."""
    pieces = [text[i : i + 4] for i in range(0, len(text), 4)] or [""]
    return [(1000 + (sum(map(ord, piece)) % 5000), piece) for piece in pieces]


def tokenizer_tokens(tokenizer: Any, end_token: str | None = "<|im_end|>") -> Tokenize:
    """A :data:`Tokenize` that writes answers in ``tokenizer``'s ids, closed by ``end_token`` (as vLLM reports a stop).

    ``tokenizer`` is a transformers tokenizer (``encode``, ``decode``, ``convert_tokens_to_ids``).
    A budget that cuts the answer cuts the end token first, as a real server's would.
    """
    end = None if end_token is None else int(tokenizer.convert_tokens_to_ids(end_token))

    def tokenize(text: str) -> list[tuple[int, str]]:
        ids = tokenizer.encode(text, add_special_tokens=False)
        pairs = [(int(i), tokenizer.decode([i])) for i in ids]
        return pairs if end is None else [*pairs, (end, "")]

    return tokenize


def _completion(
    request: dict[str, Any],
    answer: Answer,
    tokenize: Tokenize = four_char_tokens,
    *,
    token_ids: bool = True,
    token_id_strings: bool = False,
) -> dict[str, Any]:
    message: dict[str, Any] = (
        {"role": "assistant", "content": answer} if isinstance(answer, str) else {"role": "assistant", **answer}
    )
    text = message.get("content") or ""
    tokens = tokenize(text)
    budget = request.get("max_tokens") or request.get("max_completion_tokens")
    finish = "tool_calls" if message.get("tool_calls") else "stop"
    if isinstance(budget, int) and len(tokens) > budget:  # a max_tokens budget cuts the answer like a real server
        tokens, finish = tokens[:budget], "length"
        message["content"] = "".join(piece for _, piece in tokens)
    choice: dict[str, Any] = {"index": 0, "message": message, "finish_reason": finish, "logprobs": None}
    as_ids = token_id_strings and bool(request.get("return_tokens_as_token_ids"))
    if request.get("logprobs"):
        choice["logprobs"] = {
            "content": [
                {
                    "token": f"token_id:{token}" if as_ids else piece,
                    "logprob": -0.01 * (i % 7),
                    "bytes": None,
                    "top_logprobs": [],
                }
                for i, (token, piece) in enumerate(tokens)
            ]
        }
    if token_ids and request.get("return_token_ids"):
        choice["token_ids"] = [token for token, _ in tokens]
    return {
        "id": "chatcmpl-local",
        "object": "chat.completion",
        "created": 0,
        "model": request.get("model", "local"),
        "choices": [choice],
        "usage": {"prompt_tokens": 100, "completion_tokens": len(tokens), "total_tokens": 100 + len(tokens)},
    }


@contextmanager
def chat_server(
    responder: Responder,
    log: ChatServerLog | None = None,
    *,
    latency_s: float = 0.0,
    tokenize: Tokenize = four_char_tokens,
    token_ids: bool = True,
    token_id_strings: bool = False,
    strict: bool | Literal[400, 422] = False,
    max_concurrent: int | None = None,
) -> Iterator[str]:
    """Serve ``responder`` on 127.0.0.1 at a free port; yields the ``base_url`` (ending in /v1).

    Every reply waits ``latency_s`` first (requests are served concurrently, one thread each;
    ``max_concurrent`` caps how many are worked on at once, like a replica's batch size).
    ``strict`` refuses fields outside :data:`PLAIN_FIELDS` (422, or the status given).
    ``tokenize`` splits answers into tokens; ``token_ids`` honours ``return_token_ids``;
    ``token_id_strings`` honours ``return_tokens_as_token_ids`` (log-prob tokens ``token_id:N``).
    """
    record = log if log is not None else ChatServerLog()
    refusal = 422 if strict is True else int(strict)
    slots = threading.BoundedSemaphore(max_concurrent) if max_concurrent else None

    def completion(request: dict[str, Any], answer: Answer) -> dict[str, Any]:
        return _completion(request, answer, tokenize, token_ids=token_ids, token_id_strings=token_id_strings)

    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"  # keep-alive, as real servers and the SDK's pool expect
        disable_nagle_algorithm = True  # headers and body go out in two writes: without it, 40 ms delayed-ACK stalls

        def do_POST(self) -> None:
            length = int(self.headers.get("Content-Length", "0"))
            request = orjson.loads(self.rfile.read(length) or b"{}")  # bodies of many images: 4x json's speed
            with record.lock:
                record.requests.append(request)
            if not self.path.rstrip("/").endswith("/chat/completions"):
                self._send(404, {"error": {"message": f"no route {self.path}"}})
                return
            unknown = unexpected_fields(request) if refusal else set()
            if unknown:
                message = f"Unexpected fields in the request: {unknown}"  # transformers serve's words and body
                self._send(refusal, {"detail": message} if refusal == 422 else {"error": {"message": message}})
                return
            with slots or nullcontext():
                if latency_s:
                    time.sleep(latency_s)
                try:
                    answer = responder(request)
                except ChatServerFault as fault:
                    self._fault(fault, request)
                    return
            self._send(200, completion(request, answer))

        def _fault(self, fault: ChatServerFault, request: dict[str, Any]) -> None:
            if fault.kind == "http":
                self._send(fault.status, {"error": {"message": fault.message, "code": fault.status}}, fault.headers)
            elif fault.kind == "timeout":
                time.sleep(fault.delay_s)
                self._send(200, completion(request, "too late"))
            elif fault.kind == "drop":
                self.close_connection = True
            elif fault.kind == "truncated":
                body = json.dumps(completion(request, "cut short")).encode()
                self._send_bytes(200, body[: len(body) // 2], "application/json")
            elif fault.kind == "wrong_content_type":
                self._send_bytes(200, b"<html><body>502 Bad Gateway</body></html>", "text/html")
            elif fault.kind == "no_choices":
                self._send(200, {**completion(request, ""), "choices": []})

        def _send(self, code: int, body: dict[str, Any], headers: dict[str, str] | None = None) -> None:
            self._send_bytes(code, json.dumps(body).encode(), "application/json", headers)

        def _send_bytes(self, code: int, data: bytes, content_type: str, headers: dict[str, str] | None = None) -> None:
            try:
                self.send_response(code)
                for name, value in (headers or {}).items():
                    self.send_header(name, value)
                self.send_header("Content-Type", content_type)
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)
            except (BrokenPipeError, ConnectionResetError):
                self.close_connection = True  # the client gave up (its timeout): nothing to answer

        def log_message(self, format: str, *args: Any) -> None:  # silence per-request stderr lines
            pass

    class Server(ThreadingHTTPServer):
        request_queue_size = 1024  # many clients connect at once; the default backlog of 5 drops SYNs

    server = Server(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/v1"
    finally:
        server.shutdown()
        server.server_close()


def main(argv: list[str] | None = None) -> None:
    """Serve :func:`paper_responder` until interrupted, printing the base URL on the first line."""
    parser = argparse.ArgumentParser(description="A local chat-completions server answering in the paper's format.")
    parser.add_argument("--latency", type=float, default=0.0, help="Seconds every reply waits.")
    parser.add_argument("--keyframe", type=int, default=5, help="Sampled-frame index turn 1 answers.")
    parser.add_argument("--no-token-ids", action="store_true", help="Ignore return_token_ids (vLLM before 0.10.2).")
    parser.add_argument(
        "--token-id-strings", action="store_true", help="Honour return_tokens_as_token_ids ('token_id:N' tokens)."
    )
    parser.add_argument("--strict", action="store_true", help="Answer 422 on fields OpenAI's API does not take.")
    parser.add_argument("--max-concurrent", type=int, default=None, help="Requests worked on at once.")
    args = parser.parse_args(argv)
    with chat_server(
        paper_responder(keyframe=args.keyframe),
        latency_s=args.latency,
        token_ids=not args.no_token_ids,
        token_id_strings=args.token_id_strings,
        strict=args.strict,
        max_concurrent=args.max_concurrent,
    ) as url:
        print(url, flush=True)
        with suppress(KeyboardInterrupt):
            threading.Event().wait()


if __name__ == "__main__":
    main()
