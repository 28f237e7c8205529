"""The openai: backend against a local server that speaks the chat-completions protocol."""

from __future__ import annotations

import asyncio
import base64
import io
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any, Literal

import pytest
from PIL import Image

from revseg.errors import MalformedResponseError, PolicyError, SpecError
from revseg.policies import build_policy
from revseg.policies.base import ImagePart, Message, TextPart
from revseg.policies.openai import OpenAIPolicy
from revseg.settings import SamplingParams
from revseg.testing.chat_server import (
    ChatServerFault,
    ChatServerLog,
    chat_server,
    four_char_tokens,
    inject_faults,
    paper_responder,
    tokenizer_tokens,
)
from tests.policies.conformance import conformance_test


@pytest.fixture
def openai_policy() -> Iterator[OpenAIPolicy]:
    """An openai: policy talking to a local server that answers in the paper's format."""
    with chat_server(paper_responder()) as url:
        yield OpenAIPolicy("qwen2.5-vl", base_url=url)


@pytest.fixture
def openai_policy_old_vllm() -> Iterator[OpenAIPolicy]:
    """A server without ``token_ids`` that spells log-prob tokens ``token_id:N`` (vLLM before 0.10.2)."""
    with chat_server(paper_responder(), token_ids=False, token_id_strings=True) as url:
        yield OpenAIPolicy("qwen2.5-vl", base_url=url)


@pytest.fixture
def openai_policy_retokenising(tiny_tokenizer: Any, tiny_qwen25_dir: Path) -> Iterator[OpenAIPolicy]:
    """A server that returns text and log-probs only, and a policy given the served model's tokenizer."""
    with chat_server(paper_responder(), tokenize=tokenizer_tokens(tiny_tokenizer), token_ids=False) as url:
        yield OpenAIPolicy("qwen2.5-vl", base_url=url, tokenizer=str(tiny_qwen25_dir))


@pytest.fixture(scope="module")
def tiny_tokenizer(tiny_qwen25_dir: Path) -> Any:
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(tiny_qwen25_dir)


@pytest.fixture
def openai_policy_strict_server() -> Iterator[OpenAIPolicy]:
    """A plain OpenAI-compatible server that answers 422 on vLLM's fields and ``top_k``."""
    with chat_server(paper_responder(), strict=True) as url:
        yield OpenAIPolicy("m", base_url=url)


test_openai_policy_conforms = conformance_test(
    "openai_policy", "openai_policy_old_vllm", "openai_policy_retokenising", "openai_policy_strict_server"
)


def conversation() -> list[Message]:
    images = tuple(ImagePart(Image.new("RGB", (448, 448), (i * 40, 0, 0))) for i in range(3))
    return [Message(role="user", parts=(*images, TextPart("find the red one")))]


def test_sends_images_as_base64_parts_and_passes_sampling_through() -> None:
    log = ChatServerLog()
    with chat_server(lambda request: "<answer>[]</answer>", log) as url:
        policy = build_policy("openai:qwen2.5-vl", base_url=url)
        sampling = SamplingParams(temperature=0.7, top_p=0.9, top_k=20, max_new_tokens=64, seed=3)
        generation = policy.generate(conversation(), sampling)
    assert generation.text == "<answer>[]</answer>"
    request = log.requests[0]
    assert request["model"] == "qwen2.5-vl"
    assert (request["temperature"], request["top_p"], request["top_k"], request["max_tokens"], request["seed"]) == (
        0.7,
        0.9,
        20,
        64,
        3,
    )
    parts = request["messages"][0]["content"]
    assert [p["type"] for p in parts] == ["image_url"] * 3 + ["text"]
    header, payload = parts[1]["image_url"]["url"].split(",", 1)
    assert header == "data:image/png;base64"
    decoded = Image.open(io.BytesIO(base64.b64decode(payload)))
    assert decoded.size == (448, 448) and decoded.getpixel((0, 0)) == (40, 0, 0)


def test_returns_server_token_ids_and_logprobs() -> None:
    with chat_server(lambda request: "abcdefgh") as url:
        generation = build_policy("openai:m", base_url=url).generate(conversation(), SamplingParams())
    assert generation.token_ids is not None and len(generation.token_ids) == 2
    assert generation.logprobs is not None and len(generation.logprobs) == 2
    assert not generation.logprobs_approximate
    assert generation.usage["completion_tokens"] == 2


def test_asks_for_token_ids_both_ways_vllm_offers_them() -> None:
    log = ChatServerLog()
    with chat_server(lambda request: "ok", log) as url:
        build_policy("openai:m", base_url=url).generate(conversation(), SamplingParams())
        OpenAIPolicy("m", base_url=url, logprobs=False).generate(conversation(), SamplingParams())
    with_logprobs, without = log.requests
    assert with_logprobs["return_token_ids"] is True and with_logprobs["return_tokens_as_token_ids"] is True
    assert "return_token_ids" not in without and "return_tokens_as_token_ids" not in without


def test_served_token_ids_are_the_generated_ones() -> None:
    with chat_server(lambda request: "abcdefgh", token_id_strings=True) as url:
        generation = build_policy("openai:m", base_url=url).generate(conversation(), SamplingParams())
    assert generation.token_ids == [token for token, _ in four_char_tokens("abcdefgh")]
    assert generation.token_source == "generated" and not generation.logprobs_approximate


def test_older_vllm_ids_are_read_from_token_id_strings_exactly() -> None:
    with chat_server(lambda request: "abcdefghij", token_ids=False, token_id_strings=True) as url:
        generation = build_policy("openai:m", base_url=url).generate(conversation(), SamplingParams())
    assert generation.token_ids == [token for token, _ in four_char_tokens("abcdefghij")]
    assert generation.logprobs is not None and len(generation.logprobs) == 3
    assert generation.token_source == "logprob_tokens" and not generation.logprobs_approximate


def test_without_ids_or_a_tokenizer_logprobs_are_kept_but_approximate() -> None:
    with chat_server(lambda request: "abcdefgh", token_ids=False) as url:
        generation = build_policy("openai:m", base_url=url).generate(conversation(), SamplingParams())
    assert generation.token_ids is None and generation.token_source is None
    assert generation.logprobs is not None and len(generation.logprobs) == 2
    assert generation.logprobs_approximate


def test_a_tokenizer_retokenises_the_answer_and_keeps_logprobs_that_line_up(
    tiny_tokenizer: Any, tiny_qwen25_dir: Path
) -> None:
    answer = "<answer>[{'frame_idx': 3, 'object description': 'the rider'}]</answer>"
    served = tokenizer_tokens(tiny_tokenizer)
    with chat_server(lambda request: answer, tokenize=served, token_ids=False) as url:
        policy = build_policy("openai:m", base_url=url, tokenizer=str(tiny_qwen25_dir))  # the CLI's options path
        generation = policy.generate(conversation(), SamplingParams())
    end = tiny_tokenizer.convert_tokens_to_ids("<|im_end|>")
    expected = [*tiny_tokenizer.encode(answer, add_special_tokens=False), end]
    assert generation.token_ids == expected == [token for token, _ in served(answer)]
    assert generation.logprobs is not None and len(generation.logprobs) == len(expected)
    assert generation.token_source == "retokenised" and generation.logprobs_approximate


def test_retokenised_ids_drop_logprobs_of_another_tokenisation(tiny_tokenizer: Any) -> None:
    answer = "<answer>[{'frame_idx': 3, 'object description': 'the rider'}]</answer>"
    with chat_server(lambda request: answer, token_ids=False) as url:  # four characters a token
        generation = OpenAIPolicy("m", base_url=url, tokenizer=tiny_tokenizer).generate(
            conversation(), SamplingParams()
        )
    assert generation.token_ids is not None and generation.token_ids[-1] == tiny_tokenizer.convert_tokens_to_ids(
        "<|im_end|>"
    )
    assert len(generation.token_ids) != len(four_char_tokens(answer))
    assert generation.logprobs is None and generation.logprobs_approximate
    assert generation.token_source == "retokenised"


def test_a_cut_answer_is_retokenised_without_an_end_token(tiny_tokenizer: Any) -> None:
    answer = "<answer>[{'frame_idx': 3, 'object description': 'the rider'}]</answer>"
    with chat_server(lambda request: answer, tokenize=tokenizer_tokens(tiny_tokenizer), token_ids=False) as url:
        policy = OpenAIPolicy("m", base_url=url, tokenizer=tiny_tokenizer)
        generation = policy.generate(conversation(), SamplingParams(max_new_tokens=5))
    assert generation.finish_reason == "length"
    assert generation.token_ids == tiny_tokenizer.encode(generation.text, add_special_tokens=False)
    assert (
        generation.logprobs is not None
        and generation.token_ids is not None
        and len(generation.logprobs) == len(generation.token_ids)
    )


def test_a_missing_tokenizer_is_a_load_error_naming_it(tmp_path: Path) -> None:
    from revseg.errors import ModelLoadError

    with pytest.raises(ModelLoadError, match="tokenizer"):
        OpenAIPolicy("m", base_url="http://127.0.0.1:9/v1", tokenizer=str(tmp_path / "nowhere"))


def test_server_rejecting_the_token_id_switches_is_asked_again_without_them() -> None:
    log = ChatServerLog()

    def respond(request: dict[str, Any]) -> str:
        if "return_tokens_as_token_ids" in request:
            raise ChatServerFault(400, "Unrecognized request argument supplied: return_tokens_as_token_ids")
        return "fine"

    with chat_server(respond, log) as url:
        policy = build_policy("openai:m", base_url=url)
        first = policy.generate(conversation(), SamplingParams())
        second = policy.generate(conversation(), SamplingParams())
    assert first.text == second.text == "fine" and first.logprobs is not None  # log-probs still asked for
    assert ["return_tokens_as_token_ids" in r for r in log.requests] == [True, False, False]
    assert all(r["logprobs"] and r["return_token_ids"] for r in log.requests)  # only the named field is dropped
    assert first.exchange is not None and first.exchange.refused == ["return_tokens_as_token_ids"]


def test_history_is_sent_as_assistant_text() -> None:
    log = ChatServerLog()
    messages = [*conversation(), Message.assistant("<answer>x</answer>", [7, 8, 9]), *conversation()]
    with chat_server(lambda request: "ok", log) as url:
        build_policy("openai:m", base_url=url).generate(messages, SamplingParams())  # ids do not go on the wire
    assert [m["role"] for m in log.requests[0]["messages"]] == ["user", "assistant", "user"]
    assert log.requests[0]["messages"][1]["content"] == "<answer>x</answer>"


def test_server_without_logprobs_is_asked_again_without_them_once() -> None:
    log = ChatServerLog()

    def respond(request: dict[str, Any]) -> str:
        if request.get("logprobs"):
            raise ChatServerFault(400, "logprobs is not supported by this model")
        return "fine"

    with chat_server(respond, log) as url:
        policy = build_policy("openai:m", base_url=url)
        first = policy.generate(conversation(), SamplingParams())
        second = policy.generate(conversation(), SamplingParams())
    assert first.text == second.text == "fine" and first.logprobs is None
    assert [bool(r.get("logprobs")) for r in log.requests] == [True, False, False]


def test_server_errors_become_policy_error_after_retries() -> None:
    log = ChatServerLog()

    def respond(request: dict[str, Any]) -> str:
        raise ChatServerFault(500, "boom")

    with chat_server(respond, log) as url:
        policy = OpenAIPolicy("m", base_url=url, max_retries=1)
        start = time.perf_counter()
        with pytest.raises(PolicyError, match="openai:m"):
            policy.generate(conversation(), SamplingParams())
    assert len(log.requests) == 2 and time.perf_counter() - start < 10


def test_bad_request_becomes_policy_error_without_retry() -> None:
    def respond(request: dict[str, Any]) -> str:
        raise ChatServerFault(400, "context length exceeded")

    with chat_server(respond) as url, pytest.raises(PolicyError, match="context length"):
        build_policy("openai:m", base_url=url).generate(conversation(), SamplingParams())


def test_missing_key_without_base_url_is_a_spec_error(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    monkeypatch.delenv("OPENAI_BASE_URL", raising=False)
    with pytest.raises(SpecError, match="OPENAI_API_KEY"):
        build_policy("openai:gpt-4o")


def test_api_key_never_appears_in_the_policy_identity(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OPENAI_API_KEY", "sk-secret-123")
    policy = build_policy("openai:gpt-4o", base_url="http://127.0.0.1:9/v1", box_convention="norm1000")
    assert "sk-secret" not in policy.info.model_dump_json()
    assert policy.info.box_convention == "norm1000" and policy.info.backend == "openai"


@pytest.mark.parametrize(
    ("spec", "match"),
    [("openai", "SCHEME:REF"), ("gpt:4o", "unknown policy backend 'gpt'"), ("openai:", "SCHEME:REF")],
)
def test_malformed_specs_name_the_problem(spec: str, match: str) -> None:
    with pytest.raises(SpecError, match=match):
        build_policy(spec)


def test_unknown_box_convention_is_rejected() -> None:
    with pytest.raises(SpecError, match="box convention"):
        build_policy("openai:m", base_url="http://127.0.0.1:9/v1", box_convention="relative")


FAULTS = {
    "429 with Retry-After": ChatServerFault.rate_limited(0.3),
    "500": ChatServerFault.server_error(),
    "timeout": ChatServerFault.timeout(2.0),
    "dropped connection": ChatServerFault.dropped(),
    "truncated JSON": ChatServerFault.truncated(),
    "HTML instead of JSON": ChatServerFault.wrong_content_type(),
    "no choices": ChatServerFault.no_choices(),
}


@pytest.mark.parametrize("fault", list(FAULTS))
def test_async_client_retries_each_fault_once_and_answers(fault: str) -> None:
    log = ChatServerLog()
    responder = inject_faults(lambda request: "fine", lambda request, attempt: FAULTS[fault] if attempt == 0 else None)
    with chat_server(responder, log) as url:
        policy = OpenAIPolicy("m", base_url=url, timeout_s=0.5, max_retries=2, retry_backoff_s=0.01)
        start = time.perf_counter()
        generation = asyncio.run(policy.agenerate(conversation(), SamplingParams()))
    assert generation.text == "fine" and len(log.requests) == 2
    if fault == "429 with Retry-After":
        assert time.perf_counter() - start >= 0.3  # the server's Retry-After, not the SDK's own backoff


@pytest.mark.parametrize("fault", ["truncated JSON", "no choices", "500"])
def test_a_fault_that_persists_becomes_policy_error_naming_it(fault: str) -> None:
    log = ChatServerLog()
    with chat_server(inject_faults(lambda request: "never", lambda request, attempt: FAULTS[fault]), log) as url:
        policy = OpenAIPolicy("m", base_url=url, max_retries=1, malformed_retries=2, retry_backoff_s=0.01)
        with pytest.raises(PolicyError) as caught:
            asyncio.run(policy.agenerate(conversation(), SamplingParams()))
    if fault == "500":
        assert "InternalServerError" in str(caught.value) and len(log.requests) == 2  # the SDK's retries
    else:
        assert isinstance(caught.value, MalformedResponseError) and "malformed" in str(caught.value)
        assert len(log.requests) == 3  # tenacity's retries of a malformed 200


def test_sync_and_async_share_the_retry_rules() -> None:
    log = ChatServerLog()
    schedule = lambda request, attempt: ChatServerFault.truncated() if attempt % 2 == 0 else None  # noqa: E731
    with chat_server(inject_faults(lambda request: "fine", schedule), log) as url:
        policy = OpenAIPolicy("m", base_url=url, retry_backoff_s=0.01)
        assert policy.generate(conversation(), SamplingParams()).text == "fine"
    assert len(log.requests) == 2


def test_one_policy_serves_successive_event_loops() -> None:
    with chat_server(lambda request: "fine") as url:
        policy = OpenAIPolicy("m", base_url=url)
        answers = [asyncio.run(policy.agenerate(conversation(), SamplingParams())).text for _ in range(3)]
        assert policy.generate(conversation(), SamplingParams()).text == "fine"
    assert answers == ["fine"] * 3


def test_frames_sent_twice_are_encoded_once() -> None:
    log = ChatServerLog()
    with chat_server(lambda request: "ok", log) as url:
        policy = OpenAIPolicy("m", base_url=url)
        messages = [*conversation(), Message.assistant("x"), *conversation()]
        asyncio.run(policy.agenerate(messages, SamplingParams()))
    assert (policy._images.misses, policy._images.hits) == (3, 3)
    first, second = log.requests[0]["messages"][0], log.requests[0]["messages"][2]
    assert first == second


@pytest.mark.parametrize("status", [400, 422])
def test_a_strict_server_is_asked_once_more_without_the_fields_it_names(status: Literal[400, 422]) -> None:
    log = ChatServerLog()
    sampling = SamplingParams(top_k=5, seed=3)
    with chat_server(paper_responder(), log, strict=status) as url:
        policy = build_policy("openai:m", base_url=url)
        first = policy.generate(conversation(), sampling)
        second = asyncio.run(policy.agenerate(conversation(), sampling))
    assert len(log.requests) == 3  # one refusal, then every request is plain
    refused = {"return_token_ids", "return_tokens_as_token_ids", "top_k"}
    assert refused <= set(log.requests[0]) and not refused & set(log.requests[1]) and not refused & set(log.requests[2])
    assert log.requests[1]["seed"] == 3 and log.requests[1]["logprobs"] is True
    for generation in (first, second):
        assert generation.exchange is not None
        assert generation.exchange.asked == ["logprobs", "seed"]
        assert generation.exchange.refused == sorted(refused)
        assert generation.exchange.returned == ["logprobs"]  # ids absent: the server gave none
        assert generation.token_ids is None and generation.logprobs_approximate


def test_a_rejection_naming_no_field_we_can_drop_is_a_policy_error_after_one_request() -> None:
    log = ChatServerLog()
    with chat_server(paper_responder(), log, strict=True) as url:
        policy = build_policy("openai:m", base_url=url, extra_body={"guided_json": {}}, logprobs=False)
        with pytest.raises(PolicyError, match="guided_json"):
            policy.generate(conversation(), SamplingParams())
    assert len(log.requests) == 1  # the user's own extra fields are never dropped behind their back


@pytest.mark.parametrize("field", ["model", "messages"])
def test_extra_body_may_not_replace_model_or_messages(field: str) -> None:
    with pytest.raises(SpecError, match=field):
        build_policy("openai:m", base_url="http://127.0.0.1:9/v1", extra_body={field: "x"})


def test_extra_body_fields_are_sent_and_recorded_in_the_turn() -> None:
    log = ChatServerLog()
    with chat_server(paper_responder(), log) as url:
        generation = build_policy("openai:m", base_url=url, extra_body={"top_k": 2}).generate(
            conversation(), SamplingParams(top_k=9)
        )
    assert log.requests[0]["top_k"] == 2 and log.requests[0]["model"] == "m"  # the user's value wins for extras
    assert generation.exchange is not None and generation.exchange.returned == ["logprobs", "token_ids"]


def test_requests_spread_over_several_endpoints() -> None:
    logs = [ChatServerLog(), ChatServerLog()]
    with chat_server(paper_responder(), logs[0]) as a, chat_server(paper_responder(), logs[1]) as b:
        policy = build_policy("openai:m", base_url=f"{a},{b}")

        async def many() -> list[Any]:
            return list(await asyncio.gather(*(policy.agenerate(conversation(), SamplingParams()) for _ in range(8))))

        answers = asyncio.run(many())
    assert len(answers) == 8 and all(answer.text for answer in answers)
    assert [len(log.requests) for log in logs] == [4, 4] == policy.endpoint_requests  # type: ignore[attr-defined]


def test_a_failing_endpoints_requests_go_to_the_others() -> None:
    logs = [ChatServerLog(), ChatServerLog()]
    broken = inject_faults(paper_responder(), lambda request, attempt: ChatServerFault.server_error())
    with chat_server(broken, logs[0]) as a, chat_server(paper_responder(), logs[1]) as b:
        policy = OpenAIPolicy("m", base_url=[a, b], max_retries=0)
        answers = [policy.generate(conversation(), SamplingParams()) for _ in range(4)]
    assert all(answer.text.startswith("<think>") for answer in answers)
    assert len(logs[0].requests) == 1  # tried once, then rested; every request answered by the healthy one
    assert policy.endpoint_requests == [0, 4]


def test_a_dead_endpoint_is_skipped_and_all_dead_is_a_policy_error() -> None:
    with chat_server(paper_responder()) as live:
        policy = OpenAIPolicy("m", base_url=["http://127.0.0.1:9/v1", live], max_retries=0)
        assert all(policy.generate(conversation(), SamplingParams()).text for _ in range(3))
        assert policy.endpoint_requests == [0, 3]
    dead = OpenAIPolicy("m", base_url="http://127.0.0.1:9/v1,http://127.0.0.1:7/v1", max_retries=0)
    with pytest.raises(PolicyError, match="all 2 endpoints failed"):
        dead.generate(conversation(), SamplingParams())


def test_one_endpoint_named_twice_is_a_spec_error() -> None:
    with pytest.raises(SpecError, match="twice"):
        OpenAIPolicy("m", base_url="http://127.0.0.1:9/v1, http://127.0.0.1:9/v1")


@pytest.mark.parametrize(("image_format", "recorded"), [("png", "png"), ("jpeg", "jpeg:95"), ("JPG", "jpeg:95")])
def test_the_record_says_how_images_went_on_the_wire(image_format: str, recorded: str) -> None:
    policy = OpenAIPolicy("m", base_url="http://127.0.0.1:9/v1", image_format=image_format)
    assert policy.info.image_encoding == recorded
    assert policy.info.revision is None and policy.info.chat_template_sha256 is None  # the server's, unknowable
