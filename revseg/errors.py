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


class MalformedResponseError(PolicyError):
    """A policy endpoint answered 200 with something that is not a completion (truncated JSON, no choices).

    Retried like a transient fault: the next attempt usually succeeds.
    """


class GraphError(RevsegError):
    """The graph was invoked without what it needs (no backends in the runtime context)."""


class InputError(RevsegError):
    """A request is malformed: a batch file line, a review decision; the message names the line or field."""


class TrackerError(RevsegError):
    """The tracker failed on a valid prompt (for example an out-of-range keyframe)."""


class OutputError(RevsegError):
    """Results could not be written (output folder not writable, disk full)."""


class StoreError(RevsegError):
    """A trajectory store is unreadable, holds records from a newer schema, or is not a store."""


class DatasetError(RevsegError):
    """A benchmark's data folder is missing files, is malformed, or names a path outside itself."""


class TrainingError(RevsegError):
    """Recorded data cannot train this model as asked (wrong behaviour policy, no token ids, no groups)."""


class InputsChangedError(TrainingError):
    """A recorded run's inputs changed since it was recorded (its video, the chat template): a rebuild would differ."""


class InputsChangedWarning(UserWarning):
    """A rebuild may not see exactly what the policy saw (lossy wire images, a moved file time, other weights)."""
