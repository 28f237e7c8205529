"""Does the tiny model learn to look again? SFT on oracle look_again chains, then GRPO, on the long-clip set.

Issue 16, part 5(b). The set is :mod:`revseg.testing.longclips` (a target on screen for a
few frames of the clip, a look-alike on screen throughout, a third shape standing still),
short enough for the CPU. A tiny random Qwen2.5-VL (revseg.testing, 128 x 4 layers by
default) is taught the look_again program:

1. SFT warm-up: :class:`~revseg.testing.longclips.LongClipOracle` runs the look_again
   program on the warm-up clips with :class:`~revseg.testing.longclips.LongClipTracker`
   (the true masks of the shape a box lands on), so the records hold zooms, verify
   verdicts (its first box lands on the look-alike with ``--first-box-error``, and verify
   rejects those: accepts and rejects both occur) and re-grounds; its boxes are rounded to
   a ``--box-grid``-px grid. ``train(algorithm="rft")`` fine-tunes on those records.
2. GRPO: R rounds of collect (the latest checkpoint as ``hf:PATH``, temperature 1,
   ``--group-size`` rollouts per fresh clip, the look_again rewards of
   :mod:`revseg.rl.rewards`) -> ``train`` (KL to the warm-up model in every round). Round 1
   warms the rate up and later rounds carry Adam's moments (``optimizer_state_from``): a
   fresh Adam's first steps move every weight by about the learning rate, which broke a
   tiny model's format in one round in benchmarks/bench_learning.py.
3. Evaluation on held-out clips with the eval harness (J&F as for ReVOS, greedy decoding),
   for the warm-up and the final checkpoint, each in the paper's chain and in look_again,
   with the oracle's own J&F beside them; plus what the model did: turns per run, zooms,
   verify verdicts and their accuracy against the truth (accept iff the attempt's box made
   the tracker follow the target), re-grounds, frames tracked, wall time per run.

Prints the table with each phase's time and records it in benchmarks/RESULTS.md (not with
``--dry``). A rerun with the same ``--work`` folder keeps the warm-up. Run:
``.venv/bin/python benchmarks/bench_look_again_learning.py`` (about 20 minutes on a
quiet 2-core machine; ``--quick`` is a smoke check of a few minutes).
"""

from __future__ import annotations

import argparse
import functools
import json
import os
import shutil
import statistics
import sys
import tempfile
import time
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

from _common import PhaseClock, record
from _look_again_report import Row, Sampled, describe, phase_table, sampled_table, share, table, target_j

SEEDS = {"sft": 111, "train": 222, "heldout": 333}
"""Clip seeds of the three splits: warm-up, GRPO and held-out evaluation never share a clip."""
TITLE = "Look again, learnt: tiny model after SFT and GRPO on long clips (CPU)"


@dataclass(frozen=True)
class Plan:
    """Everything a run depends on."""

    work: str
    clip_frames: int
    num_frames: int
    frame_size: int
    keyframe_size: int
    verify_frames: int
    max_turns: int
    first_box_error: float
    box_grid: int
    sft_clips: int
    sft_epochs: int
    sft_lr: float
    sft_batch: int
    sft_paper: bool
    rounds: int
    items: int
    group_size: int
    lr: float
    beta: float
    prompts_per_step: int
    warmup_steps: int
    eval_clips: int
    eval_samples: int
    max_new_tokens: int
    hidden_size: int
    num_layers: int
    seed: int


# --------------------------------------------------------------------------- data


def settings(plan: Plan, program: str) -> Any:
    """The chain at CPU size, in ``program``."""
    from revseg.settings import ChainSettings

    return ChainSettings(
        num_frames=plan.num_frames,
        frame_size=(plan.frame_size, plan.frame_size),
        keyframe_size=(plan.keyframe_size, plan.keyframe_size),
        program=program,
        verify_frames=plan.verify_frames,
        max_turns=plan.max_turns,
    )


def split(plan: Plan, name: str) -> list[Any]:
    """The long clips of one split (deterministic from the split's seed)."""
    from revseg.testing.longclips import make_long_clips

    count = {"sft": plan.sft_clips, "train": plan.rounds * plan.items, "heldout": plan.eval_clips}[name]
    return make_long_clips(SEEDS[name] + 1000 * plan.seed, count, num_frames=plan.clip_frames)


def items(plan: Plan, clips: list[Any]) -> list[Any]:
    """CollectItems of ``clips`` (written as JPEG folders once), scored against the target's exact masks."""
    from revseg.rl.collect import CollectItem
    from revseg.rl.groundtruth import MaskGroundTruth

    out = []
    for clip in clips:
        folder = Path(plan.work) / "clips" / clip.name
        if not folder.exists():
            clip.write(folder)
        out.append(
            CollectItem(clip.name, str(folder), clip.query, functools.partial(MaskGroundTruth, clip.clip.target_mask))
        )
    return out


def sampling(plan: Plan, temperature: float) -> Any:
    """Untruncated sampling at ``temperature`` (0: greedy) with a short token budget."""
    from revseg.settings import SamplingParams

    return SamplingParams(temperature=temperature, top_p=1.0, max_new_tokens=plan.max_new_tokens)


def load_policy(checkpoint: Path) -> Any:
    """``hf:checkpoint`` on the CPU (it never samples vision placeholder tokens, so every rollout rebuilds)."""
    from revseg.policies.hf import HFPolicy

    return HFPolicy.from_spec(str(checkpoint), device="cpu")


# --------------------------------------------------------------------------- stages


def warm_up(plan: Plan, base: Path, clock: PhaseClock) -> tuple[Path, dict[str, float]]:
    """SFT on the oracle's look_again chains; returns the checkpoint and what its data held."""
    from revseg.rl.collect import collect
    from revseg.rl.grpo import GRPOConfig
    from revseg.rl.train import train
    from revseg.testing.longclips import LongClipOracle, LongClipTracker
    from revseg.trajectory_store import TrajectoryStore

    out = Path(plan.work) / "sft"
    data = Path(plan.work) / "sft-data"
    timing = out / "warm_up_timing.json"
    if (out / "revseg_train.json").exists() and timing.exists():  # a rerun in the same --work keeps its warm-up
        before = json.loads(timing.read_text())
        clock.phases.update(before["phases"], sft_reused=1.0)
        return out, before["data"]
    clips = split(plan, "sft")
    oracle = LongClipOracle(clips, first_box_error=plan.first_box_error, seed=plan.seed, grid=plan.box_grid)
    store = TrajectoryStore(data)
    programs = ("look_again", "paper") if plan.sft_paper else ("look_again",)
    with clock("sft_data"):
        for program in programs:
            collect(
                [replace(item, key=f"{item.key}/{program}") for item in items(plan, clips)],
                oracle,
                store,
                group_size=1,
                settings=settings(plan, program),
                tracker=LongClipTracker(clips),
                seed=plan.seed,
                resume=True,
            )
    records = [t for t in store if t.settings.program == "look_again"]
    summary = {
        "chains": float(len(records)),
        "paper_chains": float(sum(t.settings.program == "paper" for t in store)),
        "turns": statistics.mean(len(t.turns) for t in records),
        "zoom_runs": statistics.mean(any(turn.name == "zoom" for turn in t.turns) for t in records),
        "accepts": float(sum(a.verdict == "accept" for t in records for a in t.attempts)),
        "rejects": float(sum(a.verdict == "reject" for t in records for a in t.attempts)),
        "reward": statistics.mean((t.rewards or {})["total"] for t in records),
    }
    config = GRPOConfig(
        algorithm="rft",
        learning_rate=plan.sft_lr,
        prompts_per_step=plan.sft_batch,
        num_epochs=plan.sft_epochs,
        warmup_steps=10,
        seed=plan.seed,
    )
    with clock("sft_train"):
        result = train(data, f"hf:{base}", out, config)
    losses = [m["loss"] for m in result.history if m.get("updated")]
    tenth = max(1, len(losses) // 10)
    summary["loss_first"] = statistics.mean(losses[:tenth]) if losses else 0.0
    summary["loss_last"] = statistics.mean(losses[-tenth:]) if losses else 0.0
    summary["steps"] = float(len(losses))
    phases = {k: v for k, v in clock.phases.items() if k.startswith("sft_")}
    timing.write_text(json.dumps({"phases": phases, "data": summary}) + "\n")
    return out, summary


def grpo(plan: Plan, start: Path, clock: PhaseClock) -> tuple[Path, list[dict[str, float]]]:
    """R rounds of collect (latest checkpoint, temperature 1) -> GRPO; the final checkpoint and each round's logs."""
    from revseg.rl.collect import collect
    from revseg.rl.grpo import GRPOConfig
    from revseg.rl.train import train
    from revseg.testing.longclips import LongClipTracker

    clips = split(plan, "train")
    checkpoint = start
    shutil.rmtree(Path(plan.work) / "grpo", ignore_errors=True)
    rounds = []
    for round_ in range(1, plan.rounds + 1):
        batch = clips[(round_ - 1) * plan.items : round_ * plan.items]
        data = Path(plan.work) / "grpo" / f"round{round_}-data"
        with clock("grpo_collect"):
            report = collect(
                items(plan, batch),
                load_policy(checkpoint),
                data,
                group_size=plan.group_size,
                sampling=sampling(plan, 1.0),
                settings=settings(plan, "look_again"),
                tracker=LongClipTracker(batch),
                seed=plan.seed + round_,
            )
        config = GRPOConfig(
            learning_rate=plan.lr,
            num_generations=plan.group_size,
            prompts_per_step=plan.prompts_per_step,
            beta=plan.beta,
            seed=plan.seed + round_,
            reference_model=f"hf:{start}",
            warmup_steps=plan.warmup_steps if round_ == 1 else 0,
            optimizer_state_from=str(checkpoint) if round_ > 1 else None,
        )
        out = Path(plan.work) / "grpo" / f"round{round_}"
        with clock("grpo_train"):
            result = train(data, f"hf:{checkpoint}", out, config)
        checkpoint = out
        steps = [m for m in result.history if m.get("updated")]
        logged = {
            "round": float(round_),
            "reward": report.mean_reward,
            "steps": float(len(steps)),
            "groups_with_signal": float(result.groups_with_signal),
            "kl": statistics.mean(m["kl"] for m in steps) if steps else 0.0,
            "clip_fraction": statistics.mean(m["clip_fraction"] for m in steps) if steps else 0.0,
        }
        rounds.append(logged)
        print(f"GRPO round {round_}: {json.dumps(logged)}", flush=True)
    return checkpoint, rounds


def evaluate(plan: Plan, root: Path, policy: Any, name: str, program: str) -> Row:
    """One policy in one program on the held-out clips, through the eval harness (J&F as for ReVOS)."""
    from revseg.evals.benchmarks import get_benchmark
    from revseg.evals.runner import evaluate as run_eval
    from revseg.evals.workers import quiet_agent
    from revseg.rl.groundtruth import MaskGroundTruth
    from revseg.rl.rewards import compute_rewards
    from revseg.testing.longclips import LongClipTracker
    from revseg.trajectory import Trajectory

    clips = split(plan, "heldout")
    by_name = {c.name: c for c in clips}
    tracker = LongClipTracker(clips)
    chain = settings(plan, program)
    greedy = sampling(plan, 0.0)
    out = Path(plan.work) / "eval" / f"{name}-{program}"
    shutil.rmtree(out, ignore_errors=True)
    started = time.perf_counter()
    report = run_eval(
        get_benchmark("revos", root, "valid"),
        out,
        lambda: quiet_agent(policy, tracker, settings=chain, sampling=greedy),
    )
    wall = time.perf_counter() - started
    runs = [Trajectory.load(p) for p in sorted(out.glob("runs/**/trajectory.json"))]
    n = len(report.samples)
    # The harness keeps the masks verify saw beside each record, so the records score as collected
    # ones do; verdict_right also judges verdicts by the shape each attempt's box made the tracker follow.
    scored = [compute_rewards(t, MaskGroundTruth(by_name[Path(t.video.path).name].clip.target_mask)) for t in runs]
    verdicts = [a.verdict for t in runs for a in t.attempts if a.verdict]
    judged = judged_verdicts(runs, tracker, by_name)
    first_look = [first_look_zooms(t, by_name[Path(t.video.path).name]) for t in runs]
    statuses: dict[str, int] = {}
    for t in runs:
        statuses[str(t.status)] = statuses.get(str(t.status), 0) + 1
    return Row(
        policy=name,
        program=program,
        jf=100 * statistics.mean(s.JF for s in report.samples),
        j=100 * statistics.mean(s.J for s in report.samples),
        f=100 * statistics.mean(s.F for s in report.samples),
        j_present=100 * statistics.mean(target_j(out, clip) for clip in clips),
        turns=statistics.mean(len(t.turns) for t in runs),
        zoom_runs=statistics.mean(any(turn.name == "zoom" for turn in t.turns) for t in runs),
        zooms=statistics.mean(sum(turn.name == "zoom" for turn in t.turns) for t in runs),
        verdicts=len(verdicts) / len(runs),
        accept=verdicts.count("accept") / len(verdicts) if verdicts else 0.0,
        verdict_right=share([(v == "accept") == follows for v, follows in judged]),
        regrounds=statistics.mean(sum(turn.name == "reselect" for turn in t.turns) for t in runs),
        zoom_if_unseen=share([zoom for seen, zoom in first_look if not seen]) if program == "look_again" else None,
        zoom_if_seen=share([zoom for seen, zoom in first_look if seen]) if program == "look_again" else None,
        accept_if_target=share([v == "accept" for v, follows in judged if follows]),
        accept_if_not=share([v == "accept" for v, follows in judged if not follows]),
        frames=tracker.frames_tracked / n,
        ok=statistics.mean(t.status == "ok" for t in runs),
        format=statistics.mean(r.format for r in scored),
        temporal=statistics.mean(r.temporal for r in scored),
        spatial=statistics.mean(r.spatial for r in scored),
        ms_per_run=1000 * wall / n,
        statuses=statuses,
    )


def first_look_zooms(trajectory: Any, clip: Any) -> tuple[bool, bool]:
    """(whether the first view showed the target, whether the model's first answer was a zoom)."""
    first = trajectory.turns[0]
    seen = any(clip.box(t) is not None for t in first.image_frames)
    return seen, bool(first.parse_ok and (first.parsed or {}).get("action") == "zoom")


def judged_verdicts(runs: list[Any], tracker: Any, clips: dict[str, Any]) -> list[tuple[str, bool]]:
    """(verdict, whether the attempt's mask followed the target) for every verify verdict.

    One run per clip, samples one after another: a clip's tracker calls are its tracked attempts, in order.
    """
    shapes: dict[str, list[int | None]] = {}
    for name, _, shape in tracker.calls:
        shapes.setdefault(name, []).append(shape)
    judged = []
    for t in runs:
        clip = clips[Path(t.video.path).name]
        tracked = [a for a in t.attempts if a.masks]
        for attempt, shape in zip(tracked, shapes.get(clip.name, []), strict=False):
            if attempt.verdict:
                judged.append((attempt.verdict, shape == clip.clip.target))
    return judged


def sampled(plan: Plan, checkpoint: Path, name: str) -> Sampled:
    """``--eval-samples`` look_again rollouts per held-out clip at temperature 1, scored with the look_again rewards.

    Greedy decoding shows only a policy's most likely answer; sampling shows whether the
    probability of zooming or accepting moves with what the frames show.
    """
    from revseg.rl.collect import collect
    from revseg.testing.longclips import LongClipTracker
    from revseg.tools.masks import read_masks_json
    from revseg.trajectory_store import TrajectoryStore

    clips = split(plan, "heldout")
    by_name = {c.name: c for c in clips}
    folder = Path(plan.work) / "eval-sampled" / name
    shutil.rmtree(folder, ignore_errors=True)
    collect(
        items(plan, clips),
        load_policy(checkpoint),
        folder,
        group_size=plan.eval_samples,
        sampling=sampling(plan, 1.0),
        settings=settings(plan, "look_again"),
        tracker=LongClipTracker(clips),
        seed=plan.seed + 99,
    )
    records = list(TrajectoryStore(folder))
    looks = [first_look_zooms(t, by_name[str(t.query_id)]) for t in records]
    judged: list[tuple[str, bool]] = []
    final = []
    for t in records:
        clip = by_name[str(t.query_id)]
        follows = []
        for turn in t.turns:
            verdict = (turn.parsed or {}).get("verdict") if turn.parse_ok else None
            if turn.name != "verify" or not turn.overlay or not turn.image_frames:
                continue
            k = turn.image_frames[-1]  # verify shows the spread frames, then the keyframe
            pred, gt = read_masks_json(turn.overlay).union(k), clip.clip.target_mask(k)
            follows.append(float((pred & gt).sum()) / float((pred | gt).sum() or 1) > 0.5)
            if verdict in ("accept", "reject"):
                judged.append((str(verdict), follows[-1]))
        final.append(bool(follows) and follows[-1])
    return Sampled(
        policy=name,
        rollouts=len(records),
        reward=statistics.mean((t.rewards or {})["total"] for t in records),
        verify_reward=statistics.mean(
            [(t.rewards or {})["verify"] for t in records if "verify" in (t.rewards or {})] or [0]
        ),
        zoom_if_unseen=share([zoom for seen, zoom in looks if not seen]),
        zoom_if_seen=share([zoom for seen, zoom in looks if seen]),
        unseen=sum(not seen for seen, _ in looks),
        seen=sum(seen for seen, _ in looks),
        accept_if_target=share([v == "accept" for v, on in judged if on]),
        accept_if_not=share([v == "accept" for v, on in judged if not on]),
        on_target=sum(on for _, on in judged),
        not_on_target=sum(not on for _, on in judged),
        final_on_target=statistics.mean(final),
    )


class NoTarget:
    """A policy that always answers "no target": the run's masks are empty, the baseline J&F of doing nothing."""

    @property
    def info(self) -> Any:
        """A fixed identity."""
        from revseg.trajectory import PolicyInfo

        return PolicyInfo(spec="no-target", backend="oracle", model="none", box_convention="absolute")

    def seen_size(self, width: int, height: int) -> tuple[int, int]:
        """It sees what it is sent."""
        return width, height

    def generate(self, messages: Any, sampling: Any) -> Any:
        """The strict "no target" answer."""
        from revseg.policies.base import Generation

        return Generation(text="<think> nothing matches </think> <answer> [] </answer>", finish_reason="stop")

    async def agenerate(self, messages: Any, sampling: Any) -> Any:
        """As :meth:`generate`."""
        return self.generate(messages, sampling)


def evaluate_all(plan: Plan, checkpoints: dict[str, Path], clock: PhaseClock) -> list[Row]:
    """Doing nothing, the oracle and every checkpoint (the last two in both programs), on the held-out clips."""
    from revseg.testing.longclips import LongClipOracle, write_revos_layout

    clips = split(plan, "heldout")
    root = Path(plan.work) / "heldout-revos"
    if not (root / "mask_dict.json").exists():
        write_revos_layout(root, clips)
    rows = []
    oracle = LongClipOracle(clips, first_box_error=plan.first_box_error, seed=plan.seed, grid=plan.box_grid)
    with clock("eval_oracle"):
        rows.append(evaluate(plan, root, NoTarget(), "nothing", "paper"))
    policies: list[tuple[str, Any]] = [("oracle", oracle)]
    policies += [(name, load_policy(checkpoint)) for name, checkpoint in checkpoints.items()]
    for name, loaded in policies:
        for program in ("paper", "look_again"):
            with clock(f"eval_{name}"):
                rows.append(evaluate(plan, root, loaded, name, program))
            print(f"evaluated: {json.dumps(asdict(rows[-1]))}", flush=True)
    return rows


# --------------------------------------------------------------------------- main


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--clip-frames", type=int, default=48, help="frames per long clip (target on 2-8 %%, >= 3)")
    parser.add_argument("--num-frames", type=int, default=4, help="frames each view shows (turn 1 and every zoom)")
    parser.add_argument("--frame-size", type=int, default=112, help="side of the frames of a view and of verify (px)")
    parser.add_argument("--keyframe-size", type=int, default=224, help="side of the keyframe grounding sees (px)")
    parser.add_argument("--verify-frames", type=int, default=3, help="frames verify shows with the mask drawn")
    parser.add_argument("--max-turns", type=int, default=8, help="look_again turn budget")
    parser.add_argument(
        "--first-box-error", type=float, default=0.4, help="oracle's rate of first boxes on the look-alike"
    )
    parser.add_argument(
        "--box-grid", type=int, default=14, help="the oracle rounds box coordinates to this grid (px seen)"
    )
    parser.add_argument("--sft-clips", type=int, default=144, help="warm-up clips (one oracle chain each)")
    parser.add_argument("--sft-epochs", type=int, default=5, help="passes over the warm-up chains")
    parser.add_argument("--sft-lr", type=float, default=1e-3, help="warm-up AdamW learning rate")
    parser.add_argument("--sft-batch", type=int, default=4, help="warm-up chains per optimizer step")
    parser.add_argument(
        "--no-sft-paper",
        dest="sft_paper",
        action="store_false",
        help="warm up on look_again chains only (by default the oracle's paper chains of the same clips join them)",
    )
    parser.add_argument("--rounds", type=int, default=6, help="GRPO rounds (collect -> train)")
    parser.add_argument("--items", type=int, default=6, help="fresh training clips per GRPO round")
    parser.add_argument("--group-size", type=int, default=6, help="rollouts per clip (GRPO group)")
    parser.add_argument(
        "--lr", type=float, default=2e-4, help="GRPO AdamW learning rate (5e-4 broke a tiny model's format)"
    )
    parser.add_argument("--beta", type=float, default=1e-3, help="KL coefficient (paper: 1e-3)")
    parser.add_argument("--prompts-per-step", type=int, default=2, help="groups per GRPO optimizer step")
    parser.add_argument("--warmup-steps", type=int, default=2, help="GRPO warm-up steps in round 1")
    parser.add_argument("--eval-clips", type=int, default=24, help="held-out clips")
    parser.add_argument("--eval-samples", type=int, default=4, help="sampled look_again rollouts per held-out clip")
    parser.add_argument("--max-new-tokens", type=int, default=96, help="token budget per turn")
    parser.add_argument("--hidden-size", type=int, default=128, help="tiny model width")
    parser.add_argument("--layers", type=int, default=4, help="tiny model depth (language model and vision tower)")
    parser.add_argument("--seed", type=int, default=0, help="offsets every clip seed and sampling seed")
    parser.add_argument("--work", type=Path, default=None, help="working folder (default: a new temporary one)")
    parser.add_argument("--quick", action="store_true", help="smoke check: few clips, one short round")
    parser.add_argument("--dry", action="store_true", help="print only: no RESULTS.md entry")
    args = parser.parse_args()
    if args.quick:
        args.sft_clips, args.sft_epochs, args.rounds, args.items, args.group_size = 8, 1, 1, 2, 2
        args.eval_clips, args.prompts_per_step, args.warmup_steps, args.eval_samples = 3, 1, 1, 2

    started = time.perf_counter()
    work = args.work or Path(tempfile.mkdtemp(prefix="revseg-look-again-learning-"))
    plan = Plan(
        work=str(work),
        clip_frames=args.clip_frames,
        num_frames=args.num_frames,
        frame_size=args.frame_size,
        keyframe_size=args.keyframe_size,
        verify_frames=args.verify_frames,
        max_turns=args.max_turns,
        first_box_error=args.first_box_error,
        box_grid=args.box_grid,
        sft_clips=args.sft_clips,
        sft_epochs=args.sft_epochs,
        sft_lr=args.sft_lr,
        sft_batch=args.sft_batch,
        sft_paper=args.sft_paper,
        rounds=args.rounds,
        items=args.items,
        group_size=args.group_size,
        lr=args.lr,
        beta=args.beta,
        prompts_per_step=args.prompts_per_step,
        warmup_steps=args.warmup_steps,
        eval_clips=args.eval_clips,
        eval_samples=args.eval_samples,
        max_new_tokens=args.max_new_tokens,
        hidden_size=args.hidden_size,
        num_layers=args.layers,
        seed=args.seed,
    )
    import torch

    torch.set_num_threads(1)
    from revseg.testing import build_tiny_qwen_vl

    load = os.getloadavg()[0]
    base = build_tiny_qwen_vl(
        work / "base", family="qwen2.5-vl", seed=plan.seed, hidden_size=plan.hidden_size, num_layers=plan.num_layers
    )
    phases: dict[str, float] = {}
    clock = PhaseClock(phases)
    sft, data = warm_up(plan, base, clock)
    print(f"warm-up data: {json.dumps(data)}", flush=True)
    final, rounds = grpo(plan, sft, clock)
    rows = evaluate_all(plan, {"sft": sft, "grpo": final}, clock)
    samples = []
    for name, checkpoint in (("sft", sft), ("grpo", final)):
        with clock(f"sampled_{name}"):
            samples.append(sampled(plan, checkpoint, name))
        print(f"sampled: {json.dumps(asdict(samples[-1]))}", flush=True)
    elapsed = time.perf_counter() - started
    load = (load + os.getloadavg()[0]) / 2
    figures = {"rows": [asdict(r) for r in rows], "sampled": [asdict(r) for r in samples], "rounds": rounds}
    (work / "rows.json").write_text(json.dumps(figures, indent=1))

    text = (
        table(rows)
        + f"\n\nSampled look_again rollouts ({plan.eval_samples} per held-out clip, temperature 1):\n\n"
        + sampled_table(samples)
        + "\n\nTime per phase:\n\n"
        + phase_table(phases)
    )
    notes = describe(plan, data, rounds, rows, elapsed, load, reused=bool(phases.get("sft_reused")))
    if args.dry:
        print(text + "\n\n" + notes)
        return
    record(TITLE, text, notes)


if __name__ == "__main__":
    main()
