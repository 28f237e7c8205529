"""An index over many trajectories: one page per trajectory plus a paginated, sortable table.

``revseg report STORE_OR_EVAL_DIR --out DIR`` calls :func:`build_index`. The source is any of

- a folder tree holding ``trajectory.json`` files (what ``revseg segment`` and an
  evaluation write) and/or ``*.jsonl`` trajectory stores (one Trajectory JSON per line);
- one ``.jsonl`` store, or one ``trajectory.json``.

It writes ``DIR/index.html`` (rows 1-200), ``DIR/index-2.html`` and so on, and one page per
trajectory under ``DIR/runs/``. Why it stays fast on large stores:

- records are streamed and only a small row per trajectory is kept in memory;
- index pages hold no images, so each opens at once and sorts client-side;
- a trajectory's page is written once and skipped on the next build unless its record,
  overlay, score or the page format changed (digests in ``DIR/runs/manifest.json``);
- frames are JPEG files written once per video under ``DIR/runs/frames/`` and shared by
  every page of that video (a group's rollouts), and overlays are linked where the run
  left them, so a page weighs a few kilobytes instead of half a megabyte plus its video.
  ``self_contained=True`` (``--self-contained``) embeds both instead, like the
  ``report.html`` that ``revseg segment`` writes.

The site needs no network either way; without ``--self-contained`` it links to the
overlays in the source folders, so keep those next to it.

J&F comes from the record's ``rewards`` (key ``jf``, ``J&F`` or ``JF_mean``, as a
fraction in [0, 1]) or from a sidecar: ``scores.json`` (or ``score.json``) beside a
``trajectory.json``, or ``STORE.scores.jsonl`` beside a store, one
``{"run_id": ..., "jf": ...}`` per line (or ``scores.jsonl`` for a whole folder of shards).
"""

from __future__ import annotations

import hashlib
import json
import logging
import re
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from revseg.errors import OutputError
from revseg.reports.page import (
    FrameImages,
    ReportOptions,
    content_security_policy,
    packaged_asset,
    resolve_output,
    revseg_version,
    score_from,
    status_css,
    template_environment,
    trusted_markup,
    write_report,
    write_text_atomic,
)
from revseg.trajectory import Status, Trajectory

logger = logging.getLogger(__name__)

PAGE_SIZE = 200
RUNS_DIR = "runs"
FRAMES_DIR = "frames"
MANIFEST = "manifest.json"
PAGE_FORMAT = "1"
"""Bump when the per-trajectory page changes, so the next build rewrites every page."""
TRAJECTORY_FILE = "trajectory.json"
SIDECAR_FILES = ("scores.json", "score.json")
STORE_SCORES = "scores.jsonl"


@dataclass(frozen=True)
class StoredTrajectory:
    """One record as read from a source: the trajectory, where it came from and any sidecar score."""

    trajectory: Trajectory
    origin: str
    """``path`` for a trajectory.json, ``path:line`` for a store line: what error messages name."""
    base_dir: Path
    """Where the record's relative output paths are looked up."""
    digest: str
    """SHA-256 of the record's bytes: changes whenever the record does."""
    score: float | None = None


@dataclass
class IndexResult:
    """What :func:`build_index` did."""

    out_dir: Path
    index: Path
    trajectories: int = 0
    index_pages: int = 0
    pages_written: int = 0
    pages_up_to_date: int = 0
    skipped: list[str] = field(default_factory=list)
    """``origin: reason`` for each record that could not be read."""


@dataclass(frozen=True)
class _Row:
    key: str
    href: str
    video: str
    video_path: str
    query: str
    status: Status
    reason: str | None
    keyframe: int | None
    score: float | None
    reward: float | None


def iter_trajectories(source: str | Path, skipped: list[str] | None = None) -> Iterator[StoredTrajectory]:
    """Stream every trajectory under ``source`` (a folder tree, a ``.jsonl`` store or one ``.json``).

    Files are visited in sorted path order, store lines in order. A record that is not a
    valid Trajectory is skipped and named in ``skipped`` (when given); a ``.jsonl`` whose
    first record is not a trajectory is not a store and is skipped whole. Raises
    OutputError when ``source`` does not exist.
    """
    root = Path(source)
    if not root.exists():
        raise OutputError(f"{root}: no such trajectory store or folder")
    skipped = skipped if skipped is not None else []
    if root.is_file():
        files = [root]
    else:
        files = sorted(
            p
            for p in root.rglob("*")
            if p.is_file() and (p.name == TRAJECTORY_FILE or _is_store(p)) and not _is_hidden(p, root)
        )
    for path in files:
        if path.suffix == ".jsonl":
            yield from _read_store(path, skipped)
        else:
            item = _read_json(path, skipped)
            if item is not None:
                yield item


def build_index(
    source: str | Path,
    out_dir: str | Path,
    *,
    failures_first: bool = False,
    page_size: int = PAGE_SIZE,
    options: ReportOptions | None = None,
    force: bool = False,
    title: str | None = None,
    self_contained: bool = False,
    progress: bool = False,
) -> IndexResult:
    """Write a page per trajectory under ``out_dir/runs/`` and paginated index pages over all of them.

    ``failures_first`` puts failed runs (every status but ok and no_target) at the top,
    each group in source order. ``page_size`` rows go on one index page. Pages whose
    inputs are unchanged since the last build are kept unless ``force``. Frames are
    written once per video under ``out_dir/runs/frames/`` and overlays are linked where
    they lie, so a page weighs kilobytes; ``self_contained`` embeds both in every page
    instead (each page then stands alone, at about half a megabyte plus its video).
    Raises OutputError when nothing can be written or ``source`` holds no trajectory.
    """
    if page_size < 1:
        raise ValueError(f"page_size must be at least 1, got {page_size}")
    options = options or ReportOptions()
    if not self_contained:
        options = replace(options, embed_video_max_bytes=0)
    out = Path(out_dir)
    runs = out / RUNS_DIR
    try:
        runs.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise OutputError(f"cannot create report folder {runs}: {exc.strerror or exc}") from exc
    result = IndexResult(out_dir=out, index=out / "index.html")
    manifest = {} if force else _read_manifest(runs / MANIFEST)
    fresh: dict[str, str] = {}
    rows: list[_Row] = []
    taken: set[str] = set()
    frames: FrameImages | None = None
    items = iter_trajectories(source, result.skipped)
    if progress:
        from tqdm.auto import tqdm

        items = iter(tqdm(items, desc="report", unit="trajectory"))
    try:
        for item in items:
            t = item.trajectory
            key = _unique_key(t.run_id, taken)
            page = runs / f"{key}.html"
            score = item.score if item.score is not None else score_from(t.rewards)
            digest = _page_digest(item, score, options)
            fresh[key] = digest
            if manifest.get(key) == digest and page.exists():
                result.pages_up_to_date += 1
            else:
                if frames is None or not frames.matches(t):
                    if frames is not None:
                        frames.close()
                    frames = FrameImages(t, options, files=None if self_contained else runs / FRAMES_DIR)
                write_report(
                    t, page, base_dir=item.base_dir, options=options, frames=frames, score=score,
                    index_href="../index.html",
                )  # fmt: skip
                result.pages_written += 1
            rows.append(_row(t, key, score))
    finally:
        if frames is not None:
            frames.close()
    if not rows:
        reasons = f" ({len(result.skipped)} unreadable: {result.skipped[0]})" if result.skipped else ""
        raise OutputError(f"{source}: no trajectories found{reasons}")
    if failures_first:
        rows.sort(key=lambda r: not r.status.failed)  # stable: source order within each group
    write_text_atomic(runs / MANIFEST, json.dumps(fresh, indent=0, sort_keys=True))
    result.trajectories = len(rows)
    result.index_pages = _write_index_pages(rows, out, page_size, str(source), failures_first, title, result)
    return result


# --- reading ---------------------------------------------------------------------------


def _is_store(path: Path) -> bool:
    return path.suffix == ".jsonl" and path.name != STORE_SCORES and not path.name.endswith(".scores.jsonl")


def _is_hidden(path: Path, root: Path) -> bool:
    return any(part.startswith(".") for part in path.relative_to(root).parts)


def _read_json(path: Path, skipped: list[str]) -> StoredTrajectory | None:
    try:
        data = path.read_bytes()
        trajectory = Trajectory.model_validate_json(data)
    except (OSError, ValidationError) as exc:
        skipped.append(f"{path}: {_short(exc)}")
        return None
    return StoredTrajectory(
        trajectory=trajectory,
        origin=str(path),
        base_dir=path.parent,
        digest=hashlib.sha256(data).hexdigest(),
        score=_folder_score(path.parent),
    )


def _read_store(path: Path, skipped: list[str]) -> Iterator[StoredTrajectory]:
    scores = _store_scores(path)
    try:
        handle = path.open("rb")
    except OSError as exc:
        skipped.append(f"{path}: {_short(exc)}")
        return
    with handle:
        seen_one = False
        for number, line in enumerate(handle, start=1):
            if not line.strip():
                continue
            try:
                trajectory = Trajectory.model_validate_json(line)
            except ValidationError as exc:
                if not seen_one:
                    logger.info("%s is not a trajectory store (line %d: %s)", path, number, _short(exc))
                    skipped.append(f"{path}: not a trajectory store ({_short(exc)})")
                    return
                skipped.append(f"{path}:{number}: {_short(exc)}")
                continue
            seen_one = True
            yield StoredTrajectory(
                trajectory=trajectory,
                origin=f"{path}:{number}",
                base_dir=path.parent,
                digest=hashlib.sha256(line.strip()).hexdigest(),
                score=scores.get(trajectory.run_id),
            )


def _folder_score(folder: Path) -> float | None:
    for name in SIDECAR_FILES:
        file = folder / name
        if file.is_file():
            try:
                record = json.loads(file.read_text())
            except (OSError, json.JSONDecodeError) as exc:
                logger.warning("ignoring unreadable score sidecar %s: %s", file, exc)
                continue
            if isinstance(record, dict):
                return score_from(record)
    return None


def _store_scores(store: Path) -> dict[str, float]:
    """Scores by run id from ``STORE.scores.jsonl`` and a ``scores.jsonl`` for the whole store folder."""
    scores: dict[str, float] = {}
    for sidecar in (store.parent / STORE_SCORES, store.with_name(store.name[: -len(".jsonl")] + ".scores.jsonl")):
        if sidecar.is_file():
            scores.update(_read_scores(sidecar))
    return scores


def _read_scores(sidecar: Path) -> dict[str, float]:
    scores: dict[str, float] = {}
    with sidecar.open() as handle:
        for line in handle:
            try:
                record = json.loads(line)
            except json.JSONDecodeError:
                continue
            if isinstance(record, dict) and "run_id" in record:
                value = score_from({k: v for k, v in record.items() if k != "run_id"})
                if value is not None:
                    scores[str(record["run_id"])] = value
    return scores


def _short(exc: BaseException) -> str:
    if isinstance(exc, ValidationError):
        first = exc.errors()[0] if exc.errors() else {"msg": str(exc), "loc": ()}
        where = ".".join(str(p) for p in first.get("loc", ()))
        return f"not a trajectory ({where + ': ' if where else ''}{first.get('msg', '')})"
    return str(getattr(exc, "strerror", None) or exc)


# --- pages -----------------------------------------------------------------------------


def _unique_key(run_id: str, taken: set[str]) -> str:
    """A file-name-safe key from the run id; repeats (a record stored twice) get -2, -3, ..."""
    base = re.sub(r"[^A-Za-z0-9._-]", "_", run_id)[:100] or "run"
    key, n = base, 1
    while key in taken:
        n += 1
        key = f"{base}-{n}"
    taken.add(key)
    return key


def _page_digest(item: StoredTrajectory, score: float | None, options: ReportOptions) -> str:
    """What a page depends on: the record, its overlay file, the score, the options and the page format."""
    overlay = item.trajectory.outputs.get("overlay")
    path = resolve_output(overlay, item.base_dir) if overlay else None
    stat = path.stat() if path is not None else None
    video = Path(item.trajectory.video.path)
    parts = [
        PAGE_FORMAT,
        revseg_version(),
        item.digest,
        repr(score),
        repr(options),
        f"{path}:{stat.st_size}:{stat.st_mtime_ns}" if stat else "-",
        "video" if video.exists() else "no-video",
    ]
    return hashlib.sha256("\n".join(parts).encode()).hexdigest()


def _read_manifest(path: Path) -> dict[str, str]:
    try:
        data = json.loads(path.read_text())
    except (OSError, json.JSONDecodeError):
        return {}
    return {str(k): str(v) for k, v in data.items()} if isinstance(data, dict) else {}


def _row(t: Trajectory, key: str, score: float | None) -> _Row:
    return _Row(
        key=key,
        href=f"{RUNS_DIR}/{key}.html",
        video=Path(t.video.path).name,
        video_path=t.video.path,
        query=t.query,
        status=t.status,
        reason=t.reason,
        keyframe=t.keyframe_index,
        score=score,
        reward=(t.rewards or {}).get("total"),
    )


def index_page_name(page: int) -> str:
    """``index.html`` for page 1, ``index-N.html`` after."""
    return "index.html" if page == 1 else f"index-{page}.html"


def _page_numbers(page: int, count: int) -> list[int | None]:
    """Page links to show: the first, the last and two either side of the current; None marks a gap."""
    out: list[int | None] = []
    previous = 0
    for number in sorted({1, count, *range(max(1, page - 2), min(count, page + 2) + 1)}):
        if number - previous > 1:
            out.append(None)
        out.append(number)
        previous = number
    return out


def _write_index_pages(
    rows: list[_Row],
    out: Path,
    page_size: int,
    source: str,
    failures_first: bool,
    title: str | None,
    result: IndexResult,
) -> int:
    css, script = packaged_asset("report.css"), packaged_asset("index.js")
    template = template_environment().get_template("index.html.j2")
    count = (len(rows) + page_size - 1) // page_size
    statuses = Counter(r.status for r in rows)
    scored = [r.score for r in rows if r.score is not None]
    common: dict[str, Any] = {
        "version": revseg_version(),
        "generated_at": datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC"),
        "title": title or f"Trajectories in {Path(source).name or source}",
        "source": source,
        "total": len(rows),
        "status_counts": [
            {"status": s.value, "css": status_css(s), "count": statuses[s]} for s in Status if statuses[s]
        ],
        "mean_score": sum(scored) / len(scored) if scored else None,
        "scored": len(scored),
        "skipped": len(result.skipped),
        "failures_first": failures_first,
        "has_rewards": any(r.reward is not None for r in rows),
        "page_count": count,
        "page_links": {p: index_page_name(p) for p in range(1, count + 1)},
        "css": trusted_markup(css),
        "script": trusted_markup(script),
        "csp": content_security_policy(css, script),
    }
    for page in range(1, count + 1):
        start = (page - 1) * page_size
        chunk = rows[start : start + page_size]
        html = template.render(
            **common,
            page=page,
            page_numbers=_page_numbers(page, count),
            first_row=start + 1,
            last_row=start + len(chunk),
            rows=[_row_view(r, start + i + 1) for i, r in enumerate(chunk)],
        )
        write_text_atomic(out / index_page_name(page), html)
    for stale in out.glob("index-*.html"):  # a smaller rebuild must not leave old pages linked from nowhere
        number = stale.stem.removeprefix("index-")
        if number.isdigit() and int(number) > count:
            stale.unlink(missing_ok=True)
    return count


def _row_view(r: _Row, position: int) -> dict[str, Any]:
    return {
        "key": r.key,
        "href": r.href,
        "position": position,
        "video": r.video,
        "video_path": r.video_path,
        "query": r.query,
        "score": r.score,
        "status": r.status.value,
        "css": status_css(r.status),
        "failed": r.status.failed,
        "reason": r.reason,
        "keyframe": r.keyframe,
        "reward": r.reward,
    }
