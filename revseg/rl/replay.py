"""Reading a trajectory store as a person would: a listing, and one run turn by turn."""

from __future__ import annotations

import math
from collections.abc import Iterable

from revseg.rl.rebuild import input_changes
from revseg.trajectory import Trajectory, TurnRecord


def list_lines(records: Iterable[Trajectory]) -> list[str]:
    """One line per record: run id, group, item, status, total reward."""
    lines = [f"{'run id':<14} {'group':<14} {'status':<22} {'reward':>7}  query id"]
    for t in records:
        total = "-" if t.rewards is None else f"{t.rewards.get('total', 0.0):7.3f}"
        group = (t.group_id or "-")[:12]
        lines.append(f"{t.run_id[:12]:<14} {group:<14} {t.status.value:<22} {total:>7}  {t.query_id or '-'}")
    return lines


def describe(t: Trajectory, *, max_chars: int = 2000) -> str:
    """The record as text: identity, the chain's inputs, each turn (prompt, answer, tokens, parse), targets, rewards."""
    out = [
        f"run {t.run_id}  group {t.group_id or '-'}  item {t.query_id or '-'}  schema {t.schema_version}",
        f"query: {t.query}",
        f"video: {t.video.path} ({t.video.num_frames} frames, {t.video.width}x{t.video.height}, {t.video.backend})",
        f"policy: {t.policy.spec}  sampling: {t.sampling.model_dump()}",
        *_provenance(t),
        f"program: {t.settings.program}  prompt set: {t.settings.prompt_set}  sampled frames: {t.sampled_indices}",
        f"status: {t.status.value}" + (f" ({t.reason})" if t.reason else ""),
    ]
    for number, turn in enumerate(t.turns, start=1):
        out.extend(_turn(number, turn, max_chars))
    for i, target in enumerate(t.targets):
        out.append(
            f"target {i}: {target.description!r} keyframe {target.frame_index} (sampled #{target.sample_idx}) "
            f"box {target.box}"
        )
    for i, attempt in enumerate(t.attempts):
        keyframes = ", ".join(str(x.frame_index) for x in attempt.targets)
        why = f" ({attempt.why})" if attempt.why else ""
        out.append(
            f"attempt {i}: keyframe {keyframes}  verdict {attempt.verdict or 'none'}{why}  masks {attempt.masks}"
        )
    if t.rewards is not None:
        out.append("rewards: " + "  ".join(f"{k}={v:.4g}" for k, v in t.rewards.items()))
    return "\n".join(out)


def _provenance(t: Trajectory) -> list[str]:
    """What a rebuild depends on, as recorded, and what has changed since (video, wire images)."""
    info, video = t.policy, t.video
    known = {
        "revision": info.revision,
        "chat template": info.chat_template_sha256 and info.chat_template_sha256[:12],
        "images sent as": info.image_encoding,
        "video bytes": video.file_bytes,
    }
    shown = "  ".join(f"{k}: {v}" for k, v in known.items() if v is not None)
    lines = [f"rebuild inputs: {shown}"] if shown else []
    return lines + [f"changed since recorded: {c}" for c in input_changes(t)]


def _turn(number: int, turn: TurnRecord, max_chars: int) -> list[str]:
    images = f"{len(turn.image_frames)} image(s) at {turn.image_size[0]}x{turn.image_size[1]} {turn.image_frames}"
    lines = [f"--- turn {number}: {turn.name} ({turn.duration_s:.2f}s) {images}"]
    lines += ["prompt:", _cut(turn.prompt, max_chars)]
    lines += ["answer:", _cut(turn.response if turn.response is not None else "(none)", max_chars)]
    if turn.token_ids is not None:
        tokens = f"tokens: {len(turn.token_ids)}"
        tokens += f" ({turn.token_source})" if turn.token_source else ""
        if turn.logprobs:
            total = sum(turn.logprobs)
            tokens += f", log-prob sum {total:.3f} (mean {total / len(turn.logprobs):.3f}, "
            tokens += f"perplexity {math.exp(-total / len(turn.logprobs)):.3g})"
            tokens += " approximate" if turn.logprobs_approximate else ""
        lines.append(tokens)
    if turn.overlay:
        lines.append(f"mask drawn from: {turn.overlay}")
    parsed = "parsed" if turn.parse_ok else f"did not parse: {turn.parse_reason}"
    strict = (turn.parsed or {}).get("strict")
    lines.append(parsed + ("" if strict is None else f" (strict format: {'yes' if strict else 'no'})"))
    action = (turn.parsed or {}).get("action") or (turn.parsed or {}).get("verdict")
    if turn.parse_ok and action:
        window = (turn.parsed or {}).get("window")
        why = (turn.parsed or {}).get("why")
        lines.append(f"action: {action}" + (f" {window}" if window else "") + (f" ({why})" if why else ""))
    return lines


def _cut(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[:limit] + f" ... [{len(text) - limit} more characters]"
