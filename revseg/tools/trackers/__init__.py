"""Tracker backends, chosen by spec string: ``sam2:...``, ``hf-sam2:...``, or ``none``.

``TRACKERS`` is the one registry: scheme -> factory ``(spec, *, device=None, **options)``.
A new backend is one file plus one entry here; each factory imports its backend only
when called, so importing this package loads no torch or sam2.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Protocol

from revseg.errors import SpecError

if TYPE_CHECKING:
    from revseg.tools.trackers.base import Tracker

__all__ = ["DEFAULT_TRACKER", "TRACKERS", "TrackerFactory", "build_tracker"]

DEFAULT_TRACKER = "sam2:facebook/sam2.1-hiera-large"  # the paper's tracker (SAM2 Hiera-L), DESIGN.md 1.2


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


def build_tracker(spec: str, *, device: str | None = None, **options: Any) -> Tracker | None:
    """Build the tracker a spec names; ``"none"`` gives None (the chain then stops at boxes).

    ``device`` is a torch device string, None meaning cuda when available; ``options`` go
    to the backend's constructor (for sam2: ``offload_video_to_cpu``, ``offload_state_to_cpu``,
    ``window``; for hf-sam2: ``bounded``, ``dtype``). Options may also ride in the spec after
    ``?`` (``sam2:ID?window=300``), where they are recorded with it; keyword options win.
    Raises SpecError for an unknown or malformed spec, ModelLoadError for missing weights.
    """
    text = spec.strip()
    if text.lower() == "none":
        return None
    scheme, sep, rest = text.partition(":")
    known = ", ".join([*(f"{name}:" for name in TRACKERS), "none"])
    if not sep or not rest.strip():
        raise SpecError(f"tracker spec '{spec}' is malformed: expected SCHEME:ARGS (known schemes: {known})")
    factory = TRACKERS.get(scheme)
    if factory is None:
        raise SpecError(f"unknown tracker scheme '{scheme}' in spec '{spec}' (known schemes: {known})")
    return factory(text, device=device, **options)
