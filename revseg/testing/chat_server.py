"""A small local server that speaks the OpenAI chat-completions protocol, for tests.

It lets the real ``openai`` client, graph, parsers, tracker and writers run end to end
with deterministic answers: a *responder* function sees each request (messages with
their image parts) and returns the assistant text. Responses carry per-token log-probs
and vLLM-style ``token_ids`` when the request asks for them, so RL code paths run too.
Loopback only; the server stops with its context manager.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

Responder = Callable[[dict[str, Any]], str]


class ChatServerFault(Exception):
    """Raise from a responder to answer with an HTTP error instead of a completion."""

    def __init__(self, status: int, message: str = "injected fault", headers: dict[str, str] | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.headers = headers or {}


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


@dataclass
class ChatServerLog:
    """What the server received, for assertions."""

    requests: list[dict[str, Any]] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)


def _completion(request: dict[str, Any], text: str) -> dict[str, Any]:
    # Four characters a "token"; a max_tokens budget cuts the answer like a real server would.
    tokens = [text[i : i + 4] for i in range(0, len(text), 4)] or [""]
    budget = request.get("max_tokens") or request.get("max_completion_tokens")
    finish = "stop"
    if isinstance(budget, int) and len(tokens) > budget:
        tokens, finish = tokens[:budget], "length"
        text = "".join(tokens)
    choice: dict[str, Any] = {
        "index": 0,
        "message": {"role": "assistant", "content": text},
        "finish_reason": finish,
        "logprobs": None,
    }
    if request.get("logprobs"):
        choice["logprobs"] = {
            "content": [
                {"token": t, "logprob": -0.01 * (i % 7), "bytes": None, "top_logprobs": []}
                for i, t in enumerate(tokens)
            ]
        }
    if request.get("return_token_ids"):
        choice["token_ids"] = [1000 + (sum(map(ord, t)) % 5000) for t in tokens]
    return {
        "id": "chatcmpl-local",
        "object": "chat.completion",
        "created": 0,
        "model": request.get("model", "local"),
        "choices": [choice],
        "usage": {"prompt_tokens": 100, "completion_tokens": len(tokens), "total_tokens": 100 + len(tokens)},
    }


@contextmanager
def chat_server(responder: Responder, log: ChatServerLog | None = None) -> Iterator[str]:
    """Serve ``responder`` on 127.0.0.1 at a free port; yields the ``base_url`` (ending in /v1)."""
    record = log if log is not None else ChatServerLog()

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            length = int(self.headers.get("Content-Length", "0"))
            request = json.loads(self.rfile.read(length) or b"{}")
            with record.lock:
                record.requests.append(request)
            if not self.path.rstrip("/").endswith("/chat/completions"):
                self._send(404, {"error": {"message": f"no route {self.path}"}})
                return
            try:
                text = responder(request)
            except ChatServerFault as fault:
                self._send(fault.status, {"error": {"message": fault.message, "code": fault.status}}, fault.headers)
                return
            self._send(200, _completion(request, text))

        def _send(self, code: int, body: dict[str, Any], headers: dict[str, str] | None = None) -> None:
            data = json.dumps(body).encode()
            self.send_response(code)
            for name, value in (headers or {}).items():
                self.send_header(name, value)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def log_message(self, format: str, *args: Any) -> None:  # silence per-request stderr lines
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/v1"
    finally:
        server.shutdown()
        server.server_close()
