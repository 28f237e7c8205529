"""Split a run over machines with ``--shard I/N``, and merge what the shards wrote.

A shard is chosen by a hash of each item's key, not by its position, so shard ``I/N`` holds
the same items whatever else is in the set (``--limit``, an excluded video or a resumed run
does not move an item to another shard). The N shards are disjoint and their union is the
whole set. Both ``revseg eval`` (samples) and ``revseg collect`` (items) select with
:func:`in_shard`; :func:`merge_eval_runs` and :func:`merge_stores` join the shards' outputs.
"""

from __future__ import annotations

import hashlib
import json
import shutil
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TypeVar

from revseg.errors import SpecError, StoreError
from revseg.trajectory_store import TrajectoryStore

T = TypeVar("T")

_PER_SHARD = ("created_at", "resumed_at", "shard")  # run.json fields that differ between shards of one run


@dataclass(frozen=True)
class Shard:
    """Shard ``index`` of ``count`` (0-based), as ``--shard I/N`` writes it."""

    index: int
    count: int

    def __post_init__(self) -> None:
        if self.count < 1 or not 0 <= self.index < self.count:
            raise SpecError(f"shard {self.index}/{self.count}: needs 0 <= I < N, e.g. --shard 0/4 ... --shard 3/4")

    @classmethod
    def parse(cls, text: str) -> Shard:
        """Read ``I/N`` (``0/4`` is the first of four)."""
        index, sep, count = text.partition("/")
        try:
            if not sep:
                raise ValueError
            return cls(int(index), int(count))
        except ValueError:
            raise SpecError(f"--shard {text!r}: write I/N with 0 <= I < N, e.g. 0/4") from None

    def __str__(self) -> str:
        return f"{self.index}/{self.count}"


def shard_of(key: str, count: int) -> int:
    """The shard (0..count-1) a key belongs to: a stable hash, the same on every machine and run."""
    digest = hashlib.sha256(key.encode("utf-8")).digest()
    return int.from_bytes(digest[:8], "big") % count


def in_shard(items: Iterable[T], shard: Shard | None, key: Callable[[T], str]) -> Iterator[T]:
    """The items of ``shard`` (all of them when it is None), in their original order."""
    for item in items:
        if shard is None or shard_of(key(item), shard.count) == shard.index:
            yield item


def merge_stores(sources: Sequence[str | Path], dest: str | Path) -> int:
    """Append every trajectory of the source stores to ``dest``, once each; return how many were added.

    Records already in ``dest`` (same run id) are not added again, so merging twice, or merging
    a store into itself, changes nothing. Each source group is appended as one write.
    """
    target = TrajectoryStore(dest)
    seen = {t.run_id for t in target} if Path(dest).exists() else set()
    added = 0
    for source in sources:
        groups: dict[str, list] = {}
        for record in TrajectoryStore(source):
            if record.run_id not in seen:
                groups.setdefault(record.group_id or record.run_id, []).append(record)
                seen.add(record.run_id)
        for group in groups.values():
            target.append(group)
            added += len(group)
    return added


def merge_eval_runs(sources: Sequence[str | Path], dest: str | Path) -> int:
    """Join the output folders of sharded evaluations into ``dest``; return the number of samples.

    Copies each shard's ``predictions/`` and ``runs/`` and concatenates its ``results.jsonl``.
    The shards must come from the same benchmark, split and agent (their ``run.json`` is
    compared) and must not share a sample. Score the result with ``revseg score`` or
    ``revseg eval --resume`` on the merged folder (nothing is rerun).
    """
    out = Path(dest)
    configs: list[dict] = []
    keys: set[str] = set()
    lines: list[str] = []
    for source in map(Path, sources):
        run_json = source / "run.json"
        if not run_json.is_file():
            raise StoreError(f"{source} holds no evaluation (no run.json): pass the --out folders of the shards")
        config = {k: v for k, v in json.loads(run_json.read_text()).items() if k not in _PER_SHARD}
        if configs and config != configs[0]:
            raise StoreError(f"{source} was run with a different benchmark, split or agent than {sources[0]}")
        configs.append(config)
        results = source / "results.jsonl"
        for line in results.read_text().splitlines(keepends=True) if results.is_file() else []:
            try:
                record = json.loads(line)
            except ValueError:
                continue  # a torn last line: its sample was not finished
            if not line.endswith("\n") or not isinstance(record, dict):
                continue
            if record["key"] in keys:
                raise StoreError(f"sample {record['key']} is in more than one shard: merge disjoint shards only")
            keys.add(record["key"])
            lines.append(line)
    if (out / "results.jsonl").exists():
        raise StoreError(f"{out} already holds an evaluation: merge into a new folder")
    for source in map(Path, sources):
        for part in ("predictions", "runs"):
            if (source / part).is_dir():
                shutil.copytree(source / part, out / part, dirs_exist_ok=True)
    out.mkdir(parents=True, exist_ok=True)
    if configs:
        (out / "run.json").write_text(json.dumps(configs[0], indent=2) + "\n")
    (out / "results.jsonl").write_text("".join(lines))
    return len(keys)
