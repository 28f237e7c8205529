"""A tiny random transformers SAM2 video model for tests: loads through ``hf-sam2:DIR`` like real weights.

``build_tiny_hf_sam2(out_dir)`` saves a ``Sam2VideoModel`` and its ``Sam2VideoProcessor``
with ``save_pretrained``, so ``f"hf-sam2:{out_dir}"`` goes through the same loading code
as ``hf-sam2:facebook/sam2.1-hiera-tiny``. It runs the real streaming session (memory
attention, memory encoder, object pointers, both directions) at 256 x 256 input, a few
tens of milliseconds a frame on one CPU thread. Its masks are random, not meaningful.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

__all__ = ["TINY_HF_SAM2_SIZE", "build_tiny_hf_sam2", "tiny_hf_sam2_config"]

TINY_HF_SAM2_SIZE = 256
"""Model input size (pixels, square)."""


def tiny_hf_sam2_config(image_size: int = TINY_HF_SAM2_SIZE) -> Any:
    """A ``Sam2VideoConfig`` small enough for CPU tests, with the sizes transformers' code ties together.

    Pitfalls (transformers 5.24), each of which otherwise fails at the first tracked frame:
    - ``memory_encoder_output_channels`` stays 64: one cross-attention's key/value width is
      fixed at 64 in the memory attention;
    - the hidden width (FPN, prompt encoder, mask decoder, memory attention) must be larger
      than 64: object pointers are only split into memory-width tokens when the hidden
      width exceeds the memory width, and unsplit pointers do not concatenate with the
      spatial memories (a 4-d vs 3-d tensor); 128 splits into two tokens;
    - no global-attention block first in a Hiera stage (its window partition divides by
      zero), so the one global block is the second block of stage 3;
    - feature sizes follow the input: strides 4, 8, 16 give the backbone feature sizes,
      stride 16 the memory-attention RoPE size and the prompt encoder's embedding grid.
    """
    from transformers import Sam2VideoConfig

    s = image_size
    hidden = 128
    return Sam2VideoConfig(
        vision_config={
            "model_type": "sam2_vision_model",
            "backbone_config": {
                "model_type": "sam2_hiera_det_model",
                "hidden_size": 16,
                "num_attention_heads": 1,
                "image_size": [s, s],
                "blocks_per_stage": [1, 1, 2, 1],
                "embed_dim_per_stage": [16, 32, 64, 128],
                "num_attention_heads_per_stage": [1, 2, 4, 8],
                "window_size_per_stage": [8, 4, 4, 2],
                "global_attention_blocks": [3],
                "window_positional_embedding_background_size": [4, 4],
            },
            "backbone_channel_list": [128, 64, 32, 16],
            "backbone_feature_sizes": [[s // 4, s // 4], [s // 8, s // 8], [s // 16, s // 16]],
            "fpn_hidden_size": hidden,
        },
        prompt_encoder_config={"hidden_size": hidden, "image_size": s, "patch_size": 16},
        mask_decoder_config={
            "hidden_size": hidden,
            "mlp_dim": 256,
            "num_attention_heads": 8,
            "iou_head_hidden_dim": 64,
        },
        image_size=s,
        memory_attention_hidden_size=hidden,
        memory_attention_num_layers=1,
        memory_attention_feed_forward_hidden_size=256,
        memory_attention_rope_feat_sizes=[s // 16, s // 16],
        memory_encoder_hidden_size=hidden,
        memory_encoder_output_channels=64,
        mask_downsampler_embed_dim=hidden,
        memory_fuser_num_layers=1,
        memory_fuser_embed_dim=hidden,
        memory_fuser_intermediate_dim=256,
    )


def build_tiny_hf_sam2(out_dir: str | Path, *, seed: int = 0, image_size: int = TINY_HF_SAM2_SIZE) -> Path:
    """Save a tiny random ``Sam2VideoModel`` and its processor to ``out_dir``; return the folder.

    Deterministic for a given seed, without touching the global torch RNG. The
    object-score head is biased towards "present", so tracked masks are not empty on
    every frame (a random model otherwise declares the object gone after the keyframe).
    """
    import torch
    from transformers import Sam2ImageProcessor, Sam2VideoModel, Sam2VideoProcessor, Sam2VideoVideoProcessor

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = Sam2VideoModel(tiny_hf_sam2_config(image_size)).eval()
    with torch.no_grad():
        model.mask_decoder.pred_obj_score_head.proj_out.bias.fill_(10.0)
    model.save_pretrained(out)
    size = {"height": image_size, "width": image_size}
    processor = Sam2VideoProcessor(
        image_processor=Sam2ImageProcessor(size=size, mask_size={"height": image_size // 4, "width": image_size // 4}),
        video_processor=Sam2VideoVideoProcessor(size=size),
    )
    processor.save_pretrained(out)
    return out
