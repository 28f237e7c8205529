"""Tables and notes of benchmarks/bench_look_again_learning.py: one row per evaluation, phase times, plain words.

Also :func:`target_j`, the figure both look_again benchmarks report beside J&F.
"""

from __future__ import annotations

import statistics
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np


@dataclass
class Row:
    """One evaluation of one policy in one program on the held-out clips."""

    policy: str
    program: str
    jf: float
    j: float
    f: float
    j_present: float
    turns: float
    zoom_runs: float
    zooms: float
    verdicts: float
    accept: float
    verdict_right: float | None
    regrounds: float
    zoom_if_unseen: float | None
    zoom_if_seen: float | None
    accept_if_target: float | None
    accept_if_not: float | None
    frames: float
    ok: float
    format: float
    temporal: float
    spatial: float
    ms_per_run: float
    statuses: dict[str, int] = field(default_factory=dict)


@dataclass
class Sampled:
    """Sampled look_again rollouts (temperature 1) of one checkpoint on the held-out clips."""

    policy: str
    rollouts: int
    reward: float
    verify_reward: float
    zoom_if_unseen: float | None
    zoom_if_seen: float | None
    unseen: int
    seen: int
    accept_if_target: float | None
    accept_if_not: float | None
    on_target: int
    not_on_target: int
    final_on_target: float


def share(flags: list[bool]) -> float | None:
    """The share of true flags (None for none)."""
    return sum(flags) / len(flags) if flags else None


def table(rows: list[Row]) -> str:
    """One Markdown row per (policy, program)."""
    header = (
        "policy",
        "program",
        "J&F",
        "J",
        "F",
        "J on target frames",
        "turns/run",
        "runs that zoom",
        "zooms/run",
        "verdicts/run",
        "accept share",
        "verdicts right",
        "re-grounds/run",
        "first look zooms: target unseen / seen",
        "accepts: mask on target / not",
        "frames tracked/run",
        "status ok",
        "format",
        "temporal",
        "spatial",
        "ms/run",
    )
    lines = ["| " + " | ".join(header) + " |", "|---|---|" + "---:|" * (len(header) - 2)]
    for r in rows:
        look = r.program == "look_again"
        cells = [
            r.policy,
            r.program,
            f"{r.jf:.1f}",
            f"{r.j:.1f}",
            f"{r.f:.1f}",
            f"{r.j_present:.1f}",
            f"{r.turns:.2f}",
            f"{r.zoom_runs:.2f}" if look else "",
            f"{r.zooms:.2f}" if look else "",
            f"{r.verdicts:.2f}" if look else "",
            f"{r.accept:.2f}" if look and r.verdicts else "",
            "" if r.verdict_right is None else f"{r.verdict_right:.2f}",
            f"{r.regrounds:.2f}" if look else "",
            f"{pair(r.zoom_if_unseen)} / {pair(r.zoom_if_seen)}" if look else "",
            f"{pair(r.accept_if_target)} / {pair(r.accept_if_not)}" if look and r.verdicts else "",
            f"{r.frames:.0f}",
            f"{r.ok:.2f}",
            f"{r.format:.2f}",
            f"{r.temporal:.2f}",
            f"{r.spatial:.2f}",
            f"{r.ms_per_run:.0f}",
        ]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def pair(value: float | None) -> str:
    """A share, or a dash where there was nothing to count."""
    return "-" if value is None else f"{value:.2f}"


def phase_table(phases: dict[str, float]) -> str:
    """Wall and process-CPU seconds per phase."""
    lines = ["| phase | wall s | process CPU s |", "|---|---:|---:|"]
    names = sorted({k.rsplit("_", 2)[0] for k in phases if k.endswith("_wall_s")}, key=_phase_order)
    for name in names:
        lines.append(f"| {name.replace('_', ' ')} | {phases[name + '_wall_s']:.0f} | {phases[name + '_cpu_s']:.0f} |")
    return "\n".join(lines)


def _phase_order(name: str) -> tuple[int, str]:
    order = (
        "sft_data",
        "sft_train",
        "grpo_collect",
        "grpo_train",
        "eval_oracle",
        "eval_sft",
        "eval_grpo",
        "sampled_sft",
        "sampled_grpo",
    )
    return (order.index(name) if name in order else len(order), name)


def sampled_table(rows: list[Sampled]) -> str:
    """One Markdown row per checkpoint."""
    lines = [
        "| policy | rollouts | look_again reward | verify reward (runs that verify) "
        "| first look zooms: target unseen (n) / seen (n) | accepts: mask on target (n) / not (n) "
        "| last verified mask on the target |",
        "|---|---:|---:|---:|---|---|---:|",
    ]
    for r in rows:
        lines.append(
            f"| {r.policy} | {r.rollouts} | {r.reward:.3f} | {r.verify_reward:.3f} | {pair(r.zoom_if_unseen)} "
            f"({r.unseen}) / {pair(r.zoom_if_seen)} ({r.seen}) | {pair(r.accept_if_target)} ({r.on_target}) / "
            f"{pair(r.accept_if_not)} ({r.not_on_target}) | {r.final_on_target:.3f} |"
        )
    return "\n".join(lines)


def describe(
    plan: Any,
    data: dict[str, float],
    rounds: list[dict[str, float]],
    rows: list[Row],
    elapsed: float,
    load: float,
    *,
    reused: bool,
) -> str:
    """The notes under the table: the set, the training, and plain words on what moved."""
    grpo_rounds = "; ".join(
        f"round {int(r['round'])}: train reward {r['reward']:.2f}, {int(r['steps'])} steps, "
        f"{int(r['groups_with_signal'])} groups with signal, KL {r['kl']:.4f}, clip fraction {r['clip_fraction']:.4f}"
        for r in rounds
    )
    by = {(r.policy, r.program): r for r in rows}
    moves = []
    for program in ("paper", "look_again"):
        a, b = by.get(("sft", program)), by.get(("grpo", program))
        if a and b:
            moves.append(
                f"{program}: J&F {a.jf:.1f} -> {b.jf:.1f}, format {a.format:.2f} -> {b.format:.2f}, "
                f"temporal {a.temporal:.2f} -> {b.temporal:.2f}, spatial {a.spatial:.2f} -> {b.spatial:.2f}"
            )
    for name in ("sft", "grpo"):
        r = by.get((name, "look_again"))
        if r:
            moves.append(
                f"{name} in look_again: first look zooms in {pair(r.zoom_if_unseen)} of the runs whose first view "
                f"missed the target and {pair(r.zoom_if_seen)} of those whose view showed it (oracle 1.00 / 0.00: a "
                f"gap is what learning the zoom means); verify accepts {pair(r.accept_if_target)} of masks on the "
                f"target and {pair(r.accept_if_not)} of masks on anything else (oracle 1.00 / 0.00)"
            )
    paper_text = (
        f" and {int(data['paper_chains'])} oracle paper chains of the same clips (so the paper-chain rows "
        "measure the model, not a prompt it never saw; its miss answer names the look-alike)"
        if data.get("paper_chains")
        else ""
    )
    reused_text = " (made by an earlier run in the same --work folder; its times are that run's)" if reused else ""
    return (
        f"Tiny random Qwen2.5-VL (revseg.testing, hidden {plan.hidden_size}, {plan.num_layers} layers) on "
        f"revseg.testing.longclips clips of {plan.clip_frames} frames at 112x84 (target on screen for 3-4 frames, "
        f"look-alike always). Chain: {plan.num_frames} frames per view at {plan.frame_size} px, keyframe at "
        f"{plan.keyframe_size} px, verify shows {plan.verify_frames} frames + the keyframe, turn budget "
        f"{plan.max_turns}, {plan.max_new_tokens} new tokens per turn. Warm-up{reused_text}: "
        f"{int(data['chains'])} oracle look_again chains (first-box error {plan.first_box_error}, boxes on a "
        f"{plan.box_grid}-px grid; {data['turns']:.2f} turns per chain, {data['zoom_runs']:.2f} of them zoom, "
        f"{int(data['accepts'])} accepts and {int(data['rejects'])} rejects; oracle reward {data['reward']:.2f})"
        f"{paper_text} x "
        f"{plan.sft_epochs} epochs of SFT (`train(algorithm='rft')`, {plan.sft_batch} chains a step, "
        f"{int(data.get('steps', 0))} steps, loss {data.get('loss_first', 0):.3f} -> {data.get('loss_last', 0):.3f} "
        f"(first and last tenth of the steps)) at lr {plan.sft_lr:g}. GRPO: {plan.rounds} "
        f"rounds x {plan.items} fresh clips x {plan.group_size} rollouts (temperature 1, look_again rewards), "
        f"{plan.prompts_per_step} groups per step, lr {plan.lr:g}, beta {plan.beta:g} to the warm-up model, "
        f"Adam moments carried from round 2 ({grpo_rounds}). Evaluation: {plan.eval_clips} held-out clips through "
        f"the eval harness (greedy; J&F as for ReVOS); the oracle rows are LongClipOracle with the same first-box "
        f"error (what the chain's decisions allow). 'verdicts right': share of verify verdicts that agree with the "
        f"truth (accept iff the attempt's box made the tracker follow the target); format/temporal/spatial: the "
        f"look_again or paper reward components of the eval runs. Warm-up -> GRPO: {'; '.join(moves)}. "
        f"Whole run {elapsed / 60:.1f} min wall, one torch thread, load average about {load:.1f} on a 2-core "
        f"machine shared with the lead's training jobs: wall times are inflated, process CPU times are not."
    )


def target_j(out: Path, clip: Any) -> float:
    """Mean J of a run's masks over the frames where the target is on screen (empty predictions score 0 there).

    On this set J&F pays an empty prediction about 0.93 (the target is absent from most frames and
    empty on empty scores 1), so this is the figure that says whether the run segmented the target.
    """
    from revseg.tools.masks import read_masks_json

    path = out / "runs" / clip.name / "0" / "masks.json"
    masks = read_masks_json(path) if path.exists() else None
    scores = []
    for t in range(*clip.window):
        gt = clip.clip.target_mask(t)
        pred = masks.union(t) if masks is not None else np.zeros_like(gt)
        scores.append(float((pred & gt).sum()) / float((pred | gt).sum() or 1))
    return statistics.mean(scores)
