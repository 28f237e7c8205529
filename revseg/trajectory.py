"""The trajectory record: what one run of the chain saw, said and produced.

This is the core record that agents write and evals, rl and reports read (DESIGN.md 2.2).
It holds enough to rebuild the exact model inputs for training: the video reference,
the sampled frame indices, the sizes frames were resized to, the prompt set and each
turn's prompt, plus the behaviour policy's token ids and log-probs when the backend
returned them. It never holds pixels or masks, only references to where they were written.
"""

from __future__ import annotations

import json
import os
import uuid
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from enum import StrEnum
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from revseg.errors import OutputError, StoreError
from revseg.settings import ChainSettings, SamplingParams

SCHEMA_VERSION = "2"
SUPPORTED_SCHEMA_VERSIONS = frozenset({"1", "2"})
"""Record versions this code reads. 2 added ``group_size``; a version-1 record reads with it unset."""

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


class PolicyInfo(BaseModel):
    """The behaviour policy's identity, so training can tell on- from off-policy data."""

    model_config = ConfigDict(frozen=True)

    spec: str
    backend: str
    model: str
    box_convention: BoxConvention = "absolute"


class TurnRecord(BaseModel):
    """One model turn: the prompt it got, the images it saw, what it answered and how that parsed."""

    name: Literal["interpret", "ground"]
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
    parse_ok: bool = False
    parse_reason: str | None = None
    parsed: dict[str, Any] | None = None
    target: int | None = Field(None, description="For ground turns: index into Trajectory.targets.")
    duration_s: float = 0.0


class Target(BaseModel):
    """One object the model named in turn 1, and where turn 2 put it."""

    description: str
    sample_idx: int = Field(description="Keyframe as the model said it: an index into the sampled frames.")
    frame_index: int = Field(description="Keyframe as an index into the original video.")
    raw_box: list[float] | None = Field(None, description="The box exactly as the model wrote it.")
    box: BoxXYXY | None = Field(None, description="x1, y1, x2, y2 in original-frame pixels.")
    label: str | None = None


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


# --------------------------------------------------------------------------- the append-only store

STORE_FORMAT = "revseg-trajectories"
STORE_VERSION = 1
STORE_MANIFEST = "store.json"
SHARD_PATTERN = "trajectories-*.jsonl"
_LOCK_FILE = ".lock"


@dataclass(frozen=True)
class SkippedLine:
    """A line a reader did not turn into a record, and why (a torn tail after a crash, or garbage)."""

    shard: str
    line: int
    reason: str


class TrajectoryStore:
    """An append-only folder of JSONL shards, one trajectory per line (DESIGN.md 2.2).

    Layout: ``store.json`` (format and version), ``trajectories-00000.jsonl``, ... and a
    ``.lock`` file. Every :meth:`append` writes its records (one group, say) as one buffer
    with a single ``os.write`` on an ``O_APPEND`` descriptor while holding an exclusive
    ``flock`` on the store, so concurrent writers (threads or processes) never interleave
    and a group lands whole unless the writer dies inside that one call. A writer killed
    mid-write can leave a torn last line: readers skip and report it
    (:meth:`scan`), and the next append (or :meth:`repair`) cuts it off before writing,
    so a torn line is never followed by a good one.

    The shards load as a Hugging Face dataset, nested fields included::

        datasets.load_dataset("json", data_files=store.data_files(), split="train")
    """

    def __init__(self, root: str | Path, *, shard_max_bytes: int = 256 * 2**20, fsync: bool = True) -> None:
        self.root = Path(root)
        self.shard_max_bytes = shard_max_bytes
        self.fsync = fsync
        manifest = self.root / STORE_MANIFEST
        if manifest.exists():
            _check_manifest(manifest)

    # ---- writing

    def append(self, records: Trajectory | Sequence[Trajectory]) -> Path:
        """Append one record or a group of records atomically; return the shard written to."""
        batch = [records] if isinstance(records, Trajectory) else list(records)
        if not batch:
            raise ValueError("TrajectoryStore.append needs at least one record")
        payload = b"".join(r.model_dump_json().encode() + b"\n" for r in batch)
        try:
            self._ensure_created()
            with self._lock():
                shard = self._writable_shard()
                fd = os.open(shard, os.O_RDWR | os.O_APPEND | os.O_CREAT, 0o644)
                try:
                    _cut_torn_tail(fd)
                    _write_all(fd, payload)
                    if self.fsync:
                        os.fsync(fd)
                finally:
                    os.close(fd)
        except OSError as exc:
            raise OutputError(f"cannot append to trajectory store {self.root}: {exc.strerror or exc}") from exc
        return shard

    def repair(self) -> int:
        """Cut torn last lines left by crashed writers; returns how many bytes were dropped."""
        dropped = 0
        with self._lock():
            for shard in self.shards:
                fd = os.open(shard, os.O_RDWR)
                try:
                    dropped += _cut_torn_tail(fd)
                finally:
                    os.close(fd)
        return dropped

    # ---- reading

    @property
    def shards(self) -> list[Path]:
        """The shard files, in write order."""
        return sorted(self.root.glob(SHARD_PATTERN))

    def data_files(self) -> list[str]:
        """Shard paths for ``datasets.load_dataset("json", data_files=...)``, after :meth:`repair`."""
        self._check_exists()
        self.repair()
        return [str(p) for p in self.shards]

    def scan(self) -> tuple[list[Trajectory], list[SkippedLine]]:
        """Every record, plus the lines that were skipped and why."""
        skipped: list[SkippedLine] = []
        return list(self.iter_records(skipped)), skipped

    def iter_records(self, skipped: list[SkippedLine] | None = None) -> Iterator[Trajectory]:
        """Records in write order; unreadable lines are appended to ``skipped`` (if given) and passed over.

        Raises StoreError for a record of a newer schema than this code reads.
        """
        self._check_exists()
        for shard in self.shards:
            with shard.open("rb") as f:
                for number, line in enumerate(f, start=1):
                    record = _parse_line(shard, number, line, skipped)
                    if record is not None:
                        yield record

    def __iter__(self) -> Iterator[Trajectory]:
        return self.iter_records()

    def groups(self, *, complete: bool = False) -> dict[str, list[Trajectory]]:
        """Records by ``group_id`` in first-seen order (a record without one is its own group).

        With ``complete=True`` only groups holding ``group_size`` distinct runs are kept,
        which drops a group a crashed collector left half-written.
        """
        out: dict[str, dict[str, Trajectory]] = {}
        for record in self.iter_records():
            out.setdefault(record.group_id or record.run_id, {})[record.run_id] = record
        groups = {gid: list(runs.values()) for gid, runs in out.items()}
        if complete:
            groups = {gid: runs for gid, runs in groups.items() if len(runs) >= (runs[0].group_size or 1)}
        return groups

    def get(self, run_id: str) -> Trajectory:
        """The record with ``run_id`` (a unique prefix is enough)."""
        found = [r for r in self.iter_records() if r.run_id.startswith(run_id)]
        if len(found) != 1:
            what = "no record" if not found else f"{len(found)} records"
            raise StoreError(f"{what} in {self.root} with run id '{run_id}'; `revseg replay {self.root}` lists them")
        return found[0]

    # ---- internals

    def _check_exists(self) -> None:
        if not (self.root / STORE_MANIFEST).exists():
            raise StoreError(
                f"{self.root} is not a trajectory store (no {STORE_MANIFEST}); write one with `revseg collect`"
            )

    def _ensure_created(self) -> None:
        manifest = self.root / STORE_MANIFEST
        if manifest.exists():
            return
        self.root.mkdir(parents=True, exist_ok=True)
        tmp = self.root / f".{STORE_MANIFEST}.{os.getpid()}.{uuid.uuid4().hex[:8]}"
        tmp.write_text(json.dumps({"format": STORE_FORMAT, "store_version": STORE_VERSION}) + "\n")
        tmp.replace(manifest)  # atomic; racing creators write the same content

    @contextmanager
    def _lock(self) -> Iterator[None]:
        import fcntl

        fd = os.open(self.root / _LOCK_FILE, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            yield
        finally:
            os.close(fd)  # closing releases the lock

    def _writable_shard(self) -> Path:
        shards = self.shards
        if not shards:
            return self.root / SHARD_PATTERN.replace("*", "00000")
        last = shards[-1]
        if last.stat().st_size < self.shard_max_bytes:
            return last
        number = int(last.stem.rpartition("-")[2]) + 1
        return self.root / SHARD_PATTERN.replace("*", f"{number:05d}")


def _check_manifest(path: Path) -> None:
    try:
        manifest = json.loads(path.read_text())
    except (OSError, ValueError) as exc:
        raise StoreError(f"{path} is unreadable ({exc}); is this a trajectory store?") from exc
    if manifest.get("format") != STORE_FORMAT:
        raise StoreError(f"{path} is not a revseg trajectory store (format {manifest.get('format')!r})")
    if int(manifest.get("store_version", 0)) > STORE_VERSION:
        raise StoreError(f"{path.parent} was written by a newer revseg (store version {manifest['store_version']})")


def _parse_line(shard: Path, number: int, line: bytes, skipped: list[SkippedLine] | None) -> Trajectory | None:
    def skip(reason: str) -> None:
        if skipped is not None:
            skipped.append(SkippedLine(str(shard), number, reason))

    if not line.endswith(b"\n"):
        skip(f"torn last line ({len(line)} bytes): a writer was interrupted; the next append cuts it off")
        return None
    if not line.strip():
        return None
    try:
        data = json.loads(line)
    except ValueError as exc:
        skip(f"not JSON: {exc}")
        return None
    version = str(data.get("schema_version", "")) if isinstance(data, dict) else ""
    if version not in SUPPORTED_SCHEMA_VERSIONS:
        raise StoreError(
            f"{shard}:{number} holds a trajectory of schema version {version!r}; this revseg reads "
            f"{', '.join(sorted(SUPPORTED_SCHEMA_VERSIONS))} (upgrade revseg to read it)"
        )
    try:
        return Trajectory.model_validate(data)
    except ValueError as exc:
        skip(f"not a valid trajectory: {str(exc).splitlines()[0]}")
        return None


def _write_all(fd: int, payload: bytes) -> None:
    """One ``os.write`` in practice; loops only if the kernel accepts part of it (a signal, a full disk)."""
    view = memoryview(payload)
    while view:
        written = os.write(fd, view)
        view = view[written:]


def _cut_torn_tail(fd: int) -> int:
    """Truncate the file after its last newline when it does not end in one; returns bytes dropped."""
    size = os.fstat(fd).st_size
    if size == 0 or os.pread(fd, 1, size - 1) == b"\n":
        return 0
    end = size
    while end > 0:
        start = max(0, end - 65536)
        chunk = os.pread(fd, end - start, start)
        cut = chunk.rfind(b"\n")
        if cut >= 0:
            os.ftruncate(fd, start + cut + 1)
            return size - (start + cut + 1)
        end = start
    os.ftruncate(fd, 0)
    return size
