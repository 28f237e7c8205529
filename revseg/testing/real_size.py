"""Models at the published sizes with random weights: what the real checkpoints cost, without the hub.

Speed and memory do not depend on the weights' values, so a model built from the real
config with random weights costs what the downloaded one costs. The configs below are
the published ``config.json`` / sam2 yaml values, written as data (no hub is needed):

- ``qwen2.5-vl-7b``, ``qwen2.5-vl-3b`` (Qwen/Qwen2.5-VL-{7B,3B}-Instruct) and
  ``qwen3-vl-8b`` (Qwen/Qwen3-VL-8B-Instruct): language model and vision tower at their
  real widths and depths and the real vocabulary size, with the locally trained tokenizer
  and real processor of :mod:`revseg.testing.vlm` (so prompts tokenise into somewhat fewer
  text tokens than with Qwen's 151k-token BPE; image tokens, which dominate, are exact);
- ``sam2.1-hiera-large``, ``sam2.1-hiera-base-plus``, ``sam2.1-hiera-tiny`` for both the
  ``sam2`` package (its own shipped yaml) and transformers' ``Sam2VideoModel``.

Building skips the libraries' initialisers (transformers' ``no_init_weights``) and fills
every parameter once, in place, on the target device and in the target dtype: a 7B
builds in seconds on a GPU instead of minutes, and never exists in float32 first.
``num_layers`` / ``vision_depth`` / ``vocab_size`` make shallower or narrower-vocabulary
variants of the same widths, for tests and for measuring N and 2N layers where the
full depth does not fit (cost per layer is then linear). Each ``build_*`` saves a
folder that loads through the spec a user would write: ``hf:DIR``, ``hf-sam2:DIR``,
``sam2:DIR``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from revseg.testing.vlm import Family

if TYPE_CHECKING:
    import torch

__all__ = [
    "REAL_SAM2",
    "REAL_VLMS",
    "RealSam2",
    "RealVLM",
    "build_real_hf_sam2",
    "build_real_qwen_vl",
    "build_real_sam2",
    "fill_random_",
    "real_hf_sam2_config",
    "real_qwen_vl",
    "real_qwen_vl_config",
]


@dataclass(frozen=True)
class RealVLM:
    """A published Qwen-VL size: its hub id, family, language-model and vision-tower config values."""

    hub_id: str
    family: Family
    text: dict[str, Any]
    vision: dict[str, Any]
    params: int
    """Parameter count of the released checkpoint (model card), which a built model must match."""


_QWEN25_VISION = {
    "depth": 32,
    "hidden_size": 1280,
    "intermediate_size": 3420,
    "num_heads": 16,
    "in_chans": 3,
    "patch_size": 14,
    "spatial_merge_size": 2,
    "temporal_patch_size": 2,
    "window_size": 112,
    "fullatt_block_indexes": [7, 15, 23, 31],
    "tokens_per_second": 2,
    "hidden_act": "silu",
}
_QWEN25_ROPE = {"rope_type": "default", "rope_theta": 1000000.0, "mrope_section": [16, 24, 24]}

REAL_VLMS: dict[str, RealVLM] = {
    "qwen2.5-vl-7b": RealVLM(
        hub_id="Qwen/Qwen2.5-VL-7B-Instruct",
        family="qwen2.5-vl",
        text={
            "vocab_size": 152064,
            "hidden_size": 3584,
            "intermediate_size": 18944,
            "num_hidden_layers": 28,
            "num_attention_heads": 28,
            "num_key_value_heads": 4,
            "max_position_embeddings": 128000,
            "rms_norm_eps": 1e-6,
            "tie_word_embeddings": False,
            "rope_parameters": _QWEN25_ROPE,
        },
        vision=_QWEN25_VISION | {"out_hidden_size": 3584},
        params=8_292_166_656,
    ),
    "qwen2.5-vl-3b": RealVLM(
        hub_id="Qwen/Qwen2.5-VL-3B-Instruct",
        family="qwen2.5-vl",
        text={
            "vocab_size": 151936,
            "hidden_size": 2048,
            "intermediate_size": 11008,
            "num_hidden_layers": 36,
            "num_attention_heads": 16,
            "num_key_value_heads": 2,
            "max_position_embeddings": 128000,
            "rms_norm_eps": 1e-6,
            "tie_word_embeddings": True,
            "rope_parameters": _QWEN25_ROPE,
        },
        vision=_QWEN25_VISION | {"out_hidden_size": 2048},
        params=3_754_622_976,
    ),
    "qwen3-vl-8b": RealVLM(
        hub_id="Qwen/Qwen3-VL-8B-Instruct",
        family="qwen3-vl",
        text={
            "vocab_size": 151936,
            "hidden_size": 4096,
            "intermediate_size": 12288,
            "num_hidden_layers": 36,
            "num_attention_heads": 32,
            "num_key_value_heads": 8,
            "head_dim": 128,
            "max_position_embeddings": 262144,
            "rms_norm_eps": 1e-6,
            "tie_word_embeddings": False,
            "rope_parameters": {
                "rope_type": "default",
                "rope_theta": 5000000.0,
                "mrope_section": [24, 20, 20],
                "mrope_interleaved": True,
            },
        },
        vision={
            "depth": 27,
            "hidden_size": 1152,
            "intermediate_size": 4304,
            "num_heads": 16,
            "in_channels": 3,
            "patch_size": 16,
            "spatial_merge_size": 2,
            "temporal_patch_size": 2,
            "num_position_embeddings": 2304,
            "deepstack_visual_indexes": [8, 16, 24],
            "hidden_act": "gelu_pytorch_tanh",
            "out_hidden_size": 4096,
        },
        params=8_767_123_696,
    ),
}


@dataclass(frozen=True)
class RealSam2:
    """A published SAM2.1 size: sam2's yaml and checkpoint names, and the Hiera trunk in transformers' terms."""

    hub_id: str
    sam2_config: str
    checkpoint_name: str
    backbone: dict[str, Any] = field(default_factory=dict)
    params: int = 0
    """Parameter count of the built model (224.4M / 80.8M / 38.9M in the SAM 2.1 release notes)."""


REAL_SAM2: dict[str, RealSam2] = {
    # Hiera trunks from sam2's configs/sam2.1/*.yaml (embed_dim, num_heads, stages, global_att_blocks,
    # window_pos_embed_bkg_spatial_size, window_spec; the Hiera defaults where a yaml leaves them out).
    "sam2.1-hiera-large": RealSam2(
        hub_id="facebook/sam2.1-hiera-large",
        sam2_config="configs/sam2.1/sam2.1_hiera_l.yaml",
        checkpoint_name="sam2.1_hiera_large.pt",
        backbone={
            "hidden_size": 144,
            "num_attention_heads": 2,
            "blocks_per_stage": [2, 6, 36, 4],
            "embed_dim_per_stage": [144, 288, 576, 1152],
            "num_attention_heads_per_stage": [2, 4, 8, 16],
            "window_size_per_stage": [8, 4, 16, 8],
            "global_attention_blocks": [23, 33, 43],
            "window_positional_embedding_background_size": [7, 7],
        },
        params=224_446_642,
    ),
    "sam2.1-hiera-base-plus": RealSam2(
        hub_id="facebook/sam2.1-hiera-base-plus",
        sam2_config="configs/sam2.1/sam2.1_hiera_b+.yaml",
        checkpoint_name="sam2.1_hiera_base_plus.pt",
        backbone={
            "hidden_size": 112,
            "num_attention_heads": 2,
            "blocks_per_stage": [2, 3, 16, 3],
            "embed_dim_per_stage": [112, 224, 448, 896],
            "num_attention_heads_per_stage": [2, 4, 8, 16],
            "window_size_per_stage": [8, 4, 14, 7],
            "global_attention_blocks": [12, 16, 20],
            "window_positional_embedding_background_size": [14, 14],
        },
        params=80_850_178,
    ),
    "sam2.1-hiera-tiny": RealSam2(
        hub_id="facebook/sam2.1-hiera-tiny",
        sam2_config="configs/sam2.1/sam2.1_hiera_t.yaml",
        checkpoint_name="sam2.1_hiera_tiny.pt",
        backbone={
            "hidden_size": 96,
            "num_attention_heads": 1,
            "blocks_per_stage": [1, 2, 7, 2],
            "embed_dim_per_stage": [96, 192, 384, 768],
            "num_attention_heads_per_stage": [1, 2, 4, 8],
            "window_size_per_stage": [8, 4, 14, 7],
            "global_attention_blocks": [5, 7, 9],
            "window_positional_embedding_background_size": [7, 7],
        },
        params=38_962_498,
    ),
}


def _lookup(table: dict[str, Any], name: str, what: str) -> Any:
    entry = table.get(name)
    if entry is None:
        raise ValueError(f"unknown real-size {what} {name!r}; known: {', '.join(table)}")
    return entry


def fill_random_(model: Any, *, seed: int = 0, std: float = 0.02) -> Any:
    """Give every parameter a value in place, fast: matrices N(0, std), 1-d weights 1 (norm scales), biases 0.

    Meant for a model built under ``no_init_weights`` (whose parameters hold whatever the
    allocator left): one pass on the model's own device and dtype, seeded, leaving the
    global RNG alone. Buffers (rotary frequencies, position ids) are left as built.
    """
    import torch

    with torch.no_grad(), torch.random.fork_rng(devices=_cuda_devices(model)):
        torch.manual_seed(seed)
        for name, param in model.named_parameters():
            if param.dim() >= 2:
                param.normal_(0.0, std)
            elif name.endswith("bias"):
                param.zero_()
            else:
                param.fill_(1.0)
    return model


def _cuda_devices(model: Any) -> list[int]:
    return sorted({p.device.index or 0 for p in model.parameters() if p.device.type == "cuda"})


def real_qwen_vl_config(
    name: str,
    tokenizer: Any,
    *,
    num_layers: int | None = None,
    vision_depth: int | None = None,
    vocab_size: int | None = None,
) -> Any:
    """The transformers config of a published Qwen-VL size, with ``tokenizer``'s special-token ids.

    ``num_layers`` / ``vision_depth`` / ``vocab_size`` override the published depth of the
    language model, of the vision tower, and the vocabulary (None keeps the real one); full
    attention / deepstack layers past a shortened vision tower are dropped.
    """
    spec: RealVLM = _lookup(REAL_VLMS, name, "model")
    from revseg.testing.vlm import _SPECIAL_TOKENS

    ids = {t: tokenizer.convert_tokens_to_ids(t) for t in _SPECIAL_TOKENS}
    text = dict(spec.text) | {
        "bos_token_id": ids["<|endoftext|>"],
        "eos_token_id": ids["<|im_end|>"],
        "pad_token_id": ids["<|endoftext|>"],
    }
    vision = dict(spec.vision)
    if num_layers is not None:
        text["num_hidden_layers"] = num_layers
    if vocab_size is not None:
        text["vocab_size"] = vocab_size
    if text["vocab_size"] < len(tokenizer):
        raise ValueError(f"vocab_size {text['vocab_size']} is smaller than the tokenizer's {len(tokenizer)} tokens")
    if vision_depth is not None:
        vision["depth"] = vision_depth
        for key in ("fullatt_block_indexes", "deepstack_visual_indexes"):
            if key in vision:
                vision[key] = [i for i in vision[key] if i < vision_depth] or [vision_depth - 1]
    token_ids = {
        "image_token_id": ids["<|image_pad|>"],
        "video_token_id": ids["<|video_pad|>"],
        "vision_start_token_id": ids["<|vision_start|>"],
        "vision_end_token_id": ids["<|vision_end|>"],
    }
    tie = text["tie_word_embeddings"]
    if spec.family == "qwen2.5-vl":
        from transformers import Qwen2_5_VLConfig

        return Qwen2_5_VLConfig(text_config=text, vision_config=vision, tie_word_embeddings=tie, **token_ids)
    from transformers import Qwen3VLConfig

    return Qwen3VLConfig(text_config=text, vision_config=vision, tie_word_embeddings=tie, **token_ids)


def _resolve_dtype(dtype: str | torch.dtype) -> torch.dtype:
    import torch

    if isinstance(dtype, torch.dtype):
        return dtype
    value = getattr(torch, dtype, None)
    if not isinstance(value, torch.dtype):
        raise ValueError(f"unknown dtype {dtype!r}; use bfloat16, float16 or float32")
    return value


def real_qwen_vl(
    name: str,
    *,
    device: str | torch.device = "cpu",
    dtype: str | torch.dtype = "bfloat16",
    num_layers: int | None = None,
    vision_depth: int | None = None,
    vocab_size: int | None = None,
    attn_implementation: str = "sdpa",
    seed: int = 0,
) -> tuple[Any, Any]:
    """(model, processor) of a published Qwen-VL size, random weights, built in place on ``device`` in ``dtype``.

    Nothing is written to disk: for benchmarks that hold the model in memory (wrap it with
    ``HFPolicy(model, processor, info)``). See :func:`build_real_qwen_vl` for the folder.
    """
    import torch
    from transformers import GenerationConfig, Qwen2_5_VLForConditionalGeneration, Qwen3VLForConditionalGeneration

    try:
        from transformers.initialization import no_init_weights
    except ImportError:  # transformers before 5.x kept it in modeling_utils
        from transformers.modeling_utils import no_init_weights  # type: ignore[attr-defined,no-redef]

    from revseg.testing.vlm import _processor, _train_tokenizer

    spec: RealVLM = _lookup(REAL_VLMS, name, "model")
    tokenizer = _train_tokenizer(spec.family)
    processor = _processor(spec.family, tokenizer)
    config = real_qwen_vl_config(
        name, tokenizer, num_layers=num_layers, vision_depth=vision_depth, vocab_size=vocab_size
    )
    model_cls: Any = (
        Qwen2_5_VLForConditionalGeneration if spec.family == "qwen2.5-vl" else Qwen3VLForConditionalGeneration
    )
    with no_init_weights(), torch.device(device):
        model = model_cls._from_config(config, dtype=_resolve_dtype(dtype), attn_implementation=attn_implementation)
    fill_random_(model, seed=seed)
    model.eval()
    end, im_end = tokenizer.convert_tokens_to_ids(["<|endoftext|>", "<|im_end|>"])
    model.generation_config = GenerationConfig(bos_token_id=end, eos_token_id=[im_end, end], pad_token_id=end)
    return model, processor


def build_real_qwen_vl(
    name: str,
    out_dir: str | Path,
    *,
    dtype: str = "bfloat16",
    num_layers: int | None = None,
    vision_depth: int | None = None,
    vocab_size: int | None = None,
    seed: int = 0,
) -> Path:
    """Save a published Qwen-VL size with random weights to ``out_dir`` (loads as ``hf:DIR``); return the folder.

    Built on the CPU in ``dtype`` (a 7B needs about 16 GB in bfloat16 while it is saved;
    pass ``num_layers`` for a shallower one). The folder holds config, safetensors,
    generation config, tokenizer and processor, like a hub snapshot.
    """
    model, processor = real_qwen_vl(
        name, dtype=dtype, num_layers=num_layers, vision_depth=vision_depth, vocab_size=vocab_size, seed=seed
    )
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(out)
    processor.save_pretrained(out)
    return out


def build_real_sam2(name: str, out_dir: str | Path, *, seed: int = 0) -> Path:
    """Save a published SAM2.1 size for the ``sam2`` package, random weights, under its release file name.

    The folder holds ``sam2.1_hiera_<size>.pt`` (``{"model": state_dict}``, as released),
    so ``f"sam2:{folder}"`` resolves config and checkpoint exactly as for downloaded
    weights. The object-score head is biased towards "present", as in the tiny model.
    """
    import torch

    from revseg.tools.trackers.sam2 import _resolve_config, instantiate_sam2

    spec: RealSam2 = _lookup(REAL_SAM2, name, "SAM2")
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = instantiate_sam2(_resolve_config(spec.sam2_config))
    head = model.sam_mask_decoder.pred_obj_score_head
    last = head.layers[-1] if hasattr(head, "layers") else head
    with torch.no_grad():
        last.bias.fill_(10.0)
    torch.save({"model": model.state_dict()}, out / spec.checkpoint_name)
    return out


def real_hf_sam2_config(name: str) -> Any:
    """transformers' ``Sam2VideoConfig`` for a published SAM2.1 size (1024 px; the rest is transformers' default).

    transformers' defaults are sam2.1-hiera-tiny's; the larger sizes differ only in the
    Hiera trunk and the FPN's input widths (the trunk's widths reversed).
    """
    from transformers import Sam2VideoConfig

    spec: RealSam2 = _lookup(REAL_SAM2, name, "SAM2")
    backbone = {"model_type": "sam2_hiera_det_model", **spec.backbone}
    return Sam2VideoConfig(
        vision_config={
            "model_type": "sam2_vision_model",
            "backbone_config": backbone,
            "backbone_channel_list": list(reversed(spec.backbone["embed_dim_per_stage"])),
        }
    )


def build_real_hf_sam2(name: str, out_dir: str | Path, *, seed: int = 0) -> Path:
    """Save a published SAM2.1 size as transformers' ``Sam2VideoModel`` + processor (loads as ``hf-sam2:DIR``)."""
    import torch
    from transformers import Sam2ImageProcessor, Sam2VideoModel, Sam2VideoProcessor, Sam2VideoVideoProcessor

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = Sam2VideoModel(real_hf_sam2_config(name)).eval()
    with torch.no_grad():
        model.mask_decoder.pred_obj_score_head.proj_out.bias.fill_(10.0)
    model.save_pretrained(out)
    processor = Sam2VideoProcessor(image_processor=Sam2ImageProcessor(), video_processor=Sam2VideoVideoProcessor())
    processor.save_pretrained(out)
    return out
