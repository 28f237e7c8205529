"""The local chat-completions server: latency, injected faults and tool-call answers, seen by the real SDK."""

from __future__ import annotations

import json
import time
from typing import Any

import httpx
import openai
import pytest

from revseg.testing.chat_server import ChatServerFault, ChatServerLog, chat_server, inject_faults, request_key

MESSAGES = [{"role": "user", "content": "hi"}]


CLIENT = httpx.Client()  # one client: building one per request costs more than the latency measured


def post(url: str, messages: list[dict[str, Any]] = MESSAGES, timeout: float = 5.0) -> httpx.Response:
    return CLIENT.post(f"{url}/chat/completions", json={"model": "m", "messages": messages}, timeout=timeout)


def test_latency_delays_each_reply_and_concurrent_requests_overlap() -> None:
    import concurrent.futures

    with chat_server(lambda request: "ok", latency_s=0.3) as url:
        start = time.perf_counter()
        with concurrent.futures.ThreadPoolExecutor(8) as pool:
            replies = list(pool.map(lambda _: post(url), range(8)))
        took = time.perf_counter() - start
    assert all(r.status_code == 200 for r in replies)
    assert 0.3 <= took < 2.0  # eight at once, not 8 x 0.3 s


def test_each_fault_kind_reaches_the_client_as_a_real_server_would_send_it() -> None:
    faults = {
        "rate": ChatServerFault.rate_limited(0.25),
        "boom": ChatServerFault.server_error(503),
        "cut": ChatServerFault.truncated(),
        "html": ChatServerFault.wrong_content_type(),
        "empty": ChatServerFault.no_choices(),
        "drop": ChatServerFault.dropped(),
        "slow": ChatServerFault.timeout(1.0),
    }

    def respond(request: dict[str, Any]) -> str:
        raise faults[request["messages"][0]["content"]]

    with chat_server(respond) as url:
        rate = post(url, [{"role": "user", "content": "rate"}])
        assert rate.status_code == 429 and rate.headers["Retry-After"] == "0.25"
        assert post(url, [{"role": "user", "content": "boom"}]).status_code == 503
        cut = post(url, [{"role": "user", "content": "cut"}])
        assert cut.status_code == 200 and cut.headers["Content-Type"] == "application/json"
        with pytest.raises(json.JSONDecodeError):
            cut.json()
        html = post(url, [{"role": "user", "content": "html"}])
        assert html.headers["Content-Type"] == "text/html" and html.text.startswith("<html>")
        assert post(url, [{"role": "user", "content": "empty"}]).json()["choices"] == []
        with pytest.raises(httpx.RemoteProtocolError):
            post(url, [{"role": "user", "content": "drop"}])
        with pytest.raises(httpx.ReadTimeout):
            post(url, [{"role": "user", "content": "slow"}], timeout=0.2)


def test_inject_faults_counts_attempts_per_conversation() -> None:
    log = ChatServerLog()
    seen: list[tuple[str, int]] = []

    def schedule(request: dict[str, Any], attempt: int) -> ChatServerFault | None:
        seen.append((request["messages"][0]["content"], attempt))
        return ChatServerFault.server_error() if attempt == 0 else None

    with chat_server(inject_faults(lambda request: "fine", schedule), log) as url:
        client = openai.OpenAI(api_key="x", base_url=url, max_retries=2)
        for text in ("a", "b", "a"):
            reply = client.chat.completions.create(model="m", messages=[{"role": "user", "content": text}])
            assert reply.choices[0].message.content == "fine"
    assert seen == [("a", 0), ("a", 1), ("b", 0), ("b", 1), ("a", 2)]
    assert len({request_key(r) for r in log.requests}) == 2


def test_a_responder_may_answer_with_tool_calls() -> None:
    call = {"id": "call_1", "type": "function", "function": {"name": "f", "arguments": '{"x": 1}'}}
    with chat_server(lambda request: {"content": None, "tool_calls": [call]}) as url:
        reply = openai.OpenAI(api_key="x", base_url=url).chat.completions.create(model="m", messages=MESSAGES)
    choice = reply.choices[0]
    assert choice.finish_reason == "tool_calls" and choice.message.tool_calls is not None
    assert choice.message.tool_calls[0].function.arguments == '{"x": 1}'
