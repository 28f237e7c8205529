"""Does a rebuild see what the behaviour policy saw? Recorded provenance against the inputs at hand.

Training rebuilds each rollout's model inputs from its record (:mod:`revseg.rl.sequences`):
the video by path, the prompt through the trainer's own processor. The record keeps
fingerprints of what that depends on (:mod:`revseg.provenance`): the video file's bytes
and modification time, the chat template's hash, the weights' revision, and how images
went on the wire. :func:`check_rebuild` compares them with what a rebuild would use now.

What we decided, change by change:

- **Video bytes differ** (or the video is gone): an error. The frames are not the ones
  the policy answered about, so its log-probs would be scored on other pixels.
- **Chat template differs**: an error. The prompt tokens around every answer change,
  so the recorded tokens no longer sit in the context they were sampled in.
- **Video modification time differs, bytes the same**: a warning. Copying a dataset
  (``cp``, a download) resets times without touching content.
- **Lossy wire images** (``jpeg:95``, an API backend told to send JPEG): a warning. The
  server's model saw compressed frames; the rebuild uses the decoded video, so pixel
  inputs differ by the compression error. Collect with PNG (the default) for exact rebuilds.
- **Other weights than the trainer's model** (revisions differ): a warning. The records
  are then off-policy for this model; GRPO's clipped importance ratio is built for that.

Records older than these fields carry none of them and pass unchecked.
"""

from __future__ import annotations

import warnings
from collections.abc import Iterable
from dataclasses import dataclass

from revseg.errors import InputsChangedError, InputsChangedWarning
from revseg.provenance import video_stat
from revseg.trajectory import Trajectory


@dataclass(frozen=True)
class InputChange:
    """One way a rebuild of ``run_id`` would differ from what its policy saw; ``fatal`` ones stop training."""

    run_id: str
    what: str  # "video", "video time", "chat template", "image encoding", "model revision"
    detail: str
    fatal: bool

    def __str__(self) -> str:
        return f"{self.what}: {self.detail}"


def input_changes(
    trajectory: Trajectory, *, chat_template_sha256: str | None = None, model_revision: str | None = None
) -> list[InputChange]:
    """How rebuilding ``trajectory`` now would differ from the run: [] when everything recorded still matches.

    ``chat_template_sha256`` and ``model_revision`` describe the model the rebuild uses
    (``revseg.provenance.template_sha256`` of its processor's template, ``model_revision``
    of its folder); None skips that comparison.
    """
    out: list[InputChange] = []

    def change(what: str, detail: str, fatal: bool) -> None:
        out.append(InputChange(trajectory.run_id, what, detail, fatal))

    video = trajectory.video
    if video.file_bytes is not None:
        now = video_stat(video.path)
        if now is None:
            change("video", f"{video.path} is gone or unreadable", True)
        elif now[0] != video.file_bytes:
            change("video", f"{video.path} holds {now[0]} bytes, {video.file_bytes} when recorded", True)
        elif video.modified_ns is not None and now[1] != video.modified_ns:
            change("video time", f"{video.path} was modified after it was recorded (same size: copied?)", False)
    info = trajectory.policy
    if info.chat_template_sha256 and chat_template_sha256 and info.chat_template_sha256 != chat_template_sha256:
        change(
            "chat template",
            f"recorded with template {info.chat_template_sha256[:12]}, the rebuild's processor has "
            f"{chat_template_sha256[:12]}",
            True,
        )
    if info.image_encoding and info.image_encoding != "png":
        change("image encoding", f"{info.spec} sent images as {info.image_encoding}: the rebuild's are lossless", False)
    if info.revision and model_revision and info.revision != model_revision:
        change("model revision", f"recorded with {info.revision}, the model at hand is {model_revision}", False)
    return out


def check_rebuild(
    trajectories: Iterable[Trajectory],
    *,
    chat_template_sha256: str | None = None,
    model_revision: str | None = None,
    strict: bool = True,
) -> list[InputChange]:
    """Every change :func:`input_changes` finds across ``trajectories``; raise on fatal ones, warn on the rest.

    Raises :class:`~revseg.errors.InputsChangedError` naming the first few fatal changes
    (with ``strict=False`` they are warned about instead); other changes give one
    :class:`~revseg.errors.InputsChangedWarning` per kind. Returns them all.
    """
    changes = [
        c
        for t in trajectories
        for c in input_changes(t, chat_template_sha256=chat_template_sha256, model_revision=model_revision)
    ]
    fatal = [c for c in changes if c.fatal]
    if fatal and strict:
        listed = "; ".join(f"run {c.run_id[:12]}: {c}" for c in fatal[:3])
        more = f" (and {len(fatal) - 3} more)" if len(fatal) > 3 else ""
        raise InputsChangedError(
            f"{len(fatal)} recorded run(s) cannot be rebuilt as the policy saw them: {listed}{more}. "
            "Restore the videos and model files they were recorded with, or collect again"
        )
    by_kind: dict[str, list[InputChange]] = {}
    for c in [c for c in changes if not (strict and c.fatal)]:
        by_kind.setdefault(c.what, []).append(c)
    for what, found in by_kind.items():
        warnings.warn(
            f"{len(found)} recorded run(s) rebuild with a changed {what}: {found[0].detail}",
            InputsChangedWarning,
            stacklevel=2,
        )
    return changes
