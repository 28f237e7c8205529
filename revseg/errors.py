"""The one exception hierarchy of revseg.

Exceptions are for broken inputs and broken backends; a model answer that does not
parse is an *outcome* (see ``revseg.policies.parsing``), never an exception. Every
message names the file, frame or spec at fault and says what to do about it, so the
CLI can print it as one line.
"""

from __future__ import annotations


class RevsegError(Exception):
    """Base class: everything revseg raises on purpose derives from it."""


class VideoError(RevsegError):
    """A video or frame folder is missing, empty, undecodable or inconsistent."""


class SpecError(RevsegError):
    """A backend spec string (``hf:...``, ``openai:...``, ``sam2:...``) is malformed or unknown."""


class ModelLoadError(RevsegError):
    """Weights or a processor could not be loaded (not found locally, hub unreachable)."""


class PolicyError(RevsegError):
    """A policy backend failed to produce an answer (API error after retries, OOM, ...)."""


class TrackerError(RevsegError):
    """The tracker failed on a valid prompt (for example an out-of-range keyframe)."""


class OutputError(RevsegError):
    """Results could not be written (output folder not writable, disk full)."""
