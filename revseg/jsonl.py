"""One crash-safe append-only JSON Lines file: the log under every record revseg appends.

The trajectory store's shards, a batch run's ``results.jsonl`` and an evaluation's
``results.jsonl`` are all an :class:`AppendLog`. Every :meth:`AppendLog.append` writes its
lines as one buffer with a single ``os.write`` on an ``O_APPEND`` descriptor while holding
an exclusive ``flock`` on the file, so concurrent writers (threads or processes) never
interleave and a batch of lines lands whole unless the writer dies inside that one call.
A writer killed mid-write can leave a torn last line: readers skip and report it
(:meth:`AppendLog.read`), and the next append (or :meth:`AppendLog.repair`) cuts it off
before writing, so a torn line is never followed by a good one.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from revseg.errors import OutputError

RESULTS_FILE = "results.jsonl"
"""The completion log of a batch run and of an evaluation: one JSON line per finished query or sample."""


@dataclass(frozen=True)
class SkippedLine:
    """A line a reader did not turn into a record, and why (a torn tail after a crash, or garbage)."""

    shard: str
    line: int
    reason: str


class AppendLog:
    """A JSON Lines file that only grows, written whole line by whole line (see the module docstring)."""

    def __init__(self, path: str | Path, *, fsync: bool = True) -> None:
        self.path = Path(path)
        self.fsync = fsync

    def append(self, lines: Iterable[str | bytes]) -> None:
        """Append serialised records (one JSON document each, no newline) in one write."""
        payload = b"".join((line.encode() if isinstance(line, str) else line) + b"\n" for line in lines)
        if not payload:
            raise ValueError(f"nothing to append to {self.path}")
        import fcntl

        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            fd = os.open(self.path, os.O_RDWR | os.O_APPEND | os.O_CREAT, 0o644)
            try:
                fcntl.flock(fd, fcntl.LOCK_EX)
                _cut_torn_tail(fd)
                _write_all(fd, payload)
                if self.fsync:
                    os.fsync(fd)
            finally:
                os.close(fd)  # closing releases the lock
        except OSError as exc:
            raise OutputError(f"cannot append to {self.path}: {exc.strerror or exc}") from exc

    def append_json(self, record: Any) -> None:
        """Append one JSON-serialisable value as one line."""
        self.append([json.dumps(record, ensure_ascii=False, separators=(",", ":"))])

    def repair(self) -> int:
        """Cut a torn last line left by a crashed writer; returns how many bytes were dropped."""
        if not self.path.is_file():
            return 0
        import fcntl

        fd = os.open(self.path, os.O_RDWR)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            return _cut_torn_tail(fd)
        finally:
            os.close(fd)

    def read(self, skipped: list[SkippedLine] | None = None) -> Iterator[tuple[int, Any]]:
        """``(line number, decoded JSON)`` of every whole line; torn and non-JSON lines go to ``skipped``."""
        if not self.path.is_file():
            return
        with self.path.open("rb") as f:
            for number, line in enumerate(f, start=1):
                if not line.endswith(b"\n"):
                    reason = (
                        f"torn last line ({len(line)} bytes): a writer was interrupted; the next append cuts it off"
                    )
                elif not line.strip():
                    continue
                else:
                    try:
                        record = json.loads(line)
                    except ValueError as exc:
                        reason = f"not JSON: {exc}"
                    else:
                        yield number, record
                        continue
                if skipped is not None:
                    skipped.append(SkippedLine(str(self.path), number, reason))


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
