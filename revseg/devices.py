"""Which device a local model runs on: one rule for policies and trackers alike."""

from __future__ import annotations

from typing import TYPE_CHECKING

from revseg.errors import ModelLoadError

if TYPE_CHECKING:
    import torch


def pick_device(device: str | None, *, what: str = "model") -> torch.device:
    """``None``/""/"auto" -> cuda when available, else cpu; anything else as torch spells it.

    Backends default to "cuda" or "cpu" inconsistently, so the device is always chosen here
    and passed explicitly. An unknown name, or cuda without a GPU, is a ModelLoadError that
    names ``what`` asked for it.
    """
    import torch

    if device in (None, "", "auto"):
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    assert device is not None
    try:
        chosen = torch.device(device)
    except (RuntimeError, ValueError) as exc:
        raise ModelLoadError(f"unknown {what} device '{device}': {exc}") from exc
    if chosen.type == "cuda" and not torch.cuda.is_available():
        raise ModelLoadError(f"{what} device '{device}' requested but CUDA is not available; use --device cpu")
    return chosen
