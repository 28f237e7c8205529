"""The langchain backend: any langchain-core chat model as the policy, images as standard content blocks."""

from __future__ import annotations

import asyncio
import base64
import io
import itertools
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any, ClassVar

import pytest
from langchain_core.language_models.fake_chat_models import GenericFakeChatModel
from langchain_core.messages import AIMessage, BaseMessage
from PIL import Image

from revseg import ReVSegAgent, Status
from revseg.errors import PolicyError, SpecError
from revseg.policies import build_policy
from revseg.policies.base import ImagePart, Message, TextPart
from revseg.policies.langchain import LangChainPolicy, to_langchain_messages
from revseg.settings import SamplingParams
from revseg.testing.chat_server import ChatServerLog, chat_server, paper_responder
from revseg.testing.fakes import BoxTracker
from tests.policies.conformance import conformance_test

TURN1 = "<think>the rider in front</think><answer>[{'frame_idx': 3, 'object description': 'rider'}]</answer>"
TURN2 = '[{"bbox_2d": [84, 168, 420, 672], "label": "rider"}]'


def fake(*answers: str | AIMessage) -> GenericFakeChatModel:
    return GenericFakeChatModel(messages=itertools.cycle(answers))


@pytest.fixture
def langchain_policy() -> Iterator[LangChainPolicy]:
    """A langchain-core fake chat model behind the policy protocol: text only, no ids or log-probs."""
    yield LangChainPolicy(fake("frame 0", "[1, 2, 3, 4]"))


@pytest.fixture
def chat_openai_policy() -> Iterator[LangChainPolicy]:
    """langchain-openai's ChatOpenAI against a local server: real requests, per-token log-probs, an identity."""
    langchain_openai = pytest.importorskip("langchain_openai")
    with chat_server(paper_responder()) as url:
        model = langchain_openai.ChatOpenAI(model="qwen", base_url=url, api_key="sk-local", logprobs=True)
        yield LangChainPolicy(model)


test_langchain_policy_conforms = conformance_test("langchain_policy", "chat_openai_policy")


def test_images_become_standard_base64_blocks_before_the_text() -> None:
    image = Image.new("RGB", (8, 6), (10, 20, 30))
    messages = [
        Message(role="system", parts=(TextPart("be brief"),)),
        Message(role="user", parts=(ImagePart(image), TextPart("what colour?"))),
        Message.assistant("blue"),
    ]
    system, user, assistant = to_langchain_messages(messages)
    assert (system.type, user.type, assistant.type) == ("system", "human", "ai")
    assert isinstance(user.content, list)
    block, text = user.content
    assert isinstance(block, dict) and block["type"] == "image" and block["mime_type"] == "image/png"
    decoded = Image.open(io.BytesIO(base64.b64decode(block["base64"])))
    assert decoded.size == (8, 6) and decoded.getpixel((0, 0)) == (10, 20, 30)
    assert text == {"type": "text", "text": "what colour?"} and assistant.content == "blue"


def test_the_model_receives_the_whole_conversation() -> None:
    class Recording(GenericFakeChatModel):
        seen: ClassVar[list[list[BaseMessage]]] = []

        def _generate(self, messages: list[BaseMessage], *args: Any, **kwargs: Any) -> Any:
            Recording.seen.append(messages)
            return super()._generate(messages, *args, **kwargs)

    policy = LangChainPolicy(Recording(messages=iter(["fine"])))
    image = Image.new("RGB", (4, 4))
    asyncio.run(policy.agenerate([Message(role="user", parts=(ImagePart(image), TextPart("q")))], SamplingParams()))
    (conversation,) = Recording.seen
    assert [b["type"] for b in conversation[0].content] == ["image", "text"]  # type: ignore[index]


def test_logprobs_in_response_metadata_are_kept() -> None:
    reply = AIMessage(
        content="ok",
        response_metadata={
            "finish_reason": "stop",
            "logprobs": {"content": [{"token": "o", "logprob": -0.1}, {"token": "k", "logprob": float("-inf")}]},
        },
        usage_metadata={"input_tokens": 12, "output_tokens": 2, "total_tokens": 14},
    )
    generation = LangChainPolicy(fake(reply)).generate([Message.assistant("x")], SamplingParams())
    assert generation.text == "ok" and generation.logprobs == [-0.1, -1e9]
    assert generation.finish_reason == "stop" and generation.usage == {"prompt_tokens": 12, "completion_tokens": 2}
    assert generation.token_ids is None  # chat integrations report token strings, not ids
    assert generation.logprobs_approximate  # so GRPO cannot pair them with ids
    plain = LangChainPolicy(fake("ok")).generate([Message.assistant("x")], SamplingParams())
    assert plain.logprobs is None and not plain.logprobs_approximate


def test_sampling_goes_only_to_parameters_the_model_declares() -> None:
    class WithTemperature(GenericFakeChatModel):
        temperature: float = 1.0
        calls: ClassVar[list[dict[str, Any]]] = []

        def _generate(
            self, messages: list[BaseMessage], stop: Any = None, run_manager: Any = None, **kwargs: Any
        ) -> Any:
            WithTemperature.calls.append(kwargs)
            return super()._generate(messages, stop, run_manager, **kwargs)

    policy = LangChainPolicy(WithTemperature(messages=iter(["a"])))
    policy.generate([Message.assistant("x")], SamplingParams(temperature=0.3, top_k=5, max_new_tokens=7))
    assert WithTemperature.calls == [{"temperature": 0.3}]


def test_a_failing_model_is_a_policy_error_naming_the_integration() -> None:
    policy = LangChainPolicy(GenericFakeChatModel(messages=iter([])))
    with pytest.raises(PolicyError, match="langchain:GenericFakeChatModel"):
        asyncio.run(policy.agenerate([Message.assistant("x")], SamplingParams()))


def test_langchain_spec_without_the_langchain_package_says_what_to_install(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "langchain.chat_models", None)  # as if langchain were not installed
    with pytest.raises(SpecError, match="pip install langchain"):
        build_policy("langchain:openai:gpt-4o")


def test_langchain_spec_builds_the_model_with_init_chat_model(small_clip: Path, tmp_path: Path) -> None:
    pytest.importorskip("langchain.chat_models")
    pytest.importorskip("langchain_openai")
    log = ChatServerLog()
    with chat_server(paper_responder(keyframe=3, box=(84, 168, 420, 672)), log) as url:
        policy = build_policy("langchain:openai:served-qwen", base_url=url, api_key="sk-local")
        result = ReVSegAgent(policy, "none", overlay=False, report=False).run(small_clip, "the rider", tmp_path)
    assert result.status == Status.OK and result.keyframe_index == 5
    assert result.trajectory.policy.spec == "langchain:openai:served-qwen"
    assert result.trajectory.policy.model == "served-qwen"
    assert [r["model"] for r in log.requests] == ["served-qwen", "served-qwen"]
    assert "sk-local" not in result.trajectory.model_dump_json()


def test_agent_takes_a_chat_model_as_its_policy(small_clip: Path, tmp_path: Path) -> None:
    agent = ReVSegAgent(fake(TURN1, TURN2), BoxTracker(), overlay=False, report=False)
    result = agent.run(small_clip, "who leads?", tmp_path)
    assert result.status == Status.OK and result.keyframe_index == 5
    assert result.trajectory.policy.backend == "langchain"
    assert result.trajectory.policy.spec == "langchain:GenericFakeChatModel:generic-fake-chat-model"


def test_chat_openai_against_a_local_server(small_clip: Path, tmp_path: Path) -> None:
    langchain_openai = pytest.importorskip("langchain_openai")
    log = ChatServerLog()
    with chat_server(paper_responder(keyframe=3, box=(84, 168, 420, 672)), log) as url:
        model = langchain_openai.ChatOpenAI(model="qwen", base_url=url, api_key="sk-local", logprobs=True)
        result = ReVSegAgent(model, "none", overlay=False, report=False).run(small_clip, "the rider", tmp_path)
    assert result.status == Status.OK and result.keyframe_index == 5
    assert result.trajectory.policy.model == "qwen"
    assert result.trajectory.turns[0].logprobs and result.trajectory.turns[0].token_ids is None
    assert result.trajectory.turns[0].logprobs_approximate
    parts = log.requests[0]["messages"][0]["content"]
    assert [p["type"] for p in parts] == ["image_url"] * 16 + ["text"]
    assert parts[0]["image_url"]["url"].startswith("data:image/png;base64,")
    request = log.requests[0]
    assert request["temperature"] == 0.0 and request.get("max_completion_tokens", request.get("max_tokens")) == 1024
