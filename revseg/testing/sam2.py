"""A tiny random SAM2 for tests: a real sam2 config and checkpoint, small enough for a CPU.

``build_tiny_sam2(out_dir)`` writes ``tiny_sam2.yaml`` and ``tiny_sam2.pt`` and returns
their paths, so ``f"sam2:{config}:{checkpoint}"`` loads it through the same code path as
a user's real weights. It runs the real sam2 video predictor (memory attention, memory
encoder, object pointers, both propagation directions) at 128 x 128 input, a few
milliseconds a frame on CPU. Its masks are random, not meaningful.
"""

from __future__ import annotations

from pathlib import Path

__all__ = ["TINY_SAM2_YAML", "build_tiny_sam2"]

# Sizes are tied together by sam2's code, not by the config schema:
# - hidden width = neck d_model = memory_attention d_model = memory_encoder in_dim =
#   mask_downsampler embed_dim = fuser CXBlock dim (the SAM heads use it with 8 heads
#   and a half-width cross-attention, so it must be a multiple of 16);
# - memory width = memory_encoder out_dim = its position encoding = cross-attention
#   kv_in_dim, and must divide the hidden width (object pointers are split into
#   hidden / memory tokens, as 256 / 64 in the released models);
# - image_size / 16 = backbone stride-16 level = RoPE feat_sizes = mask-downsampler output;
# - trunk: embed_dim doubles and heads double at every stage (16, 32, 64, 128 wide),
#   backbone_channel_list is those widths reversed; window_spec[0] must tile the
#   stride-4 grid (128 / 4 = 32); global attention only on a block that does not
#   start a stage.
TINY_SAM2_YAML = """\
# Tiny random SAM2 for tests (revseg.testing.sam2): 128 px input, hidden 64, memory 32.
model:
  _target_: sam2.modeling.sam2_base.SAM2Base
  image_encoder:
    _target_: sam2.modeling.backbones.image_encoder.ImageEncoder
    scalp: 1
    trunk:
      _target_: sam2.modeling.backbones.hieradet.Hiera
      embed_dim: 16
      num_heads: 1
      stages: [1, 1, 2, 1]
      global_att_blocks: [3]
      window_pos_embed_bkg_spatial_size: [4, 4]
      window_spec: [8, 4, 4, 2]
    neck:
      _target_: sam2.modeling.backbones.image_encoder.FpnNeck
      position_encoding:
        _target_: sam2.modeling.position_encoding.PositionEmbeddingSine
        num_pos_feats: 64
        normalize: true
        scale: null
        temperature: 10000
      d_model: 64
      backbone_channel_list: [128, 64, 32, 16]
      fpn_top_down_levels: [2, 3]
      fpn_interp_model: nearest
  memory_attention:
    _target_: sam2.modeling.memory_attention.MemoryAttention
    d_model: 64
    pos_enc_at_input: true
    num_layers: 1
    layer:
      _target_: sam2.modeling.memory_attention.MemoryAttentionLayer
      activation: relu
      dim_feedforward: 128
      dropout: 0.1
      pos_enc_at_attn: false
      d_model: 64
      pos_enc_at_cross_attn_keys: true
      pos_enc_at_cross_attn_queries: false
      self_attention:
        _target_: sam2.modeling.sam.transformer.RoPEAttention
        rope_theta: 10000.0
        feat_sizes: [8, 8]
        embedding_dim: 64
        num_heads: 1
        downsample_rate: 1
        dropout: 0.1
      cross_attention:
        _target_: sam2.modeling.sam.transformer.RoPEAttention
        rope_theta: 10000.0
        feat_sizes: [8, 8]
        rope_k_repeat: true
        embedding_dim: 64
        num_heads: 1
        downsample_rate: 1
        dropout: 0.1
        kv_in_dim: 32
  memory_encoder:
    _target_: sam2.modeling.memory_encoder.MemoryEncoder
    in_dim: 64
    out_dim: 32
    position_encoding:
      _target_: sam2.modeling.position_encoding.PositionEmbeddingSine
      num_pos_feats: 32
      normalize: true
      scale: null
      temperature: 10000
    mask_downsampler:
      _target_: sam2.modeling.memory_encoder.MaskDownSampler
      embed_dim: 64
      kernel_size: 3
      stride: 2
      padding: 1
    fuser:
      _target_: sam2.modeling.memory_encoder.Fuser
      num_layers: 1
      layer:
        _target_: sam2.modeling.memory_encoder.CXBlock
        dim: 64
        kernel_size: 7
        padding: 3
        layer_scale_init_value: 1.0e-6
        use_dwconv: true
  # Everything below as in the released sam2.1 configs.
  num_maskmem: 7
  image_size: 128
  sigmoid_scale_for_mem_enc: 20.0
  sigmoid_bias_for_mem_enc: -10.0
  use_mask_input_as_output_without_sam: true
  directly_add_no_mem_embed: true
  no_obj_embed_spatial: true
  use_high_res_features_in_sam: true
  multimask_output_in_sam: true
  iou_prediction_use_sigmoid: true
  use_obj_ptrs_in_encoder: true
  add_tpos_enc_to_obj_ptrs: true
  proj_tpos_enc_in_obj_ptrs: true
  use_signed_tpos_enc_to_obj_ptrs: true
  only_obj_ptrs_in_the_past_for_eval: true
  pred_obj_scores: true
  pred_obj_scores_mlp: true
  fixed_no_obj_ptr: true
  multimask_output_for_tracking: true
  use_multimask_token_for_obj_ptr: true
  multimask_min_pt_num: 0
  multimask_max_pt_num: 1
  use_mlp_for_obj_ptr_proj: true
  compile_image_encoder: false
"""


def build_tiny_sam2(out_dir: str | Path, *, seed: int = 0) -> tuple[str, str]:
    """Write a tiny random SAM2 config and checkpoint to ``out_dir``; return (config, checkpoint) paths.

    Deterministic for a given seed, without touching the global torch RNG. The object-score
    head is biased towards "present", so that masks are not empty on every frame (a random
    model otherwise declares the object absent everywhere and tests would check nothing).
    """
    import torch

    from revseg.tools.trackers.sam2 import instantiate_sam2

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    config = out / "tiny_sam2.yaml"
    checkpoint = out / "tiny_sam2.pt"
    config.write_text(TINY_SAM2_YAML, encoding="utf-8")
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = instantiate_sam2(config)
    head = model.sam_mask_decoder.pred_obj_score_head
    last = head.layers[-1] if hasattr(head, "layers") else head
    with torch.no_grad():
        last.bias.fill_(10.0)
    torch.save({"model": model.state_dict()}, checkpoint)
    return str(config), str(checkpoint)
