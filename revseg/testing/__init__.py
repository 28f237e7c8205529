"""Tiny random models for tests: ours and users' own.

Everything here builds locally, with no hub: a tiny Qwen2.5-VL / Qwen3-VL with a small
locally trained tokenizer and the real processor, and a tiny SAM2 checkpoint. Each is
saved to disk and loaded back through the same spec path (``hf:DIR``, ``sam2:CFG:CKPT``)
a user would use, so tests exercise the real loading code.
"""
