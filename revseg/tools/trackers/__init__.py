"""Tracker backends, chosen by spec string: ``sam2:...``, ``hf-sam2:...``, or ``none``.

``TRACKERS`` is the one registry: scheme -> factory ``(spec, *, device=None, **options)``.
A new backend is one file plus one entry here; each factory imports its backend only
when called, so importing this package loads no torch or sam2.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any, Protocol

from revseg.errors import SpecError

if TYPE_CHECKING:
    from revseg.tools.trackers.base import Tracker

__all__ = [
    "CPU_TRACKER",
    "DEFAULT_TRACKER",
    "PAPER_TRACKER",
    "TRACKERS",
    "TrackerFactory",
    "build_tracker",
    "choose_tracker",
]

PAPER_TRACKER = "sam2:facebook/sam2.1-hiera-large"  # the paper's tracker (SAM2 Hiera-L at 1024 px), DESIGN.md 1.2
CPU_TRACKER = "sam2:facebook/sam2.1-hiera-tiny?image_size=512"
"""Without a GPU: Hiera-T (39 M parameters, not Hiera-L's 224 M) tracking at 512 px, not 1024 (see RESULTS.md)."""
DEFAULT_TRACKER = "auto"
"""Resolved by :func:`choose_tracker` when a tracker is built: the paper's on a GPU, :data:`CPU_TRACKER` without one."""


class TrackerFactory(Protocol):
    """Builds a tracker from its full spec string (scheme included)."""

    def __call__(self, spec: str, *, device: str | None = None, **options: Any) -> Tracker: ...


def _sam2(spec: str, *, device: str | None = None, **options: Any) -> Tracker:
    from revseg.tools.trackers.sam2 import Sam2Tracker

    return Sam2Tracker.from_spec(spec, device=device, **options)


def _hf_sam2(spec: str, *, device: str | None = None, **options: Any) -> Tracker:
    from revseg.tools.trackers.hf_sam2 import HFSam2Tracker

    return HFSam2Tracker.from_spec(spec, device=device, **options)


TRACKERS: dict[str, TrackerFactory] = {
    "sam2": _sam2,
    "hf-sam2": _hf_sam2,
}


def choose_tracker(device: str | None = None) -> tuple[str, str]:
    """The tracker spec for this hardware, and one line saying which and why.

    On a GPU (``device`` cuda, or None/"auto" with CUDA available) the paper's SAM2.1-hiera-large
    at 1024 px; on a CPU, :data:`CPU_TRACKER`: Hiera-L takes about 18 s a frame on two quiet
    cores (a 250-frame video over an hour), Hiera-T at 512 px about 11x less (benchmarks/RESULTS.md). Pass
    :data:`PAPER_TRACKER` (``--paper``) for the paper's configuration anywhere.
    """
    import importlib.util

    gpu = False
    if device is None or device == "auto":
        if importlib.util.find_spec("torch") is not None:
            import torch

            gpu = torch.cuda.is_available()
    else:
        gpu = device.startswith("cuda")
    if gpu:
        return PAPER_TRACKER, f"tracker: {PAPER_TRACKER} (GPU found: the paper's SAM2.1-hiera-large at 1024 px)"
    return CPU_TRACKER, (
        f"tracker: {CPU_TRACKER} (no GPU: SAM2.1-hiera-large at 1024 px takes ~18 s a frame on 2 CPU cores, "
        f"this one ~11x less; --paper for the paper's {PAPER_TRACKER})"
    )


def build_tracker(spec: str, *, device: str | None = None, **options: Any) -> Tracker | None:
    """Build the tracker a spec names; ``"none"`` gives None (the chain then stops at boxes).

    ``"auto"`` (:data:`DEFAULT_TRACKER`) is the spec :func:`choose_tracker` picks for the
    hardware; the built tracker's ``spec`` names the one chosen.

    ``device`` is a torch device string, None meaning cuda when available; ``options`` go
    to the backend's constructor (for sam2: ``offload_video_to_cpu``, ``offload_state_to_cpu``,
    ``window``; for hf-sam2: ``bounded``, ``dtype``). Options may also ride in the spec after
    ``?`` (``sam2:ID?window=300``), where they are recorded with it; keyword options win.
    Raises SpecError for an unknown or malformed spec, ModelLoadError for missing weights.
    """
    text = spec.strip()
    if text.lower() == "none":
        return None
    if text.lower() == DEFAULT_TRACKER:
        text, why = choose_tracker(device)
        logging.getLogger(__name__).info(why)
    scheme, sep, rest = text.partition(":")
    known = ", ".join([*(f"{name}:" for name in TRACKERS), "auto", "none"])
    if not sep or not rest.strip():
        raise SpecError(f"tracker spec '{spec}' is malformed: expected SCHEME:ARGS (known schemes: {known})")
    factory = TRACKERS.get(scheme)
    if factory is None:
        raise SpecError(f"unknown tracker scheme '{scheme}' in spec '{spec}' (known schemes: {known})")
    return factory(text, device=device, **options)
