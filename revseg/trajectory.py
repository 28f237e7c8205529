"""The trajectory record: what one run of the chain saw, said and produced.

This is the core record that agents write and evals, rl and reports read (DESIGN.md 2.2).
It holds enough to rebuild the exact model inputs for training: the video reference,
the sampled frame indices, the sizes frames were resized to, the prompt set and each
turn's prompt, plus the behaviour policy's token ids and log-probs when the backend
returned them. It never holds pixels or masks, only references to where they were written.
"""

from __future__ import annotations

import json
import uuid
from datetime import UTC, datetime
from enum import StrEnum
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from revseg.errors import OutputError
from revseg.settings import ChainSettings, SamplingParams

SCHEMA_VERSION = "3"
SUPPORTED_SCHEMA_VERSIONS = frozenset({"1", "2", "3"})
"""Record versions this code reads. 2 added ``group_size``; 3 added turns of any kind (``zoom``, ``verify``,
``reselect``), ``TurnRecord.overlay``/``attempt`` and ``Trajectory.attempts`` (the look_again program). An
older record reads with them unset: it holds the paper's interpret and ground turns only."""

BoxXYXY = tuple[float, float, float, float]
BoxConvention = Literal["absolute", "norm1000"]
TokenSource = Literal["generated", "logprob_tokens", "retokenised"]
"""Where a turn's token ids came from: the sampler itself (``generated``: the hf backend, vLLM's
``token_ids``), the ``token_id:N`` strings of a server's log-prob entries (``logprob_tokens``:
older vLLM with ``return_tokens_as_token_ids``; exact too), or the answer text re-tokenised
with a local tokenizer (``retokenised``: approximate, so are log-probs paired with them)."""


class Status(StrEnum):
    """How a run ended. Everything but ``ok`` and ``no_target`` is a failure kind."""

    OK = "ok"
    NO_TARGET = "no_target"
    FAILED_SELECT_FRAMES = "failed_select_frames"  # turn 1 did not parse: stopped after one turn
    FAILED_GROUND = "failed_ground"  # turn 2 did not parse: no masks
    POLICY_ERROR = "policy_error"  # the backend itself failed (API error, OOM)
    TRACKER_ERROR = "tracker_error"
    PENDING_REVIEW = "pending_review"  # paused at a human review point (graph built with review=True)

    @property
    def failed(self) -> bool:
        """True for the statuses that count as a failed prediction."""
        return self not in (Status.OK, Status.NO_TARGET)


class VideoRef(BaseModel):
    """Where the video is and what it looks like; never its pixels."""

    model_config = ConfigDict(frozen=True)

    path: str
    num_frames: int
    width: int
    height: int
    fps: float | None = None
    backend: str = Field(description="Frame reader that decoded it (folder, decord, pyav, ...).")
    file_bytes: int | None = Field(
        None, description="Size of the file (or a frame folder's files) when read: a rebuild checks it is unchanged."
    )
    modified_ns: int | None = Field(None, description="Its modification time (ns since the epoch) when read.")


class PolicyInfo(BaseModel):
    """The behaviour policy's identity, so training can tell on- from off-policy data.

    ``revision``, ``chat_template_sha256`` and ``image_encoding`` are what a rebuild of
    the policy's inputs depends on beyond its name (``revseg.provenance``); they are None
    in records older than them and where a backend cannot know them (an API model's weights).
    """

    model_config = ConfigDict(frozen=True)

    spec: str
    backend: str
    model: str
    box_convention: BoxConvention = "absolute"
    revision: str | None = Field(
        None, description="The weights: 'hub:<commit>' for a hub snapshot, 'local:<digest>' for a folder (hf)."
    )
    chat_template_sha256: str | None = Field(None, description="SHA-256 of the chat template that rendered prompts.")
    image_encoding: str | None = Field(
        None, description="How images went on the wire (API backends): 'png' (lossless) or 'jpeg:95'."
    )


class ServerExchange(BaseModel):
    """What an API backend asked its server for beyond the plain chat-completions fields, and what came back.

    ``asked``: the optional fields sent with the request that answered (``logprobs``,
    ``return_token_ids``, ``return_tokens_as_token_ids``, ``seed``, ``top_k``).
    ``refused``: fields this server answered 400/422 to, so they were left out (a refused
    ``seed`` means the answer was not seeded). ``returned``: which of ``logprobs`` and
    ``token_ids`` the answer carried; what is missing here is absent, not empty.
    """

    asked: list[str] = Field(default_factory=list)
    refused: list[str] = Field(default_factory=list)
    returned: list[str] = Field(default_factory=list)


TurnKind = Literal["interpret", "ground", "zoom", "verify", "reselect"]
"""What a model turn did. The paper's chain has ``interpret`` then one ``ground`` per target; the
look_again program adds ``zoom`` (new frames inside a window of the last view), ``verify`` (the
tracked mask drawn on a few frames and the keyframe: accept or reject) and ``reselect`` (another
keyframe after a rejection). Each of its turns continues one conversation, in record order."""


class TurnRecord(BaseModel):
    """One model turn: the prompt it got, the images it saw, what it answered and how that parsed."""

    name: TurnKind
    prompt: str
    image_frames: list[int] = Field(description="Original frame indices of the images attached to this turn.")
    image_size: tuple[int, int] = Field(description="(width, height) the images were resized to before the policy.")
    seen_size: tuple[int, int] | None = Field(None, description="(width, height) after the model's own resize.")
    response: str | None = None
    token_ids: list[int] | None = None
    logprobs: list[float] | None = None
    logprobs_approximate: bool = False
    token_source: TokenSource | None = Field(
        None, description="Where token_ids came from (None: no ids, or a record older than this field)."
    )
    exchange: ServerExchange | None = Field(
        None, description="API backends: the optional fields asked, refused by the server, and returned."
    )
    parse_ok: bool = False
    parse_reason: str | None = None
    parsed: dict[str, Any] | None = None
    target: int | None = Field(None, description="For ground turns: index into Trajectory.targets.")
    overlay: str | None = Field(
        None, description="verify turns: the masks.json whose masks were drawn on this turn's images."
    )
    attempt: int | None = Field(
        None, description="look_again: the grounding attempt (index into Trajectory.attempts) this turn belongs to."
    )
    duration_s: float = 0.0


class Target(BaseModel):
    """One object the model named in turn 1, and where turn 2 put it."""

    description: str
    sample_idx: int = Field(description="Keyframe as the model said it: an index into the sampled frames.")
    frame_index: int = Field(description="Keyframe as an index into the original video.")
    raw_box: list[float] | None = Field(None, description="The box exactly as the model wrote it.")
    box: BoxXYXY | None = Field(None, description="x1, y1, x2, y2 in original-frame pixels.")
    label: str | None = None


class Attempt(BaseModel):
    """One grounding attempt of the look_again program: targets, their masks, and verify's verdict.

    A rejected attempt stays in the record (with its masks moved to their own folder); the
    last attempt's targets are ``Trajectory.targets``.
    """

    targets: list[Target] = Field(default_factory=list)
    view: list[int] = Field(default_factory=list, description="Original frame indices the keyframe was chosen among.")
    masks: str | None = Field(None, description="Its masks.json, when it was tracked.")
    verdict: Literal["accept", "reject"] | None = Field(None, description="verify's verdict; None: not verified.")
    why: str | None = Field(None, description="The reason verify gave for a rejection.")


class Trajectory(BaseModel):
    """A versioned record of one run of the chain (DESIGN.md 2.2)."""

    schema_version: str = SCHEMA_VERSION
    run_id: str = Field(default_factory=lambda: uuid.uuid4().hex)
    group_id: str | None = None
    group_size: int | None = Field(
        None, ge=1, description="Rollouts in this record's group, so a reader can tell a whole group from a cut one."
    )
    query_id: str | None = None
    created_at: datetime = Field(default_factory=lambda: datetime.now(UTC))
    query: str
    video: VideoRef
    policy: PolicyInfo
    tracker: str | None = None
    sampling: SamplingParams
    settings: ChainSettings
    sampled_indices: list[int] = Field(default_factory=list)
    targets: list[Target] = Field(default_factory=list)
    turns: list[TurnRecord] = Field(default_factory=list)
    status: Status
    reason: str | None = None
    outputs: dict[str, str] = Field(default_factory=dict, description="Artefact name -> path (masks, overlay).")
    timings: dict[str, float] = Field(default_factory=dict, description="Stage name -> wall seconds.")
    rewards: dict[str, float] | None = None
    dataset: dict[str, str | None] | None = Field(
        None,
        description="For a benchmark run: benchmark, version, split and sample key (a MeViS number means nothing "
        "without its version).",
    )
    reviews: list[dict[str, Any]] = Field(
        default_factory=list,
        description="A person's decisions at the review points (stage, accepted, changes): corrected targets "
        "are not the policy's own answers.",
    )
    attempts: list[Attempt] = Field(
        default_factory=list, description="look_again: every grounding attempt, rejected ones included."
    )

    @property
    def keyframe_index(self) -> int | None:
        """The first target's keyframe in original-frame indices, or None without targets."""
        return self.targets[0].frame_index if self.targets else None

    def save(self, path: str | Path) -> Path:
        """Write the record as indented JSON, atomically (a crash never leaves half a file)."""
        path = Path(path)
        tmp = path.with_name(path.name + ".tmp")
        try:
            tmp.write_text(self.model_dump_json(indent=2))
            tmp.replace(path)
        except OSError as exc:
            raise OutputError(f"cannot write trajectory to {path}: {exc.strerror or exc}") from exc
        return path

    @classmethod
    def load(cls, path: str | Path) -> Trajectory:
        """Read a record written by :meth:`save` (or any JSON with the same schema)."""
        return cls.model_validate(json.loads(Path(path).read_text()))
