"""A tiny random Qwen2.5-VL / Qwen3-VL, built offline, for tests that run the real code paths.

The model is randomly initialised (a few layers, small widths) but everything around it is
real: a byte-level BPE tokenizer trained here with Qwen's pre-tokenizer and special tokens,
a Qwen-style chat template, and the real processor classes with the real image-resize
settings, so a 448x448 frame and an 840x840 keyframe take the same path as with the 7B
checkpoint. The folder loads with ``AutoProcessor`` / ``AutoModelForImageTextToText`` and
through ``hf:DIR`` like any downloaded model.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any, Literal

Family = Literal["qwen2.5-vl", "qwen3-vl"]

# Special tokens in Qwen's own order; their ids follow the trained vocabulary, as in the real
# tokenizers (where they start at 151643).
_SPECIAL_TOKENS = (
    "<|endoftext|>",
    "<|im_start|>",
    "<|im_end|>",
    "<|object_ref_start|>",
    "<|object_ref_end|>",
    "<|box_start|>",
    "<|box_end|>",
    "<|quad_start|>",
    "<|quad_end|>",
    "<|vision_start|>",
    "<|vision_end|>",
    "<|vision_pad|>",
    "<|image_pad|>",
    "<|video_pad|>",
)
# Qwen3 tokenizers also carry the reasoning tags as added (non-special) tokens.
_QWEN3_ADDED_TOKENS = ("<think>", "</think>")

# The real Qwen2-VL / Qwen2.5-VL template; Qwen3-VL's differs chiefly by having no default system prompt.
_QWEN25_TEMPLATE = (
    "{% set image_count = namespace(value=0) %}{% set video_count = namespace(value=0) %}"
    "{% for message in messages %}{% if loop.first and message['role'] != 'system' %}"
    "<|im_start|>system\nYou are a helpful assistant.<|im_end|>\n{% endif %}"
    "<|im_start|>{{ message['role'] }}\n"
    "{% if message['content'] is string %}{{ message['content'] }}<|im_end|>\n"
    "{% else %}{% for content in message['content'] %}"
    "{% if content['type'] == 'image' or 'image' in content or 'image_url' in content %}"
    "{% set image_count.value = image_count.value + 1 %}"
    "{% if add_vision_id %}Picture {{ image_count.value }}: {% endif %}"
    "<|vision_start|><|image_pad|><|vision_end|>"
    "{% elif content['type'] == 'video' or 'video' in content %}"
    "{% set video_count.value = video_count.value + 1 %}"
    "{% if add_vision_id %}Video {{ video_count.value }}: {% endif %}"
    "<|vision_start|><|video_pad|><|vision_end|>"
    "{% elif 'text' in content %}{{ content['text'] }}{% endif %}{% endfor %}<|im_end|>\n"
    "{% endif %}{% endfor %}{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)
_QWEN3_TEMPLATE = _QWEN25_TEMPLATE.replace(
    "{% if loop.first and message['role'] != 'system' %}"
    "<|im_start|>system\nYou are a helpful assistant.<|im_end|>\n{% endif %}",
    "",
)

# Text the tokenizer is trained on: the chain's prompts, answers in both JSON styles, digits.
_P1 = (
    "Here is an {second}-second video represented by {nframes} frames (fps=2). Please first think deeply "
    "based on the given video, and then find '{question}' with temporal timestamp and detailed object "
    "description for spatial grounding. Compare the difference between all possible objects and find the "
    "object that most matches the query. Carefully identify all frames and select the keyframe that will "
    "minimize the effort for a segmentation model to find the target object. Prioritize frame where the "
    "target object is clearly visible and low occlusion, large enough in image area, visually distinct from "
    "background and other objects, minimally motion-blurred, and centered. Describe the static appearance "
    "of the target object in the selected keyframe in detail, to aid subsequent spatial grounding. The "
    "reasoning process and answer must be enclosed within <think> </think> and <answer> </answer> tags, "
    "respectively. Output the keyframe index (0-{last}) and specific description of the target object in "
    "that frame in JSON format. i.e., <think> reasoning process here </think> <answer> [{{'frame_idx': 7, "
    "'object description': 'the red triangular stone on the far left'}}] </answer>."
)
_P2 = "This is the extracted keyframe, please detect '{description}' with bbox coordinates in JSON format."
_QUERIES = (
    "the dog on the left",
    "the animal most likely to win the race",
    "the person riding the bike",
    "the red car that turns right",
    "the cat sleeping on the sofa",
    "the bird flying away",
)


def _corpus() -> list[str]:
    """A small deterministic corpus so that prompts and answers tokenize into few pieces."""
    lines = ["You are a helpful assistant.", "system", "user", "assistant", "none", "no target"]
    for i, query in enumerate(_QUERIES):
        lines.append(_P1.format(second=8, nframes=16, question=query, last=15))
        lines.append(_P2.format(description=query))
        lines.append(f"<think> The {query.split()[1]} is visible in frame {i}. </think>")
        lines.append(f"<answer> [{{'frame_idx': {i}, 'object description': '{query}'}}] </answer>")
        lines.append(f'<answer> [{{"frame_idx": {i + 7}, "object description": "{query}"}}] </answer>')
        lines.append(f'[{{"bbox_2d": [{12 * i}, {34 + i}, {560 + i}, {839 - i}], "label": "{query}"}}]')
        lines.append(f'```json\n[\n\t{{"bbox_2d": [{i}, {i + 100}, {i + 200}, {i + 300}], "label": "object"}}\n]\n```')
    lines.extend(" ".join(str(n) for n in range(k, k + 50)) for k in range(0, 1000, 50))
    return lines


def _train_tokenizer(family: Family) -> Any:
    """Train a byte-level BPE with Qwen2's pre-tokenizer and wrap it as the real ``Qwen2Tokenizer``."""
    from tokenizers import Regex, Tokenizer, decoders, models, normalizers, pre_tokenizers, trainers
    from transformers import AddedToken, Qwen2Tokenizer
    from transformers.models.qwen2.tokenization_qwen2 import PRETOKENIZE_REGEX

    raw = Tokenizer(models.BPE())
    raw.normalizer = normalizers.NFC()
    raw.pre_tokenizer = pre_tokenizers.Sequence(
        [
            pre_tokenizers.Split(Regex(PRETOKENIZE_REGEX), behavior="isolated", invert=False),
            pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False),
        ]
    )
    raw.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=768, min_frequency=2, show_progress=False, initial_alphabet=pre_tokenizers.ByteLevel.alphabet()
    )
    raw.train_from_iterator(_corpus(), trainer=trainer)
    model_state = json.loads(raw.to_str())["model"]
    # The BPE model wants merges as pairs, whatever Qwen2Tokenizer's annotations say; no unk, as in Qwen's own.
    options: dict[str, Any] = {
        "vocab": model_state["vocab"],
        "merges": [tuple(m) if isinstance(m, list) else tuple(m.split(" ")) for m in model_state["merges"]],
        "unk_token": None,
        "eos_token": "<|endoftext|>",
        "pad_token": "<|endoftext|>",
        "model_max_length": 131072,
        "clean_up_tokenization_spaces": False,
    }
    tokenizer = Qwen2Tokenizer(**options)
    tokenizer.add_special_tokens(
        {"additional_special_tokens": [AddedToken(t, special=True, normalized=False) for t in _SPECIAL_TOKENS]}
    )
    tokenizer.eos_token = "<|im_end|>"  # set after adding, so ids keep Qwen's order (<|endoftext|> first)
    if family == "qwen3-vl":
        tokenizer.add_tokens([AddedToken(t, special=False, normalized=False) for t in _QWEN3_ADDED_TOKENS])
    return tokenizer


def _processor(family: Family, tokenizer: Any) -> Any:
    """The real processor with the released checkpoints' image settings (and real smart-resize)."""
    from transformers import Qwen2VLImageProcessor

    if family == "qwen2.5-vl":
        from transformers import Qwen2_5_VLProcessor, Qwen2VLVideoProcessor

        # Qwen2.5-VL-7B-Instruct's preprocessor_config.json: min/max pixels, CLIP mean/std, patch 14.
        image_processor = Qwen2VLImageProcessor(
            min_pixels=3136, max_pixels=12845056, patch_size=14, temporal_patch_size=2, merge_size=2
        )
        return Qwen2_5_VLProcessor(
            image_processor=image_processor,
            tokenizer=tokenizer,
            video_processor=Qwen2VLVideoProcessor(),
            chat_template=_QWEN25_TEMPLATE,
        )
    from transformers import Qwen3VLProcessor, Qwen3VLVideoProcessor

    # Qwen3-VL's preprocessor_config.json: patch 16, mean/std 0.5, 64Ki..16Mi pixels.
    image_processor = Qwen2VLImageProcessor(
        size={"shortest_edge": 65536, "longest_edge": 16777216},
        patch_size=16,
        temporal_patch_size=2,
        merge_size=2,
        image_mean=[0.5, 0.5, 0.5],
        image_std=[0.5, 0.5, 0.5],
    )
    return Qwen3VLProcessor(
        image_processor=image_processor,
        tokenizer=tokenizer,
        video_processor=Qwen3VLVideoProcessor(),
        chat_template=_QWEN3_TEMPLATE,
    )


def _config(family: Family, tokenizer: Any, hidden_size: int = 64, num_layers: int = 2) -> Any:
    """A few-layer config whose vocabulary and vision-token ids match ``tokenizer``.

    Attention heads stay 16 wide whatever ``hidden_size`` (the M-RoPE sections below
    assume it); the vision tower is half as wide as the language model and as deep.
    """
    ids = {t: tokenizer.convert_tokens_to_ids(t) for t in _SPECIAL_TOKENS}
    token_ids = {
        "image_token_id": ids["<|image_pad|>"],
        "video_token_id": ids["<|video_pad|>"],
        "vision_start_token_id": ids["<|vision_start|>"],
        "vision_end_token_id": ids["<|vision_end|>"],
    }
    text: dict[str, Any] = {
        "vocab_size": len(tokenizer),
        "hidden_size": hidden_size,
        "intermediate_size": 2 * hidden_size,
        "num_hidden_layers": num_layers,
        "num_attention_heads": hidden_size // 16,
        "num_key_value_heads": hidden_size // 32,
        "max_position_embeddings": 32768,
        "bos_token_id": ids["<|endoftext|>"],
        "eos_token_id": ids["<|im_end|>"],
        "pad_token_id": ids["<|endoftext|>"],
        "initializer_range": 0.1,  # wider than the real 0.02 so the random model's next-token choices differ
    }
    vision: dict[str, Any] = {
        "depth": num_layers,
        "hidden_size": hidden_size // 2,
        "intermediate_size": hidden_size,
        "num_heads": hidden_size // 32,
        "out_hidden_size": hidden_size,
    }
    if family == "qwen2.5-vl":
        from transformers import Qwen2_5_VLConfig

        # head_dim 16: the three M-RoPE sections (t, h, w) must sum to head_dim / 2.
        text["rope_parameters"] = {"rope_type": "default", "rope_theta": 1000000.0, "mrope_section": [2, 3, 3]}
        vision |= {
            "patch_size": 14,
            "window_size": 112,
            "fullatt_block_indexes": [num_layers - 1],
            "spatial_merge_size": 2,
        }
        return Qwen2_5_VLConfig(text_config=text, vision_config=vision, **token_ids)
    from transformers import Qwen3VLConfig

    text["head_dim"] = 16
    text["rope_parameters"] = {
        "rope_type": "default",
        "rope_theta": 5000000.0,
        "mrope_section": [4, 2, 2],
        "mrope_interleaved": True,
    }
    vision |= {"patch_size": 16, "num_position_embeddings": 256, "deepstack_visual_indexes": [num_layers - 1]}
    return Qwen3VLConfig(text_config=text, vision_config=vision, **token_ids)


def build_tiny_qwen_vl(
    out_dir: str | Path,
    family: Family = "qwen2.5-vl",
    *,
    seed: int = 0,
    hidden_size: int = 64,
    num_layers: int = 2,
) -> Path:
    """Build a tiny random Qwen-VL checkpoint in ``out_dir`` and return that folder.

    Fully offline and deterministic for a given ``seed`` (same weights, same tokenizer).
    The folder holds what a hub snapshot holds (config, safetensors weights, generation
    config, tokenizer, processor configs, chat template), so it loads through the same
    code a user's model does. ``family`` is ``"qwen2.5-vl"`` (absolute-pixel boxes) or
    ``"qwen3-vl"`` (0-1000 boxes). ``hidden_size`` (a multiple of 32) and ``num_layers``
    size the language model and the vision tower, for experiments that need a model
    that can learn a little; the defaults are the smallest that run the real code paths.
    """
    if family not in ("qwen2.5-vl", "qwen3-vl"):
        raise ValueError(f"unknown tiny model family {family!r}; use 'qwen2.5-vl' or 'qwen3-vl'")
    if hidden_size < 64 or hidden_size % 32 or num_layers < 1:
        raise ValueError(
            f"hidden_size must be a multiple of 32 from 64 up and num_layers >= 1, got {hidden_size}, {num_layers}"
        )
    import torch
    from transformers import GenerationConfig, Qwen2_5_VLForConditionalGeneration, Qwen3VLForConditionalGeneration

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    tokenizer = _train_tokenizer(family)
    processor = _processor(family, tokenizer)
    config = _config(family, tokenizer, hidden_size, num_layers)
    model_cls: Any = Qwen2_5_VLForConditionalGeneration if family == "qwen2.5-vl" else Qwen3VLForConditionalGeneration
    # Seed the weights without disturbing the caller's global RNG stream.
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = model_cls(config).eval()
    end, im_end = tokenizer.convert_tokens_to_ids(["<|endoftext|>", "<|im_end|>"])
    # Like the released checkpoints: stop on either end token. Sampling defaults are deliberately absent.
    model.generation_config = GenerationConfig(bos_token_id=end, eos_token_id=[im_end, end], pad_token_id=end)
    model.save_pretrained(out)
    processor.save_pretrained(out)
    return out


def tiny_model_fingerprint(model_dir: str | Path) -> str:
    """A short hash of a built folder's weights and tokenizer, to check builds are reproducible."""
    digest = hashlib.sha256()
    for name in ("model.safetensors", "tokenizer.json"):
        digest.update((Path(model_dir) / name).read_bytes())
    return digest.hexdigest()[:16]
