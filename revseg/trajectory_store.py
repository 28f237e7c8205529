"""The append-only trajectory store: a folder of JSONL shards of :class:`~revseg.trajectory.Trajectory` records.

Agents and collection write it, training and replay read it (DESIGN.md 2.2). Each shard is
an :class:`~revseg.jsonl.AppendLog`, so its crash rules (whole lines, torn tails cut off)
are those of every log revseg appends to.
"""

from __future__ import annotations

import json
import os
import uuid
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from revseg.errors import OutputError, StoreError
from revseg.jsonl import AppendLog, SkippedLine
from revseg.trajectory import SUPPORTED_SCHEMA_VERSIONS, Trajectory

__all__ = ["SHARD_PATTERN", "STORE_MANIFEST", "SkippedLine", "TrajectoryStore"]

STORE_FORMAT = "revseg-trajectories"
STORE_VERSION = 1
STORE_MANIFEST = "store.json"
SHARD_PATTERN = "trajectories-*.jsonl"
_LOCK_FILE = ".lock"


class TrajectoryStore:
    """An append-only folder of JSONL shards, one trajectory per line (DESIGN.md 2.2).

    Layout: ``store.json`` (format and version), ``trajectories-00000.jsonl``, ... and a
    ``.lock`` file. Every :meth:`append` writes its records (one group, say) as one
    :meth:`AppendLog.append <revseg.jsonl.AppendLog.append>` while holding an exclusive
    ``flock`` on the store (so the shard it picks is still the last one when it writes):
    a group lands whole unless the writer dies inside that one call. A torn last line is
    skipped and reported by :meth:`scan` and cut off by the next append (or :meth:`repair`).

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
        try:
            self._ensure_created()
            with self._lock():
                shard = self._writable_shard()
                AppendLog(shard, fsync=self.fsync).append(r.model_dump_json() for r in batch)
        except OSError as exc:  # the manifest or the lock; AppendLog names the shard itself
            raise OutputError(f"cannot append to trajectory store {self.root}: {exc.strerror or exc}") from exc
        return shard

    def repair(self) -> int:
        """Cut torn last lines left by crashed writers; returns how many bytes were dropped."""
        with self._lock():
            return sum(AppendLog(shard).repair() for shard in self.shards)

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
            for number, data in AppendLog(shard).read(skipped):
                record = _parse_record(shard, number, data, skipped)
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


def _parse_record(shard: Path, number: int, data: Any, skipped: list[SkippedLine] | None) -> Trajectory | None:
    version = str(data.get("schema_version", "")) if isinstance(data, dict) else ""
    if version not in SUPPORTED_SCHEMA_VERSIONS:
        raise StoreError(
            f"{shard}:{number} holds a trajectory of schema version {version!r}; this revseg reads "
            f"{', '.join(sorted(SUPPORTED_SCHEMA_VERSIONS))} (upgrade revseg to read it)"
        )
    try:
        return Trajectory.model_validate(data)
    except ValueError as exc:
        if skipped is not None:
            skipped.append(SkippedLine(str(shard), number, f"not a valid trajectory: {str(exc).splitlines()[0]}"))
        return None
