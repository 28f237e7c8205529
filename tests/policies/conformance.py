"""The checks every Policy backend passes (DESIGN.md 2.3), whatever model or server is behind it.

A backend joins the suite with one line in its own test module, naming fixtures that
yield ready policies::

    test_openai_policy_conforms = conformance_test("openai_policy")

The checks ask only what the protocol promises: generated text, token ids and
log-probs that agree with each other when present (and say where the ids came from), a
multi-turn conversation with images in both turns and assistant history carrying turn
1's ids, the same through ``agenerate``, a sane ``seen_size``, and an identity.
"""

from __future__ import annotations

import asyncio
import math
from collections.abc import Callable

import pytest
from PIL import Image

from revseg.policies.base import Generation, ImagePart, Message, Policy, TextPart
from revseg.settings import SamplingParams
from revseg.trajectory import PolicyInfo

CONFORMANCE_SAMPLING = SamplingParams(temperature=0.0, max_new_tokens=8)
# Sizes the chain sends (frames, keyframe), a landscape video frame and an odd portrait one.
CONFORMANCE_SIZES = ((448, 448), (840, 840), (1280, 720), (333, 500))


def small_image(width: int, height: int, colour: tuple[int, int, int]) -> Image.Image:
    """A flat RGB image with a contrasting square, small enough to keep every backend fast."""
    image = Image.new("RGB", (width, height), colour)
    image.paste((255 - colour[0], 255 - colour[1], 255 - colour[2]), (width // 4, height // 4, width // 2, height // 2))
    return image


def first_turn() -> list[Message]:
    """A system message and a user message with two images and a question, like turn 1."""
    return [
        Message(role="system", parts=(TextPart("You are a helpful assistant."),)),
        Message(
            role="user",
            parts=(
                ImagePart(small_image(112, 84, (200, 30, 30))),
                ImagePart(small_image(84, 112, (30, 30, 200))),
                TextPart("Which frame shows the red square? Answer with its index."),
            ),
        ),
    ]


def second_turn(history: list[Message], answer: str, token_ids: list[int] | None = None) -> list[Message]:
    """The first turn, the model's answer (with its generated ids) as history, and a follow-up with one image."""
    return [
        *history,
        Message.assistant(answer, token_ids),
        Message(
            role="user",
            parts=(ImagePart(small_image(140, 140, (30, 200, 30))), TextPart("Detect the square with a bbox in JSON.")),
        ),
    ]


def check_generation(generation: Generation, sampling: SamplingParams) -> None:
    """One turn's output is well formed: types, matching lengths, and log-probs that are log-probabilities."""
    assert isinstance(generation, Generation)
    assert isinstance(generation.text, str)
    assert generation.finish_reason in (None, "stop", "length")
    assert all(isinstance(k, str) and isinstance(v, int) and v >= 0 for k, v in generation.usage.items())
    assert (generation.token_ids is None) == (generation.token_source is None), "ids must say where they came from"
    if generation.token_ids is not None:
        assert all(isinstance(t, int) and t >= 0 for t in generation.token_ids)
        if generation.token_source != "retokenised":  # the sampler's own ids count against the budget
            assert len(generation.token_ids) <= sampling.max_new_tokens
            if generation.finish_reason == "length":
                assert len(generation.token_ids) == sampling.max_new_tokens
        else:
            assert generation.logprobs_approximate, "re-tokenised ids are a guess: their log-probs are approximate"
    if generation.logprobs is not None:
        if generation.token_ids is None:  # log-probs of tokens nobody recorded: RL must not take them as exact
            assert generation.logprobs_approximate
        else:
            assert len(generation.logprobs) == len(generation.token_ids)
        assert all(isinstance(x, float) and math.isfinite(x) and x <= 1e-6 for x in generation.logprobs)


def check_seen_size(policy: Policy) -> None:
    """``seen_size`` is deterministic, positive, keeps the aspect ratio and is a fixed point of itself."""
    for width, height in CONFORMANCE_SIZES:
        seen = policy.seen_size(width, height)
        assert seen == policy.seen_size(width, height)
        assert isinstance(seen, tuple) and len(seen) == 2 and all(isinstance(v, int) and v > 0 for v in seen)
        assert math.isclose(seen[0] / seen[1], width / height, rel_tol=0.1)
        assert policy.seen_size(*seen) == seen, "an image already at the seen size must not be resized again"


def check_info(policy: Policy) -> None:
    """The identity recorded in trajectories is complete and stable."""
    info = policy.info
    assert isinstance(info, PolicyInfo)
    assert info.spec and info.backend and info.model
    assert info.box_convention in ("absolute", "norm1000")
    assert policy.info == info


def check_policy_conformance(policy: Policy, sampling: SamplingParams = CONFORMANCE_SAMPLING) -> None:
    """Run every check on ``policy``: two turns of one conversation, then ``seen_size`` and ``info``."""
    assert isinstance(policy, Policy)
    history = first_turn()
    first = policy.generate(history, sampling)
    check_generation(first, sampling)
    second = policy.generate(second_turn(history, first.text, first.token_ids), sampling)
    check_generation(second, sampling)
    check_generation(asyncio.run(policy.agenerate(history, sampling)), sampling)
    check_seen_size(policy)
    check_info(policy)


def conformance_test(*fixture_names: str) -> Callable[..., None]:
    """A test, parametrized over fixtures that yield policies, that runs :func:`check_policy_conformance`.

    Assign it to a ``test_*`` name in a backend's test module so pytest collects it there,
    where those fixtures are visible.
    """

    @pytest.mark.parametrize("policy_fixture", fixture_names)
    def test_policy_conforms(policy_fixture: str, request: pytest.FixtureRequest) -> None:
        check_policy_conformance(request.getfixturevalue(policy_fixture))

    return test_policy_conforms
