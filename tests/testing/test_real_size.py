"""Real-size models with random weights: the published sizes exactly, saved in layouts the backends load."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from revseg.testing.real_size import (
    REAL_SAM2,
    REAL_VLMS,
    build_real_hf_sam2,
    build_real_qwen_vl,
    build_real_sam2,
    fill_random_,
    real_hf_sam2_config,
    real_qwen_vl_config,
)


@pytest.mark.parametrize("name", sorted(REAL_VLMS))
def test_vlm_configs_have_the_released_checkpoints_parameter_count(name: str) -> None:
    import torch
    from transformers import AutoModelForImageTextToText

    from revseg.testing.vlm import _train_tokenizer

    config = real_qwen_vl_config(name, _train_tokenizer(REAL_VLMS[name].family))
    with torch.device("meta"):  # shapes only: no memory, no init
        model = AutoModelForImageTextToText.from_config(config)
    assert sum(p.numel() for p in model.parameters()) == REAL_VLMS[name].params


@pytest.mark.parametrize("name", sorted(REAL_SAM2))
def test_sam2_sizes_have_the_same_parameters_in_both_libraries(name: str) -> None:
    import torch
    from transformers import Sam2VideoModel

    from revseg.tools.trackers.sam2 import _resolve_config, instantiate_sam2

    with torch.device("meta"):
        hf = Sam2VideoModel(real_hf_sam2_config(name))
    ours = instantiate_sam2(_resolve_config(REAL_SAM2[name].sam2_config))  # sam2's Hiera cannot build on meta
    assert sum(p.numel() for p in hf.parameters()) == REAL_SAM2[name].params
    assert sum(p.numel() for p in ours.parameters()) == REAL_SAM2[name].params


def test_unknown_size_names_the_known_ones() -> None:
    with pytest.raises(ValueError, match=r"qwen2\.5-vl-7b"):
        real_qwen_vl_config("qwen-99b", tokenizer=None)


def test_fill_random_gives_finite_values_norm_scales_one_and_zero_biases() -> None:
    import torch

    layer = torch.nn.Sequential(torch.nn.Linear(8, 8), torch.nn.LayerNorm(8))
    with torch.no_grad():
        for p in layer.parameters():
            p.fill_(float("nan"))
    fill_random_(layer, seed=3)
    assert torch.isfinite(layer[0].weight).all() and layer[0].weight.std() > 0
    assert (layer[0].bias == 0).all() and (layer[1].weight == 1).all() and (layer[1].bias == 0).all()


@pytest.mark.slow
def test_a_shallow_3b_loads_as_an_hf_policy_and_answers(tmp_path: Path, one_torch_thread: None) -> None:
    """Real 3B widths (2048 text, 1280 vision), one layer each, small vocabulary: the hf: path end to end."""
    from revseg.policies import build_policy
    from revseg.policies.base import ImagePart, Message, TextPart
    from revseg.settings import SamplingParams

    folder = build_real_qwen_vl(
        "qwen2.5-vl-3b", tmp_path / "3b", dtype="float32", num_layers=1, vision_depth=1, vocab_size=1024
    )
    policy = build_policy(f"hf:{folder}", device="cpu")
    model = policy.model  # type: ignore[attr-defined]
    assert model.config.get_text_config().hidden_size == 2048
    assert model.config.vision_config.hidden_size == 1280
    image = Image.fromarray(np.full((56, 56, 3), 128, dtype=np.uint8))
    messages = [Message(role="user", parts=(ImagePart(image=image), TextPart(text="find the dog")))]
    generation = policy.generate(messages, SamplingParams(max_new_tokens=3, temperature=0.0))
    assert len(generation.token_ids) >= 1 and all(np.isfinite(generation.logprobs))


@pytest.mark.slow
def test_hiera_tiny_loads_through_both_tracker_specs(tmp_path: Path, one_torch_thread: None) -> None:
    from revseg.tools.trackers import build_tracker

    sam2_dir = build_real_sam2("sam2.1-hiera-tiny", tmp_path / "sam2")
    hf_dir = build_real_hf_sam2("sam2.1-hiera-tiny", tmp_path / "hf")
    native = build_tracker(f"sam2:{sam2_dir}", device="cpu")
    hf = build_tracker(f"hf-sam2:{hf_dir}", device="cpu")
    assert native is not None and hf is not None
    assert native.weights.checkpoint.name == "sam2.1_hiera_tiny.pt"  # type: ignore[attr-defined]
    assert native.weights.config.name == "sam2.1_hiera_t.yaml"  # type: ignore[attr-defined]
    frame = np.zeros((64, 96, 3), dtype=np.uint8)
    for tracker in (native, hf):
        (masks,) = tracker.segment_boxes([frame], [[(10.0, 10.0, 50.0, 40.0)]])  # type: ignore[attr-defined]
        assert masks.shape == (1, 64, 96)
