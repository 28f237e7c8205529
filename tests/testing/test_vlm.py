"""The tiny Qwen-VL builder: reproducible, loadable by the Auto classes, and consistent with itself."""

from __future__ import annotations

from pathlib import Path

import pytest
from PIL import Image

from revseg.testing import build_tiny_qwen_vl, tiny_model_fingerprint


@pytest.fixture(params=["qwen2.5-vl", "qwen3-vl"])
def tiny_dir(request: pytest.FixtureRequest) -> Path:
    return request.getfixturevalue("tiny_qwen25_dir" if request.param == "qwen2.5-vl" else "tiny_qwen3_dir")


def test_same_seed_builds_the_same_checkpoint(tiny_qwen25_dir: Path, tmp_path: Path) -> None:
    again = build_tiny_qwen_vl(tmp_path / "again", family="qwen2.5-vl")
    assert tiny_model_fingerprint(again) == tiny_model_fingerprint(tiny_qwen25_dir)
    other = build_tiny_qwen_vl(tmp_path / "other", family="qwen2.5-vl", seed=1)
    assert tiny_model_fingerprint(other) != tiny_model_fingerprint(tiny_qwen25_dir)


def test_auto_classes_load_the_real_processor_and_model(tiny_dir: Path) -> None:
    from transformers import AutoModelForImageTextToText, AutoProcessor

    processor = AutoProcessor.from_pretrained(tiny_dir)
    model = AutoModelForImageTextToText.from_pretrained(tiny_dir)
    expected = {"qwen2_5_vl": "Qwen2_5_VLProcessor", "qwen3_vl": "Qwen3VLProcessor"}[model.config.model_type]
    assert type(processor).__name__ == expected
    assert type(processor.image_processor).__name__ == "Qwen2VLImageProcessor"
    tokenizer = processor.tokenizer
    assert model.config.get_text_config().vocab_size == len(tokenizer)
    tokens = {
        "image_token_id": "<|image_pad|>",
        "video_token_id": "<|video_pad|>",
        "vision_start_token_id": "<|vision_start|>",
        "vision_end_token_id": "<|vision_end|>",
    }
    for name, token in tokens.items():
        assert getattr(model.config, name) == tokenizer.convert_tokens_to_ids(token)
    assert tokenizer.eos_token == "<|im_end|>"
    ends = tokenizer.convert_tokens_to_ids(["<|im_end|>", "<|endoftext|>"])
    assert set(model.generation_config.eos_token_id) == set(ends)


def test_tokenizer_round_trips_chain_text_in_few_tokens(tiny_qwen25_dir: Path) -> None:
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(tiny_qwen25_dir)
    answer = "<think> it is in frame 3 </think> <answer> [{'frame_idx': 3, 'object description': 'the dog'}] </answer>"
    ids = tokenizer.encode(answer, add_special_tokens=False)
    assert tokenizer.decode(ids) == answer
    assert len(ids) < len(answer) / 2, "the corpus should have taught the tokenizer the chain's words"
    assert tokenizer.decode(tokenizer.encode("ünïcødé ☃ 12345")) == "ünïcødé ☃ 12345"  # byte-level: nothing is unknown


def test_chat_template_places_vision_tokens_like_qwen(tiny_dir: Path) -> None:
    from transformers import AutoProcessor

    processor = AutoProcessor.from_pretrained(tiny_dir)
    conversation = [
        {
            "role": "user",
            "content": [{"type": "image", "image": Image.new("RGB", (64, 64))}, {"type": "text", "text": "hi"}],
        },
        {"role": "assistant", "content": "ok"},
        {"role": "user", "content": [{"type": "text", "text": "again"}]},
    ]
    text = processor.apply_chat_template(conversation, add_generation_prompt=True)
    assert "<|vision_start|><|image_pad|><|vision_end|>hi<|im_end|>\n" in text
    assert "<|im_start|>assistant\nok<|im_end|>\n<|im_start|>user\nagain<|im_end|>\n" in text
    assert text.endswith("<|im_start|>assistant\n")
    assert text.startswith("<|im_start|>system\n") == (processor.__class__.__name__ == "Qwen2_5_VLProcessor")


def test_unknown_family_is_refused(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="unknown tiny model family"):
        build_tiny_qwen_vl(tmp_path, family="llava")  # type: ignore[arg-type]
