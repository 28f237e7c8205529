"""The hf: backend on tiny random Qwen2.5-VL / Qwen3-VL checkpoints, loaded the way a user loads one."""

from __future__ import annotations

import hashlib
import json
import re
import shutil
import subprocess
import sys
import time
import types
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest
import torch
from PIL import Image

from revseg.errors import ModelLoadError, PolicyError, SpecError
from revseg.policies import build_policy
from revseg.policies.base import ImagePart, Message, TextPart
from revseg.policies.hf import BOX_CONVENTIONS, HFPolicy, pick_attn_implementation, pick_dtype
from revseg.policies.tokens import placeholder_token_ids
from revseg.provenance import model_revision
from revseg.settings import SamplingParams
from tests.policies.conformance import conformance_test, first_turn, second_turn, small_image


@pytest.fixture(scope="module")
def hf_qwen25_policy(tiny_qwen25_dir: Path) -> HFPolicy:
    return HFPolicy.from_spec(str(tiny_qwen25_dir))


@pytest.fixture(scope="module")
def hf_qwen3_policy(tiny_qwen3_dir: Path) -> HFPolicy:
    return HFPolicy.from_spec(str(tiny_qwen3_dir))


@pytest.fixture(params=["hf_qwen25_policy", "hf_qwen3_policy"])
def policy(request: pytest.FixtureRequest) -> HFPolicy:
    return request.getfixturevalue(request.param)


test_hf_policy_conforms = conformance_test("hf_qwen25_policy", "hf_qwen3_policy")


def rescore(policy: HFPolicy, messages: list[Message], token_ids: list[int]) -> torch.Tensor:
    """Teacher-forced logits for ``token_ids`` after the prompt: one forward pass, no cache.

    The vision placeholders get -inf, as in generation (the policy never samples them).
    """
    inputs = policy.build_inputs(messages)
    new = torch.tensor([token_ids], device=policy.device)
    ids = torch.cat([inputs["input_ids"], new], dim=1)
    mm = torch.cat([inputs["mm_token_type_ids"], torch.zeros_like(new)], dim=1)
    with torch.inference_mode():
        logits = policy.model(
            input_ids=ids,
            attention_mask=torch.ones_like(ids),
            pixel_values=inputs["pixel_values"],
            image_grid_thw=inputs["image_grid_thw"],
            mm_token_type_ids=mm,
        ).logits
        logits[..., placeholder_token_ids(policy.processor.tokenizer)] = float("-inf")
    prompt_len = inputs["input_ids"].shape[1]
    return logits[0, prompt_len - 1 : -1].float()


def chosen(logprobs: torch.Tensor, token_ids: list[int]) -> list[float]:
    index = torch.tensor(token_ids, device=logprobs.device)[:, None]
    return logprobs.gather(-1, index).squeeze(-1).tolist()


def test_loading_records_identity_and_box_convention_per_family(
    hf_qwen25_policy: HFPolicy, hf_qwen3_policy: HFPolicy, tiny_qwen25_dir: Path
) -> None:
    assert hf_qwen25_policy.info.box_convention == "absolute"
    assert hf_qwen3_policy.info.box_convention == "norm1000"
    info = hf_qwen25_policy.info
    assert (info.spec, info.backend, info.model) == (f"hf:{tiny_qwen25_dir}", "hf", str(tiny_qwen25_dir))


def test_loading_records_the_weights_revision_and_the_chat_templates_hash(
    hf_qwen25_policy: HFPolicy, tiny_qwen25_dir: Path
) -> None:
    info = hf_qwen25_policy.info
    assert info.revision == model_revision(tiny_qwen25_dir) and str(info.revision).startswith("local:")
    template = (tiny_qwen25_dir / "chat_template.jinja").read_text()
    assert info.chat_template_sha256 == hashlib.sha256(template.encode()).hexdigest()
    assert info.image_encoding is None  # pixels go to the processor as they are


def test_build_policy_spec_passes_options_through(tiny_qwen3_dir: Path) -> None:
    policy = build_policy(f"hf:{tiny_qwen3_dir}", box_convention="absolute", dtype="float32", device="cpu")
    assert policy.info.spec == f"hf:{tiny_qwen3_dir}"
    assert policy.info.box_convention == "absolute"


def test_greedy_decoding_repeats_exactly(policy: HFPolicy) -> None:
    sampling = SamplingParams(max_new_tokens=12)
    first = policy.generate(first_turn(), sampling)
    second = policy.generate(first_turn(), sampling)
    assert first == second
    assert first.finish_reason == "length" and len(first.token_ids or []) == 12


def test_seeded_sampling_is_reproducible_and_seed_dependent(hf_qwen25_policy: HFPolicy) -> None:
    def run(seed: int) -> list[int] | None:
        sampling = SamplingParams(temperature=1.0, max_new_tokens=16, seed=seed)
        return hf_qwen25_policy.generate(first_turn(), sampling).token_ids

    assert run(7) == run(7)
    assert run(7) != run(8)


def test_concurrent_calls_give_the_same_answers_as_sequential_ones(hf_qwen25_policy: HFPolicy) -> None:
    # Graph fan-out calls one policy from several threads; seeded sampling must not share the RNG stream.
    conversations = [first_turn(), second_turn(first_turn(), "<answer>[]</answer>")] * 2
    sampling = SamplingParams(temperature=1.0, seed=3, max_new_tokens=12)
    sequential = [hf_qwen25_policy.generate(c, sampling) for c in conversations]
    with ThreadPoolExecutor(max_workers=4) as pool:
        concurrent = list(pool.map(lambda c: hf_qwen25_policy.generate(c, sampling), conversations))
    assert concurrent == sequential


def test_seeded_sampling_leaves_the_global_rng_alone(hf_qwen25_policy: HFPolicy) -> None:
    torch.manual_seed(5)
    expected = torch.rand(3)
    torch.manual_seed(5)
    hf_qwen25_policy.generate(first_turn(), SamplingParams(temperature=1.0, max_new_tokens=2, seed=1))
    assert torch.equal(torch.rand(3), expected)


def test_greedy_logprobs_match_a_teacher_forced_forward_pass(policy: HFPolicy) -> None:
    messages = second_turn(first_turn(), "<answer>[{'frame_idx': 1}]</answer>")
    generation = policy.generate(messages, SamplingParams(max_new_tokens=10))
    assert generation.token_ids is not None and generation.logprobs is not None
    expected = chosen(torch.log_softmax(rescore(policy, messages, generation.token_ids), -1), generation.token_ids)
    assert generation.logprobs == pytest.approx(expected, abs=1e-4)
    assert not generation.logprobs_approximate


def split_ids(policy: HFPolicy, text: str) -> list[int]:
    """``text`` one character a token, closed by ``<|im_end|>``: ids a sampler may emit, unlike the text's tokens."""
    tokenizer = policy.processor.tokenizer
    pieces = [tokenizer.encode(ch, add_special_tokens=False) for ch in text]
    return [*(i for piece in pieces for i in piece), tokenizer.convert_tokens_to_ids("<|im_end|>")]


def test_history_with_generated_ids_enters_the_prompt_as_those_ids(policy: HFPolicy) -> None:
    answer = "<answer>[{'frame_idx': 1, 'object description': 'the red square'}]</answer>"
    ids = split_ids(policy, answer)
    as_text = policy.build_inputs(second_turn(first_turn(), answer))
    as_ids = policy.build_inputs(second_turn(first_turn(), answer, ids))
    prefix = policy.build_inputs(first_turn())["input_ids"][0].tolist()
    text_ids, spliced = as_text["input_ids"][0].tolist(), as_ids["input_ids"][0].tolist()
    retokenised = text_ids[len(prefix) : text_ids.index(ids[-1], len(prefix)) + 1]
    assert retokenised != ids and len(retokenised) < len(ids)
    assert spliced == prefix + ids + text_ids[len(prefix) + len(retokenised) :]  # only the answer's span changes
    for key in ("attention_mask", "mm_token_type_ids"):
        assert as_ids[key].shape == as_ids["input_ids"].shape
    assert torch.equal(as_ids["pixel_values"], as_text["pixel_values"])
    same = policy.build_inputs(second_turn(first_turn(), answer, retokenised))  # the ids the text gives: no change
    assert torch.equal(same["input_ids"], as_text["input_ids"])


def test_turn2_is_generated_after_the_histories_generated_ids(policy: HFPolicy) -> None:
    answer = "<answer>[{'frame_idx': 0}]</answer>"
    messages = second_turn(first_turn(), answer, split_ids(policy, answer)[:-1])  # a cut answer: closed for it
    generation = policy.generate(messages, SamplingParams(max_new_tokens=6))
    assert generation.token_ids is not None and generation.logprobs is not None
    assert generation.usage["prompt_tokens"] == policy.build_inputs(messages)["input_ids"].shape[1]
    expected = chosen(torch.log_softmax(rescore(policy, messages, generation.token_ids), -1), generation.token_ids)
    assert generation.logprobs == pytest.approx(expected, abs=1e-4)
    assert generation.token_source == "generated"


def test_sampled_logprobs_are_under_the_tempered_nucleus_distribution(hf_qwen25_policy: HFPolicy) -> None:
    from transformers import TopPLogitsWarper

    sampling = SamplingParams(temperature=0.7, top_p=0.9, max_new_tokens=10, seed=3)
    messages = first_turn()
    generation = hf_qwen25_policy.generate(messages, sampling)
    assert generation.token_ids is not None and generation.logprobs is not None
    logits = rescore(hf_qwen25_policy, messages, generation.token_ids)
    processed = TopPLogitsWarper(top_p=0.9)(torch.zeros(1, 1, dtype=torch.long), logits / 0.7)
    expected = chosen(torch.log_softmax(processed, -1), generation.token_ids)
    assert generation.logprobs == pytest.approx(expected, abs=1e-4)
    raw = chosen(torch.log_softmax(logits, -1), generation.token_ids)
    assert generation.logprobs != pytest.approx(raw, abs=1e-3), "log-probs must include temperature and top-p"


def test_checkpoint_sampling_defaults_are_ignored(tiny_qwen25_dir: Path, tmp_path: Path) -> None:
    # Qwen2.5-VL-7B-Instruct ships do_sample/top_k=1/top_p=0.001/repetition_penalty=1.05; they must not apply.
    shipped = tmp_path / "shipped-defaults"
    shutil.copytree(tiny_qwen25_dir, shipped)
    config_path = shipped / "generation_config.json"
    config = json.loads(config_path.read_text())
    config |= {"do_sample": True, "top_k": 1, "top_p": 0.001, "temperature": 0.1, "repetition_penalty": 3.0}
    config_path.write_text(json.dumps(config))
    sampling = SamplingParams(max_new_tokens=12)
    plain = HFPolicy.from_spec(str(tiny_qwen25_dir)).generate(first_turn(), sampling)
    assert HFPolicy.from_spec(str(shipped)).generate(first_turn(), sampling) == plain


def test_stopping_on_end_token_keeps_it_in_token_ids_but_not_in_text(tiny_qwen25_dir: Path) -> None:
    policy = HFPolicy.from_spec(str(tiny_qwen25_dir))
    first_token = (policy.generate(first_turn(), SamplingParams(max_new_tokens=1)).token_ids or [])[0]
    # Declare the model's favourite first token an end token: generation must stop right there.
    policy.model.generation_config.eos_token_id = [first_token]
    stopping = HFPolicy(policy.model, policy.processor, policy.info)
    generation = stopping.generate(first_turn(), SamplingParams(max_new_tokens=8))
    assert generation.finish_reason == "stop"
    assert generation.token_ids == [first_token] and generation.logprobs is not None and len(generation.logprobs) == 1


def test_end_of_turn_token_is_not_in_text(hf_qwen25_policy: HFPolicy) -> None:
    tokenizer = hf_qwen25_policy.processor.tokenizer
    im_end = tokenizer.convert_tokens_to_ids("<|im_end|>")
    assert tokenizer.decode([*tokenizer.encode("ok"), im_end], skip_special_tokens=True) == "ok"


def test_chain_sized_images_take_the_real_resize_path(hf_qwen25_policy: HFPolicy) -> None:
    # 16 frames at 448 x 448 are 256 tokens each; the 840 x 840 keyframe is 900 tokens.
    frames = tuple(ImagePart(small_image(448, 448, (10 * i, 50, 90))) for i in range(16))
    turn1 = [Message(role="user", parts=(*frames, TextPart("find the dog")))]
    inputs = hf_qwen25_policy.build_inputs(turn1)
    image_id = hf_qwen25_policy.model.config.image_token_id
    assert int((inputs["input_ids"] == image_id).sum()) == 16 * 256
    keyframe = Message(role="user", parts=(ImagePart(small_image(840, 840, (1, 2, 3))), TextPart("detect it")))
    turn2 = [*turn1, Message.assistant("<answer>[]</answer>"), keyframe]
    inputs = hf_qwen25_policy.build_inputs(turn2)
    assert int((inputs["input_ids"] == image_id).sum()) == 16 * 256 + 900
    generation = hf_qwen25_policy.generate(turn2, SamplingParams(max_new_tokens=4))
    assert generation.usage["prompt_tokens"] == inputs["input_ids"].shape[1]


@pytest.mark.parametrize(
    ("family", "size", "seen"),
    [
        ("qwen2.5", (448, 448), (448, 448)),
        ("qwen2.5", (840, 840), (840, 840)),
        ("qwen2.5", (1280, 720), (1288, 728)),
        ("qwen2.5", (333, 500), (336, 504)),
        ("qwen3", (448, 448), (448, 448)),
        ("qwen3", (840, 840), (832, 832)),
        ("qwen3", (1280, 720), (1280, 704)),
    ],
)
def test_seen_size_is_the_processors_smart_resize(
    family: str, size: tuple[int, int], seen: tuple[int, int], request: pytest.FixtureRequest
) -> None:
    policy: HFPolicy = request.getfixturevalue("hf_qwen25_policy" if family == "qwen2.5" else "hf_qwen3_policy")
    assert policy.seen_size(*size) == seen
    # ... and agrees with what the processor actually does to such an image.
    processed = policy.processor.image_processor(images=[Image.new("RGB", size)], return_tensors="pt")
    _, grid_h, grid_w = processed["image_grid_thw"][0].tolist()
    patch = policy.processor.image_processor.patch_size
    assert (grid_w * patch, grid_h * patch) == seen


def test_missing_local_path_fails_fast(tmp_path: Path) -> None:
    started = time.perf_counter()
    with pytest.raises(ModelLoadError, match="not found"):
        HFPolicy.from_spec(str(tmp_path / "no-such-model"))
    assert time.perf_counter() - started < 1


def test_uncached_hub_id_fails_fast_offline(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "empty-cache"))
    started = time.perf_counter()
    with pytest.raises(ModelLoadError, match=re.escape("hf:/path/to/Qwen2.5-VL-7B-Instruct")):
        HFPolicy.from_spec("Qwen/Qwen2.5-VL-7B-Instruct")
    assert time.perf_counter() - started < 5


def test_folder_with_garbage_is_a_load_error_naming_it(tmp_path: Path) -> None:
    (tmp_path / "config.json").write_text("{ this is not json")
    (tmp_path / "model.safetensors").write_bytes(b"\x00" * 64)
    with pytest.raises(ModelLoadError, match=re.escape(str(tmp_path))):
        HFPolicy.from_spec(str(tmp_path))


def test_corrupt_weights_are_a_load_error(tiny_qwen25_dir: Path, tmp_path: Path) -> None:
    broken = tmp_path / "broken"
    shutil.copytree(tiny_qwen25_dir, broken)
    (broken / "model.safetensors").write_bytes(b"not safetensors")
    with pytest.raises(ModelLoadError, match="broken"):
        HFPolicy.from_spec(str(broken))


def test_model_of_another_kind_is_a_load_error(tmp_path: Path) -> None:
    from transformers import GPT2Config

    GPT2Config(n_layer=1, n_embd=8, n_head=2).save_pretrained(tmp_path)
    with pytest.raises(ModelLoadError, match="'gpt2' model, which does not take images"):
        HFPolicy.from_spec(str(tmp_path), box_convention="absolute")


def test_family_without_a_known_box_convention_must_name_one(
    tiny_qwen3_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delitem(BOX_CONVENTIONS, "qwen3_vl")
    with pytest.raises(SpecError, match="box_convention="):
        HFPolicy.from_spec(str(tiny_qwen3_dir))
    assert HFPolicy.from_spec(str(tiny_qwen3_dir), box_convention="norm1000").info.box_convention == "norm1000"


def test_unknown_box_convention_and_dtype_are_spec_errors(tiny_qwen3_dir: Path) -> None:
    with pytest.raises(SpecError, match="box convention"):
        HFPolicy.from_spec(str(tiny_qwen3_dir), box_convention="percent")
    with pytest.raises(SpecError, match="dtype"):
        HFPolicy.from_spec(str(tiny_qwen3_dir), dtype="int3")


def test_device_defaults_follow_the_hardware(monkeypatch: pytest.MonkeyPatch) -> None:
    from revseg.devices import pick_device

    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert pick_device(None) == torch.device("cpu")
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    assert pick_device(None) == torch.device("cuda") and pick_device("auto") == torch.device("cuda")
    # the dtype follows the device; a named one wins
    assert pick_dtype(None, "cpu") == torch.float32
    assert pick_dtype(None, "cuda") == torch.bfloat16 and pick_dtype(None, "cuda:1") == torch.bfloat16
    assert pick_dtype("fp16", "cpu") == torch.float16
    # FlashAttention-2 where its build imports, on CUDA in half precision; SDPA everywhere else
    monkeypatch.setitem(sys.modules, "flash_attn", types.ModuleType("flash_attn"))
    assert pick_attn_implementation(None, "cuda", torch.bfloat16) == "flash_attention_2"
    assert pick_attn_implementation(None, "cuda", torch.float32) == "sdpa"
    assert pick_attn_implementation(None, "cpu", torch.float32) == "sdpa"
    monkeypatch.setitem(sys.modules, "flash_attn", None)  # installed but broken: the import fails
    assert pick_attn_implementation(None, "cuda", torch.bfloat16) == "sdpa"
    assert pick_attn_implementation("eager", "cuda", torch.bfloat16) == "eager"


def test_conversation_must_end_with_a_user_turn(hf_qwen3_policy: HFPolicy) -> None:
    with pytest.raises(PolicyError, match="user message"):
        hf_qwen3_policy.generate([*first_turn(), Message.assistant("hi")], SamplingParams())


def test_importing_the_backend_and_testing_helpers_loads_no_torch() -> None:
    code = "import sys, revseg.policies.hf, revseg.testing; assert 'torch' not in sys.modules, 'torch imported'"
    subprocess.run([sys.executable, "-c", code], check=True, cwd=Path(__file__).resolve().parents[2])


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_cuda_bfloat16_logprobs_match_a_forward_pass(tiny_qwen25_dir: Path) -> None:
    policy = HFPolicy.from_spec(str(tiny_qwen25_dir))
    assert policy.device.type == "cuda" and policy.model.dtype == torch.bfloat16
    messages = first_turn()
    generation = policy.generate(messages, SamplingParams(max_new_tokens=10))
    assert generation.token_ids is not None and generation.logprobs is not None
    logits: Any = rescore(policy, messages, generation.token_ids)
    expected = chosen(torch.log_softmax(logits, -1), generation.token_ids)
    assert generation.logprobs == pytest.approx(expected, abs=0.1)  # bf16 with and without a KV cache
    sampled = policy.generate(messages, SamplingParams(temperature=1.0, max_new_tokens=10, seed=0))
    assert sampled == policy.generate(messages, SamplingParams(temperature=1.0, max_new_tokens=10, seed=0))
