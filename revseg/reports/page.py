"""An HTML page per trajectory: the reasoning chain as a person reads it, not as JSON.

:func:`write_report` turns one :class:`~revseg.trajectory.Trajectory` into ``report.html``:
the query, the sampled frames as a strip with the keyframe marked, turn 1's reasoning and
description, the keyframe at full size with the grounded box, turn 2's answer, the mask
overlay video, and the run's status, timings, backends and rewards. ``revseg segment``
writes one next to ``trajectory.json``; ``revseg report`` builds many plus an index
(:mod:`revseg.reports.index`); a replay command calls :func:`write_report` directly.

Decisions worth knowing:

- One self-contained file that needs no network: frames are JPEG data URIs (re-decoded
  from the video the record points to, since trajectories never hold pixels). The overlay
  video is embedded as a data URI when it is at most ``embed_video_max_bytes`` (16 MiB by
  default: a short clip), otherwise linked relatively with the keyframe as poster, so the
  page keeps working as long as it travels with the run folder. Chromium plays 28 MB
  data-URI videos fine; the cap is about page weight, not browser limits. The index
  builder instead shares frame files between pages (:class:`FrameImages` with ``files``)
  and links overlays, because thousands of embedded copies would weigh gigabytes.
- The overlay stays H.264 (``overlay.mp4``, see :mod:`revseg.tools.render`): Debian's
  Chromium decodes it (the browser tests check that it plays), as do Chrome, Firefox,
  Safari and Edge, so no second WebM encode is made.
- Model text is data, and hostile data at that: everything goes through Jinja2 with
  autoescaping, no model text ever lands in a script, style or URL, and a strict
  Content-Security-Policy (no inline script or style except our own, by SHA-256 hash; no
  network) stops anything that slips through.
- A missing or changed video does not stop the page: it says why the frames are absent
  and shows everything else.
"""

from __future__ import annotations

import base64
import hashlib
import logging
import re
from collections.abc import Sequence
from datetime import UTC, datetime
from functools import cache, lru_cache
from importlib import metadata
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import unquote

from revseg.errors import OutputError
from revseg.reports import looks as look_again
from revseg.reports.pictures import (
    FrameImages,
    Picture,
    ReportOptions,
    data_uri,
    relative_href,
)
from revseg.tools.render import BOX_COLOUR, output_size
from revseg.trajectory import Status, Trajectory, TurnRecord

if TYPE_CHECKING:
    import jinja2

logger = logging.getLogger(__name__)

REPORT_FILE = "report.html"
"""Overlay videos up to this size are embedded in the page; larger ones are linked."""

SCORE_KEYS = frozenset({"jf", "jfmean", "jandf"})
"""Normalised names (lower case, letters and digits only) under which a J&F score is recognised."""

_HEADLINES = {
    Status.OK: "Masks for every frame of the video.",
    Status.NO_TARGET: "The model found no object matching the query: every mask is empty.",
    Status.FAILED_SELECT_FRAMES: "Turn 1 did not parse, so the run stopped after one turn: no box, no masks.",
    Status.FAILED_GROUND: "Turn 2 did not give a usable box, so nothing was tracked: no masks.",
    Status.POLICY_ERROR: "The policy backend failed before answering: no masks.",
    Status.TRACKER_ERROR: "The tracker failed on the grounded box: no masks.",
}
_PAUSED_HEADLINE = "The run is paused, waiting for a person to review it: no masks yet."
_STAGE_ORDER = (
    "sample",
    "interpret",
    "select_frames",
    "zoom",
    "ground",
    "segment",
    "verify",
    "reselect",
    "overlay",
    "report",
)
_VIDEO_TYPES = {".mp4": "video/mp4", ".m4v": "video/mp4", ".webm": "video/webm", ".mov": "video/mp4"}


def render_report(
    trajectory: Trajectory,
    page_path: str | Path,
    *,
    base_dir: str | Path | None = None,
    options: ReportOptions | None = None,
    frames: FrameImages | None = None,
    score: float | None = None,
    index_href: str | None = None,
) -> str:
    """The HTML of one trajectory's page, for a file that will live at ``page_path``.

    ``page_path`` decides the relative links to the overlay and other outputs.
    ``base_dir`` is where relative output paths in the record are looked up when they do
    not resolve from the working folder (the folder ``trajectory.json`` sits in).
    ``frames`` lets a caller reuse decoded frames across pages; ``score`` is a J&F in
    [0, 1] from elsewhere (else one found in ``trajectory.rewards`` is shown);
    ``index_href`` adds a link back to an index page.
    """
    options = options or ReportOptions()
    page_dir = Path(page_path).resolve().parent
    base = Path(base_dir) if base_dir is not None else None
    own_frames = frames is None or not frames.matches(trajectory)
    source = FrameImages(trajectory, options) if own_frames else frames
    assert source is not None
    try:
        context = _page_context(trajectory, source, page_dir, base, options)
    finally:
        if own_frames:
            source.close()
    context.update(score=score if score is not None else score_from(trajectory.rewards), index_href=index_href)
    css = packaged_asset("report.css")
    env = template_environment()
    csp = content_security_policy(css, local_images=frames is not None and frames.shared_files)
    context.update(css=trusted_markup(css), csp=csp)
    return env.get_template("report.html.j2").render(**context)


def write_report(
    trajectory: Trajectory,
    path: str | Path,
    *,
    base_dir: str | Path | None = None,
    options: ReportOptions | None = None,
    frames: FrameImages | None = None,
    score: float | None = None,
    index_href: str | None = None,
) -> Path:
    """Write ``trajectory``'s page to ``path`` (a file, or a folder to hold ``report.html``), atomically.

    The function a replay or any script calls; ``revseg segment`` calls it after the
    overlay. Arguments as :func:`render_report`. Raises OutputError when it cannot write.
    """
    out = Path(path)
    if out.is_dir():
        out = out / REPORT_FILE
    html = render_report(
        trajectory, out, base_dir=base_dir, options=options, frames=frames, score=score, index_href=index_href
    )
    write_text_atomic(out, html)
    return out


def content_security_policy(style: str, script: str | None = None, *, local_images: bool = False) -> str:
    """A CSP that allows exactly our own inline ``style`` (and ``script``) by hash, data-URI images and media.

    ``media-src 'self'`` keeps a linked overlay playable next to the page, ``local_images``
    allows frame files beside it; nothing may reach the network, no form may submit and
    no ``<base>`` may redirect links.
    """
    script_src = f"'{_sha256(script)}'" if script is not None else "'none'"
    return "; ".join(
        [
            "default-src 'none'",
            "img-src 'self' data:" if local_images else "img-src data:",
            "media-src 'self' data:",
            f"style-src '{_sha256(style)}'",
            f"script-src {script_src}",
            "base-uri 'none'",
            "form-action 'none'",
        ]
    )


def score_from(values: dict[str, Any] | None) -> float | None:
    """The J&F score in a rewards or scores mapping (keys like ``jf``, ``J&F``, ``JF_mean``), or None."""
    if not values:
        return None
    for key, value in values.items():
        if re.sub(r"[^a-z0-9]", "", str(key).lower().replace("&", "and")) in SCORE_KEYS:
            try:
                return float(value)
            except (TypeError, ValueError):
                return None
    return None


def write_text_atomic(path: Path, text: str) -> None:
    """Write ``text`` through a temporary file and a rename, so a crash never leaves half a page."""
    tmp = path.with_name(f".{path.name}.tmp")
    try:
        tmp.write_text(text, encoding="utf-8")
        tmp.replace(path)
    except OSError as exc:
        tmp.unlink(missing_ok=True)
        raise OutputError(f"cannot write {path}: {exc.strerror or exc}") from exc


def revseg_version() -> str:
    """The installed revseg version, for page footers."""
    try:
        return metadata.version("revseg")
    except metadata.PackageNotFoundError:
        return "dev"


# --- page model ------------------------------------------------------------------------


def _page_context(
    trajectory: Trajectory, frames: FrameImages, page_dir: Path, base: Path | None, options: ReportOptions
) -> dict[str, Any]:
    """Plain values for the template: every decision is made here, the template only lays out."""
    t = trajectory
    key_targets: dict[int, list[int]] = {}
    for number, target in enumerate(t.targets, start=1):
        key_targets.setdefault(target.frame_index, []).append(number)
    thumbs = frames.thumbnails(t.sampled_indices)
    strip = [
        {
            "sample_idx": k,
            "frame_index": index,
            "src": thumbs[index].src(page_dir) if index in thumbs else None,
            "keyframe": index in key_targets and _is_chosen(t, k, index),
            "targets": key_targets.get(index, []) if len(t.targets) > 1 else [],
        }
        for k, index in enumerate(t.sampled_indices)
    ]
    full = {
        i: {"src": picture.src(page_dir), "width": picture.width, "height": picture.height}
        for i, picture in frames.full(
            [*(target.frame_index for target in t.targets), *look_again.attempt_keyframes(t)]
        ).items()
    }
    looks = frames.thumbnails(look_again.looked_at(t))
    return {
        "version": revseg_version(),
        "generated_at": datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC"),
        "query": t.query,
        "status": {"value": t.status.value, "css": status_css(t.status), "headline": _headline(t.status)},
        "reason": t.reason,
        "run_id": t.run_id,
        "created_at": t.created_at.strftime("%Y-%m-%d %H:%M:%S UTC"),
        "video": {**t.video.model_dump(), "name": Path(t.video.path).name},
        "frame_size": t.settings.frame_size,
        "settings": t.settings,
        "strip": strip,
        "many_targets": len(t.targets) > 1,
        "frames_note": frames.error,
        "turns": [_turn_view(t, i, turn, full, looks, page_dir) for i, turn in enumerate(t.turns)],
        "timeline": look_again.timeline_view(t, looks, page_dir),
        "keyframes": sorted(key_targets),
        "overlay": _overlay_view(t, page_dir, base, options, full),
        "policy": t.policy,
        "box_convention": t.policy.box_convention,
        "box_colour": "#{:02x}{:02x}{:02x}".format(*BOX_COLOUR),
        "tracker": t.tracker or "none",
        "sampling": _sampling_text(t),
        "ids": ", ".join(f"{k} {v}" for k, v in (("group", t.group_id), ("query", t.query_id)) if v),
        "schema_version": t.schema_version,
        "timings": _timings_view(t.timings),
        "total_time": sum(t.timings.values()),
        "rewards": _rewards_view(t.rewards),
        "outputs": _outputs_view(t.outputs, page_dir, base),
    }


def _is_chosen(t: Trajectory, sample_idx: int, frame_index: int) -> bool:
    """Mark the sampled position the model named (repeats of a frame in short videos are not all keyframes)."""
    return any(target.sample_idx == sample_idx and target.frame_index == frame_index for target in t.targets)


def _headline(status: Status) -> str:
    """One sentence on what the status means for the output; statuses added later still get one."""
    if status in _HEADLINES:
        return _HEADLINES[status]
    if status.value.startswith("pending"):
        return _PAUSED_HEADLINE
    return f"The run ended with status {status.value}: no masks." if status.failed else f"Status {status.value}."


def status_css(status: Status) -> str:
    """The badge colour class of a status: ok (green), neutral (no target or paused, amber) or fail (red)."""
    if status is Status.OK:
        return "ok"
    return "neutral" if status is Status.NO_TARGET or status.value.startswith("pending") else "fail"


def _turn_view(
    t: Trajectory,
    position: int,
    turn: TurnRecord,
    full: dict[int, dict[str, Any]],
    looks: dict[int, Picture],
    page_dir: Path,
) -> dict[str, Any]:
    view: dict[str, Any] = {
        "number": position + 1,
        "name": turn.name,
        "title": look_again.TITLES.get(turn.name, turn.name),
        "prompt": turn.prompt,
        "response": turn.response,
        "parse_ok": turn.parse_ok,
        "parse_reason": turn.parse_reason,
        "strict": (turn.parsed or {}).get("strict"),
        "tokens": len(turn.token_ids) if turn.token_ids is not None else None,
        "mean_logprob": sum(turn.logprobs) / len(turn.logprobs) if turn.logprobs else None,
        "logprobs_approximate": turn.logprobs_approximate,
        "duration_s": turn.duration_s,
        "image_size": turn.image_size,
        "seen_size": turn.seen_size,
        "target_label": None,
    }
    if turn.name == "interpret":
        return {**view, **_interpret_view(t, turn)}
    if turn.name in look_again.LOOK_AGAIN_TURNS:
        return {**view, **look_again.look_turn_view(turn, looks, page_dir)}
    number = turn.target if turn.target is not None else 0
    target = look_again.attempt_target(t, turn)
    frame_index = target.frame_index if target else (turn.image_frames[0] if turn.image_frames else None)
    picture = full.get(frame_index) if frame_index is not None else None
    view.update(
        target_number=number + 1,
        target_label=f"object {number + 1} of {len(t.targets)}" if len(t.targets) > 1 else None,
        description=target.description if target else "",
        frame_index=frame_index,
        image=picture,
        raw_box=_fmt_box(target.raw_box) if target and target.raw_box else None,
        label=target.label if target else None,
        box=_box_view(target.box, t.video.width, t.video.height, number + 1, target.label, len(t.targets))
        if target and target.box and picture
        else None,
    )
    return view


def _interpret_view(t: Trajectory, turn: TurnRecord) -> dict[str, Any]:
    """Split turn 1 into reasoning and answer: the parser's split when it ran, else the tags themselves."""
    parsed = turn.parsed or {}
    think, answer = look_again.turn_reasoning(turn)
    return {
        "think": think,
        "answer": answer,
        "no_target": bool(parsed.get("no_target")),
        "targets": [
            {"number": n, "description": x.description, "sample_idx": x.sample_idx, "frame_index": x.frame_index}
            for n, x in enumerate(t.targets, start=1)
        ],
    }


def _box_view(
    box: Sequence[float], width: int, height: int, number: int, label: str | None, count: int
) -> dict[str, Any]:
    x1, y1, x2, y2 = (float(v) for v in box)
    font = max(12.0, round(max(width, height) / 40))
    text = label or "target"
    if count > 1:
        text = f"{number}: {text}"
    label_y = y1 - font * 0.35 if y1 - font > 0 else y1 + font * 1.05
    return {
        "x": round(x1, 2),
        "y": round(y1, 2),
        "w": round(max(0.0, x2 - x1), 2),
        "h": round(max(0.0, y2 - y1), 2),
        "font": font,
        "label_x": round(x1 + 3, 2),
        "label_y": round(min(max(label_y, font), height - 2), 2),
        "text": text if len(text) <= 40 else text[:39] + "…",
        "coords": _fmt_box(box),
    }


def _fmt_box(box: Sequence[float]) -> str:
    return "[" + ", ".join(f"{float(v):.1f}" for v in box) + "]"


def _sampling_text(t: Trajectory) -> str:
    s = t.sampling
    parts = ["greedy" if s.greedy else f"temperature {s.temperature:g}, top-p {s.top_p:g}"]
    if s.top_k is not None and not s.greedy:
        parts.append(f"top-k {s.top_k}")
    parts.append(f"max {s.max_new_tokens} new tokens")
    if s.seed is not None:
        parts.append(f"seed {s.seed}")
    return ", ".join(parts)


def _timings_view(timings: dict[str, float]) -> list[dict[str, Any]]:
    ordered = [k for k in _STAGE_ORDER if k in timings] + sorted(k for k in timings if k not in _STAGE_ORDER)
    longest = max(timings.values(), default=0.0) or 1.0
    return [{"name": k, "seconds": timings[k], "pct": round(100 * max(timings[k], 0.0) / longest, 1)} for k in ordered]


def _rewards_view(rewards: dict[str, float] | None) -> list[dict[str, Any]]:
    if not rewards:
        return []
    rows = [{"name": k, "value": float(v), "total": k == "total"} for k, v in rewards.items() if k != "total"]
    if "total" in rewards:
        rows.append({"name": "total", "value": float(rewards["total"]), "total": True})
    return rows


def resolve_output(path: str, base: Path | None) -> Path | None:
    """Find an output the record names: beside the record first (``base``), else where the record says.

    A run folder that was copied or moved keeps its artefacts beside ``trajectory.json``,
    while the record still names where they were written; the copy beside it wins.
    """
    named = Path(path)
    candidates = []
    if base is not None:
        candidates += [base / named.name, base / "masks" / named.name]
        if not named.is_absolute():
            candidates.append(base / named)
    candidates.append(named)
    return next((c for c in candidates if c.exists()), None)


def _overlay_view(
    t: Trajectory, page_dir: Path, base: Path | None, options: ReportOptions, full: dict[int, dict[str, Any]]
) -> dict[str, Any]:
    named = t.outputs.get("overlay")
    if named is None:
        if "masks_json" not in t.outputs:
            note = "No overlay: this run produced no masks."
            if t.tracker in (None, "none") and not t.status.failed:
                note = "No overlay: the run stopped after the box (tracker 'none')."
        else:
            note = "No overlay was written for this run (overlay turned off)."
        return {"src": None, "note": note}
    path = resolve_output(named, base)
    if path is None:
        return {"src": None, "note": f"The overlay video {named} is not next to this page any more."}
    mime = _VIDEO_TYPES.get(path.suffix.lower(), "video/mp4")
    size = path.stat().st_size
    width, height = output_size(t.video.width, t.video.height, 1280)  # what write_overlay encodes
    if size <= options.embed_video_max_bytes:
        return {
            "width": width,
            "height": height,
            "src": data_uri(path.read_bytes(), mime),
            "mime": mime,
            "embedded": True,
            "poster": None,
            "note": f"Embedded in this page ({_megabytes(size)}, {path.name}).",
        }
    poster = full.get(t.keyframe_index) if t.keyframe_index is not None else None
    href = relative_href(path, page_dir)
    return {
        "width": width,
        "height": height,
        "src": href,
        "mime": mime,
        "embedded": False,
        "poster": poster["src"] if poster else None,
        "note": f"Linked from {unquote(href)} ({_megabytes(size)}), not embedded: the page needs that file there.",
    }


def _megabytes(size: int) -> str:
    return f"{size / 1e6:.1f} MB" if size >= 100_000 else f"{size / 1e3:.0f} kB"


def _outputs_view(outputs: dict[str, str], page_dir: Path, base: Path | None) -> list[dict[str, Any]]:
    rows = []
    for name, named in outputs.items():
        path = resolve_output(named, base)
        if path is None and name == "trajectory":  # the agent saves the record right after the page
            path = Path(named)
        rows.append({"name": name, "path": named, "href": relative_href(path, page_dir) if path else None})
    return rows


# --- templates and assets --------------------------------------------------------------


@lru_cache(maxsize=1)
def template_environment() -> jinja2.Environment:
    """The Jinja2 environment: autoescape everywhere, undefined names are errors."""
    import jinja2

    return jinja2.Environment(
        loader=jinja2.PackageLoader("revseg.reports", "templates"),
        autoescape=True,
        undefined=jinja2.StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
    )


@cache
def packaged_asset(name: str) -> str:
    """A packaged CSS or JS file, read once."""
    from importlib.resources import files

    return (files("revseg.reports") / "templates" / name).read_text(encoding="utf-8")


def trusted_markup(text: str) -> Any:
    """Mark our own packaged CSS/JS as safe: it is never model text, and escaping would break its hash."""
    import markupsafe

    return markupsafe.Markup(text)


def _sha256(text: str) -> str:
    return "sha256-" + base64.b64encode(hashlib.sha256(text.encode("utf-8")).digest()).decode("ascii")
