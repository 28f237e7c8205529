"""Tiny random models for tests: ours and users' own.

Everything here builds locally, with no hub: a tiny Qwen2.5-VL / Qwen3-VL with a small
locally trained tokenizer and the real processor, a tiny SAM2 checkpoint for the sam2
package and a tiny transformers SAM2 video model. Each is saved to disk and loaded back
through the same spec path (``hf:DIR``, ``sam2:CFG:CKPT``, ``hf-sam2:DIR``)
a user would use, so tests exercise the real loading code. ``revseg.testing.real_size``
builds the published sizes (Qwen2.5-VL-7B/3B, Qwen3-VL-8B, SAM2.1 Hiera-L/B+/T) with
random weights, for speed and memory figures at real size.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from revseg._lazy import lazy_getattr

if TYPE_CHECKING:
    from revseg.testing.hf_sam2 import build_tiny_hf_sam2
    from revseg.testing.real_size import build_real_hf_sam2, build_real_qwen_vl, build_real_sam2, real_qwen_vl
    from revseg.testing.sam2 import build_tiny_sam2
    from revseg.testing.vlm import build_tiny_qwen_vl, tiny_model_fingerprint

# Public name -> module that defines it. Loaded on first use, so `import revseg.testing` stays free of torch.
_EXPORTS = {
    "build_tiny_qwen_vl": "revseg.testing.vlm",
    "tiny_model_fingerprint": "revseg.testing.vlm",
    "build_tiny_sam2": "revseg.testing.sam2",
    "build_tiny_hf_sam2": "revseg.testing.hf_sam2",
    "build_real_qwen_vl": "revseg.testing.real_size",
    "real_qwen_vl": "revseg.testing.real_size",
    "build_real_sam2": "revseg.testing.real_size",
    "build_real_hf_sam2": "revseg.testing.real_size",
}

__all__ = [
    "build_real_hf_sam2",
    "build_real_qwen_vl",
    "build_real_sam2",
    "build_tiny_hf_sam2",
    "build_tiny_qwen_vl",
    "build_tiny_sam2",
    "real_qwen_vl",
    "tiny_model_fingerprint",
]


__getattr__ = lazy_getattr(__name__, _EXPORTS)
