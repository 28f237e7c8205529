"""Rewards for a recorded trajectory against ground truth (DESIGN.md 1.4, paper Eqs. 7-8).

The total reward is the gated sum of three components::

    r = w_f * r_f  +  w_t * 1(turn 1 parsed) * r_t  +  w_s * 1(both turns parsed) * r_s

- **Format** ``r_f`` in [0, 1]. The paper gives no scheme; ours is partial credit, 0.5 per
  turn that *fully* satisfies its rules. Turn 1 earns its half when
  :func:`~revseg.policies.parsing.parse_keyframe_answer` calls the answer ``strict``: exactly
  ``<think>...</think> <answer>[...]</answer>`` whose list holds ``frame_idx`` (an int in
  range) and ``object description`` (non-empty) per object. Turn 2 earns its half when
  every grounding turn's answer is ``strict`` under
  :func:`~revseg.policies.parsing.parse_box_answer` (Qwen-VL's ``[{"bbox_2d": [...]}]``).
  A run that ends after turn 1 for lack of a parseable answer gets nothing for turn 2; a
  strict "no target" answer (``[]``) has no turn 2 by design and earns both halves.
- **Temporal** ``r_t`` (Eq. 7, "soft"): ``1(present at k) * (S_k - min_t S_t) / (max_t S_t - min_t S_t)``,
  with ``S_t`` the area of the GT box on sampled frame ``t`` (0 where the target is
  absent) and ``t`` over the trajectory's sampled frames; when ``max = min`` it is
  ``1(present at k)``. Variants for the paper's ablation: ``binary`` (``1(present at k)``)
  and ``none`` (always 0).
- **Spatial** ``r_s``: ``1(IoU(predicted box, GT box at k) > 0.5)``; a multi-object GT is
  compared through its union box.
- "Turn 1 parsed" is the lenient parse the chain itself runs on (the run went on to turn
  2 or ended with no target); "both parsed" adds that every target got a box from turn 2.

Beyond the paper (one keyframe, one box), decided here and applied only where the paper's
case does not arise: when turn 1 lists several objects, the predicted boxes on the same
keyframe are merged into their union box, and ``r_t`` and ``r_s`` are averaged over the
distinct keyframes named; a "no target" answer is scored as a whole, ``r_t = r_s = 1`` when
the GT is empty on every sampled frame and 0 otherwise (under ``temporal="none"``, ``r_t`` stays 0).

The look_again program (``settings.program``; ours, issue 16) is scored by the same
equation plus one term, each part read the same way over its longer conversation::

    r = w_f * r_f  +  w_t * 1(final keyframe parsed) * r_t  +  w_s * 1(its boxes parsed) * r_s  +  w_v * r_v

- **Format** ``r_f``: half for choosing, half for acting. ``format_per_turn`` times the
  share of *strict* look turns (interpret, zoom, reselect: a keyframe list or a zoom
  exactly as prompted) plus ``format_per_turn`` times the share of strict ground and
  verify turns (as recorded by the graph's parsers), so ``r_f`` stays in [0, 1].
- **Temporal** ``r_t``: Eq. 7 for the keyframe *finally* chosen, with ``S_t`` over every
  frame the policy was shown (the first sample and every zoom's frames). A zoom earns
  nothing by itself: it pays only when it leads to a keyframe where the target is large,
  and it costs a turn of the budget.
- **Spatial** ``r_s``: as the paper's, for the final attempt's boxes.
- **Verify** ``r_v`` in [0, 1]: the share of verify turns whose verdict agrees with the
  ground truth, i.e. accept iff the tracked mask's mean J exceeds ``verify_threshold`` (an
  unreadable verdict is wrong). J is averaged over the frames verify was shown where the
  mask or the target is non-empty: a frame where both are empty says nothing about the
  mask, and counting it as J = 1 would pay "accept" for an empty or wrong mask whenever the
  target is on screen briefly. If no shown frame has either, the verdict is judged on the
  whole clip by the same rule (an empty mask is then wrong if the target is anywhere in
  the clip, and right if it is nowhere). J needs GT masks (a ground truth with
  ``mask(frame_index)``, as :class:`~revseg.rl.groundtruth.MaskGroundTruth`); with boxes
  only, the IoU of the mask's box with the GT box stands in for it. A run
  without a verify turn has no ``r_v`` (the key is absent, and the paper's records never have it).
"""

from __future__ import annotations

import math
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from typing import Literal

from revseg.policies.parsing import parse_box_answer, parse_keyframe_answer
from revseg.rl.groundtruth import GroundTruth
from revseg.tools.boxes import box_area, box_iou, mask_to_box, union_box
from revseg.trajectory import BoxXYXY, Trajectory, TurnRecord

LOOK_TURNS = ("interpret", "zoom", "reselect")
"""look_again turns whose answer chooses (a keyframe, or where to zoom)."""

TemporalMode = Literal["soft", "binary", "none"]
TEMPORAL_MODES: tuple[TemporalMode, ...] = ("soft", "binary", "none")


@dataclass(frozen=True, kw_only=True)
class RewardConfig:
    """How a trajectory is scored. Every default is the paper's (DESIGN.md 1.4) unless said otherwise."""

    format_weight: float = field(default=1.0, metadata={"help": "w_f, weight of the format reward (paper Eq. 8: 1)."})
    temporal_weight: float = field(
        default=1.0, metadata={"help": "w_t, weight of the temporal reward (paper Eq. 8: 1)."}
    )
    spatial_weight: float = field(default=1.0, metadata={"help": "w_s, weight of the spatial reward (paper Eq. 8: 1)."})
    temporal: TemporalMode = field(
        default="soft",
        metadata={"help": "Temporal reward: 'soft' (paper Eq. 7), or the ablation's 'binary' and 'none'."},
    )
    iou_threshold: float = field(
        default=0.5, metadata={"help": "r_s = 1 when IoU(pred, GT) is strictly above this (paper: 0.5)."}
    )
    format_per_turn: float = field(
        default=0.5,
        metadata={"help": "Format credit for each turn that fully satisfies its rules (ours; the paper gives none)."},
    )
    verify_weight: float = field(
        default=1.0, metadata={"help": "w_v, weight of the look_again verify reward (ours; not in the paper)."}
    )
    verify_threshold: float = field(
        default=0.5, metadata={"help": "A verdict is right when it accepts iff the mask's mean J exceeds this (ours)."}
    )

    def __post_init__(self) -> None:
        names = ("format_weight", "temporal_weight", "spatial_weight", "iou_threshold", "format_per_turn")
        for name in (*names, "verify_weight", "verify_threshold"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
                raise ValueError(f"RewardConfig.{name} must be a finite number, got {value!r}")
        if self.temporal not in TEMPORAL_MODES:
            raise ValueError(f"unknown temporal reward {self.temporal!r}; use one of {', '.join(TEMPORAL_MODES)}")
        if not 0.0 <= self.iou_threshold < 1.0:
            raise ValueError(f"iou_threshold must be in [0, 1), got {self.iou_threshold}")


@dataclass(frozen=True)
class Rewards:
    """One trajectory's reward and its components, as stored in ``Trajectory.rewards``.

    ``format``, ``temporal`` and ``spatial`` are the ungated components; ``total`` is the
    gated, weighted sum. ``iou`` is the keyframe box IoU behind ``spatial`` (for logging).
    """

    total: float
    format: float
    temporal: float
    spatial: float
    format_interpret: float
    format_ground: float
    turn1_parsed: float
    both_parsed: float
    iou: float
    verify: float | None = None

    def as_dict(self) -> dict[str, float]:
        """Plain ``{name: value}``, the form ``Trajectory.rewards`` holds (``verify`` only when there was one)."""
        return {k: float(v) for k, v in asdict(self).items() if v is not None}


def soft_temporal_reward(key_area: float | None, areas: Sequence[float]) -> float:
    """Paper Eq. 7: ``(S_k - min S) / (max S - min S)`` if the target is present at ``k``, else 0.

    ``key_area`` is the GT box area at the keyframe (None when absent there); ``areas``
    are the GT box areas over the sampled frames, 0 where absent. ``max = min`` gives
    ``1(present at k)``.
    """
    if key_area is None:
        return 0.0
    low, high = min(areas, default=key_area), max(areas, default=key_area)
    if high <= low:
        return 1.0
    return min(1.0, max(0.0, (key_area - low) / (high - low)))


def temporal_reward(key_area: float | None, areas: Sequence[float], mode: TemporalMode = "soft") -> float:
    """``r_t`` under ``mode``: ``soft`` (Eq. 7), ``binary`` (``1(present at k)``) or ``none`` (0)."""
    if mode == "soft":
        return soft_temporal_reward(key_area, areas)
    if mode == "binary":
        return 0.0 if key_area is None else 1.0
    if mode == "none":
        return 0.0
    raise ValueError(f"unknown temporal reward {mode!r}; use one of {', '.join(TEMPORAL_MODES)}")


def spatial_reward(pred: Sequence[float] | None, gt: Sequence[float] | None, threshold: float = 0.5) -> float:
    """``1(IoU(pred, gt) > threshold)``; a missing prediction or an absent target gives 0."""
    if pred is None or gt is None:
        return 0.0
    return 1.0 if box_iou(pred, gt) > threshold else 0.0


def format_rewards(trajectory: Trajectory, per_turn: float = 0.5) -> tuple[float, float]:
    """(turn-1 credit, turn-2 credit) of the format reward, re-parsed from the recorded answers."""
    if not trajectory.turns or trajectory.turns[0].name != "interpret":
        return 0.0, 0.0
    first = parse_keyframe_answer(trajectory.turns[0].response or "", max(1, len(trajectory.sampled_indices)))
    turn1 = per_turn if first.ok and first.strict else 0.0
    if first.ok and first.no_target:
        return turn1, turn1  # nothing to ground: the chain is complete after a strict turn 1
    grounds = [t for t in trajectory.turns if t.name == "ground"]
    strict2 = bool(grounds) and len(grounds) >= len(trajectory.targets)
    strict2 = strict2 and all(parse_box_answer(t.response or "").strict for t in grounds)
    return turn1, per_turn if strict2 else 0.0


def compute_rewards(trajectory: Trajectory, truth: GroundTruth, config: RewardConfig | None = None) -> Rewards:
    """Score one trajectory against its (video, query)'s ground truth (DESIGN.md 1.4).

    Reads the GT box of every sampled frame (lazily, through ``truth.box``) and nothing else.
    """
    config = config or RewardConfig()
    if trajectory.settings.program == "look_again":
        return _look_again_rewards(trajectory, truth, config)
    f1, f2 = format_rewards(trajectory, config.format_per_turn)
    first = (
        parse_keyframe_answer(trajectory.turns[0].response or "", max(1, len(trajectory.sampled_indices)))
        if trajectory.turns and trajectory.turns[0].name == "interpret"
        else None
    )
    turn1_parsed = first is not None and first.ok
    no_target = turn1_parsed and first is not None and first.no_target
    grounds = [t for t in trajectory.turns if t.name == "ground"]
    both_parsed = turn1_parsed and (no_target or _every_target_grounded(trajectory, grounds))

    gt_boxes: dict[int, BoxXYXY | None] = {i: truth.box(i) for i in dict.fromkeys(trajectory.sampled_indices)}
    areas = [0.0 if gt_boxes[i] is None else box_area(gt_boxes[i]) for i in trajectory.sampled_indices]  # type: ignore[arg-type]
    r_t = r_s = iou = 0.0
    if no_target:
        correct = all(b is None for b in gt_boxes.values())
        r_t = 1.0 if correct and config.temporal != "none" else 0.0
        r_s = iou = 1.0 if correct else 0.0
    elif turn1_parsed and trajectory.targets:
        by_keyframe: dict[int, list[BoxXYXY]] = defaultdict(list)
        for target in trajectory.targets:
            boxes = by_keyframe[target.frame_index]
            if target.box is not None:
                boxes.append(target.box)
        t_parts, s_parts, iou_parts = [], [], []
        for k, boxes in by_keyframe.items():
            gt = gt_boxes[k] if k in gt_boxes else truth.box(k)
            key_area = None if gt is None else box_area(gt)
            t_parts.append(temporal_reward(key_area, areas, config.temporal))
            pred = union_box(boxes)
            s_parts.append(spatial_reward(pred, gt, config.iou_threshold))
            iou_parts.append(box_iou(pred, gt) if pred is not None and gt is not None else 0.0)
        r_t, r_s, iou = (sum(p) / len(p) for p in (t_parts, s_parts, iou_parts))
    r_f = f1 + f2
    total = (
        config.format_weight * r_f
        + config.temporal_weight * float(turn1_parsed) * r_t
        + config.spatial_weight * float(both_parsed) * r_s
    )
    return Rewards(
        total=total,
        format=r_f,
        temporal=r_t,
        spatial=r_s,
        format_interpret=f1,
        format_ground=f2,
        turn1_parsed=float(turn1_parsed),
        both_parsed=float(both_parsed),
        iou=iou,
    )


def _look_again_rewards(trajectory: Trajectory, truth: GroundTruth, config: RewardConfig) -> Rewards:
    """The look_again program's reward (module docstring): the paper's parts over the final attempt, plus r_v."""
    turns = trajectory.turns
    looks = [t for t in turns if t.name in LOOK_TURNS]
    acts = [t for t in turns if t.name in ("ground", "verify")]
    f1 = config.format_per_turn * _strict_share(looks)
    f2 = config.format_per_turn * _strict_share(acts)
    final = (looks[-1].parsed or {}) if looks and looks[-1].parse_ok else {}
    turn1_parsed = final.get("action") == "select"
    no_target = turn1_parsed and bool(final.get("no_target"))
    grounds = [t for t in turns if t.name == "ground"]
    last_grounds = [g for g in grounds if g.attempt == grounds[-1].attempt] if grounds else []
    both_parsed = turn1_parsed and (no_target or _every_target_grounded(trajectory, last_grounds))
    seen = sorted({i for t in turns if t.name in ("interpret", "zoom") for i in t.image_frames})
    gt_boxes: dict[int, BoxXYXY | None] = {i: truth.box(i) for i in seen}
    areas = [0.0 if b is None else box_area(b) for b in gt_boxes.values()]
    r_t = r_s = iou = 0.0
    if no_target:
        correct = all(b is None for b in gt_boxes.values())
        r_t = 1.0 if correct and config.temporal != "none" else 0.0
        r_s = iou = 1.0 if correct else 0.0
    elif turn1_parsed and trajectory.targets:
        k = trajectory.targets[0].frame_index
        gt = gt_boxes[k] if k in gt_boxes else truth.box(k)
        r_t = temporal_reward(None if gt is None else box_area(gt), areas, config.temporal)
        same = [t.box for t in trajectory.targets if t.frame_index == k and t.box is not None]
        pred = union_box(same)
        r_s = spatial_reward(pred, gt, config.iou_threshold)
        iou = box_iou(pred, gt) if pred is not None and gt is not None else 0.0
    verifies = [t for t in turns if t.name == "verify" and t.response is not None]
    r_v = None
    if verifies:
        r_v = sum(_verdict_right(t, truth, config.verify_threshold) for t in verifies) / len(verifies)
    total = (
        config.format_weight * (f1 + f2)
        + config.temporal_weight * float(turn1_parsed) * r_t
        + config.spatial_weight * float(both_parsed) * r_s
        + (config.verify_weight * r_v if r_v is not None else 0.0)
    )
    return Rewards(
        total=total,
        format=f1 + f2,
        temporal=r_t,
        spatial=r_s,
        format_interpret=f1,
        format_ground=f2,
        turn1_parsed=float(turn1_parsed),
        both_parsed=float(both_parsed),
        iou=iou,
        verify=r_v,
    )


def _every_target_grounded(trajectory: Trajectory, grounds: Sequence[TurnRecord]) -> bool:
    """Every target has a box from a parsed grounding turn of its own (the ``both_parsed`` gate's second half)."""
    return (
        bool(trajectory.targets)
        and all(t.box is not None for t in trajectory.targets)
        and len(grounds) >= len(trajectory.targets)
        and all(g.parse_ok for g in grounds)
    )


def _strict_share(turns: Sequence[TurnRecord]) -> float:
    """The share of ``turns`` whose answer the graph's parser called strict (0 for none)."""
    if not turns:
        return 0.0
    return sum(bool(t.parse_ok and (t.parsed or {}).get("strict")) for t in turns) / len(turns)


def _verdict_right(turn: TurnRecord, truth: GroundTruth, threshold: float) -> float:
    """1 when a verify turn's verdict agrees with the ground truth: accept iff :func:`verdict_quality` > threshold."""
    verdict = (turn.parsed or {}).get("verdict") if turn.parse_ok else None
    if verdict not in ("accept", "reject") or not turn.overlay:
        return 0.0
    good = verdict_quality(turn.overlay, turn.image_frames, truth) > threshold
    return 1.0 if (verdict == "accept") == good else 0.0


def verdict_quality(masks_json: str, frames: Sequence[int], truth: GroundTruth) -> float:
    """The J a verify verdict is judged by: :func:`mask_quality` on the frames verify showed.

    When neither the mask nor the target is on any of them, the shown frames say nothing
    about the mask, and it is judged on every frame of the clip instead (the masks file
    covers them all): an empty mask misses a target that is on screen elsewhere (J = 0
    there), and an empty mask on a clip without the target anywhere is exactly right (1).
    """
    from revseg.tools.masks import read_masks_json

    shown = mask_quality(masks_json, frames, truth)
    if shown is not None:
        return shown
    whole = mask_quality(masks_json, range(read_masks_json(masks_json).num_frames), truth)
    return 1.0 if whole is None else whole


def mask_quality(masks_json: str, frames: Sequence[int], truth: GroundTruth) -> float | None:
    """Mean J of the recorded masks against the ground truth's, over those of ``frames`` where either is non-empty.

    A frame where both are empty says nothing about the mask and is left out (so an empty
    mask does not score well because the target is off screen); None when every frame is
    such a frame. A ground truth with boxes only is compared through boxes: the IoU of the
    mask's box with the GT box (one absent: 0).
    """
    from revseg.tools.masks import read_masks_json

    masks = read_masks_json(masks_json)
    gt_mask = getattr(truth, "mask", None)
    scores = []
    for index in dict.fromkeys(frames):
        pred = masks.union(index)
        if gt_mask is not None:
            gt = gt_mask(index)
            if gt is None or not gt.any():
                if pred.any():
                    scores.append(0.0)
                continue
            scores.append(float((pred & gt).sum()) / float((pred | gt).sum()))
            continue
        pred_box, gt_box = mask_to_box(pred), truth.box(index)
        if pred_box is None and gt_box is None:
            continue
        scores.append(0.0 if pred_box is None or gt_box is None else box_iou(pred_box, gt_box))
    return sum(scores) / len(scores) if scores else None


def score(trajectory: Trajectory, truth: GroundTruth, config: RewardConfig | None = None) -> Trajectory:
    """A copy of ``trajectory`` with ``rewards`` set to :func:`compute_rewards`' components."""
    return trajectory.model_copy(update={"rewards": compute_rewards(trajectory, truth, config).as_dict()})
