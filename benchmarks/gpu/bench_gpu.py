"""Real-size speed and memory on one GPU: the hf policy's two turns, both trackers, one GRPO step.

One section per call, so that ``run.sh`` runs each in its own process under its own time
limit and a failing or slow section loses nothing of the others. Every measurement is
appended to ``OUT/results.jsonl`` as soon as it is taken (tracking also every few hundred
frames, so a run cut by its limit still says how fast it went), and ``OUT/results.md`` is
rewritten from it after each. Models are random-weight builds of the published sizes
(:mod:`revseg.testing.real_size`) in bf16; nothing is downloaded.

Sections (``python bench_gpu.py SECTION [--dry] --out DIR``):

- ``env``: the machine, library versions;
- ``prepare``: build both trackers' random SAM2.1-hiera-large folders and the clips;
- ``policy``: Qwen2.5-VL-7B through ``HFPolicy``, turn 1 (16 frames at 448 px + the paper's
  prompt) and turn 2 (history + the 840 px keyframe): prefill seconds, decode tokens/s,
  peak GPU memory, with SDPA and with FlashAttention-2 when ``flash_attn`` imports;
- ``track:BACKEND:FRAMES[:OPTIONS]``: SAM2.1-hiera-large through ``hf-sam2:`` or ``sam2:`` on a
  480p clip (a JPEG folder) of FRAMES frames: ms per frame, peak GPU and host memory;
  OPTIONS ride on the tracker spec (``track:hf-sam2:300:bounded=false``);
- ``grpo:lora-7b`` / ``grpo:full-3b``: one GRPO step over 8 two-turn rollouts at the
  paper's input sizes (policy and reference forwards, loss, backward, optimizer step);
- ``concurrency``: ``benchmarks/bench_concurrency.py`` on this machine's cores (its tables
  in ``OUT/concurrency.md``);
- ``table``: rewrite ``results.md`` only;
- ``record --runs DIR ... --notes TEXT`` (here, not on the GPU machine): the runs' tables into
  benchmarks/RESULTS.md with the GPU machine and date.

``--dry`` runs every section on the CPU with the tiny test models (revseg.testing), 4 small
frames and a few short clips, in about a minute: it keeps the script working where no GPU
is (a test calls it).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import sys
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

PAPER_STEP_S = 725.0
"""The paper's time per training step (DESIGN.md 1.5: 128 prompts x 8 rollouts per step)."""


# ----------------------------------------------------------------------------- recording


class Recorder:
    """Appends one JSON line per measurement to OUT/results.jsonl and rewrites OUT/results.md."""

    def __init__(self, out: Path, dry: bool) -> None:
        self.out = out
        self.dry = dry
        out.mkdir(parents=True, exist_ok=True)

    def add(self, section: str, **values: Any) -> None:
        row = {"section": section, "dry": self.dry, "time": time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime())}
        row |= values
        with (self.out / "results.jsonl").open("a") as f:
            f.write(json.dumps(row) + "\n")
        print(json.dumps(row), flush=True)
        write_table(self.out)


def _rows(out: Path) -> list[dict[str, Any]]:
    path = out / "results.jsonl"
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def _fmt(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.3g}" if abs(value) < 100 else f"{value:.0f}"
    return "" if value is None else str(value)


def write_table(out: Path) -> str:
    """results.md: one Markdown table per kind of measurement, the latest row per key."""
    rows = _rows(out)
    kinds: dict[str, dict[str, dict[str, Any]]] = {}
    for row in rows:
        kind = row["section"].split(":")[0]
        key = row.get("key", row["section"])
        kinds.setdefault(kind, {})[key] = row  # later rows (complete ones) replace partial ones
    parts = []
    skip = {"section", "time", "key"}
    for kind, by_key in kinds.items():
        columns: list[str] = []
        for row in by_key.values():
            columns += [c for c in row if c not in skip and c not in columns]
        lines = ["| " + " | ".join(["key", *columns]) + " |", "|" + "---|" * (len(columns) + 1)]
        for key, row in by_key.items():
            lines.append("| " + " | ".join([key, *(_fmt(row.get(c)) for c in columns)]) + " |")
        parts.append(f"### {kind}\n\n" + "\n".join(lines))
    text = "\n\n".join(parts) + "\n"
    (out / "results.md").write_text(text)
    return text


# ----------------------------------------------------------------------------- helpers


def device(dry: bool) -> str:
    import torch

    return "cpu" if dry or not torch.cuda.is_available() else "cuda"


def gib(n: float) -> float:
    return round(n / 2**30, 2)


def host_peak_gib() -> float:
    """This process's peak RSS so far (getrusage; kilobytes on Linux)."""
    return gib(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024)


def gpu_reset() -> None:
    import torch

    if torch.cuda.is_available():
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()


def gpu_peak_gib() -> float | None:
    import torch

    if not torch.cuda.is_available():
        return None
    torch.cuda.synchronize()
    return gib(torch.cuda.max_memory_allocated())


def sync() -> None:
    import torch

    if torch.cuda.is_available():
        torch.cuda.synchronize()


# ----------------------------------------------------------------------------- env


def section_env(rec: Recorder, dry: bool) -> None:
    import torch
    import transformers

    name = torch.cuda.get_device_name(0) if torch.cuda.is_available() else "none"
    total = gib(torch.cuda.get_device_properties(0).total_memory) if torch.cuda.is_available() else None
    try:
        import flash_attn  # noqa: F401

        flash = True
    except Exception:  # noqa: BLE001 - missing or ABI-broken both mean "not available"
        flash = False
    rec.add(
        "env",
        gpu=name,
        gpu_gib=total,
        cpus=os.cpu_count(),
        python=platform.python_version(),
        torch=torch.__version__,
        transformers=transformers.__version__,
        flash_attn=flash,
    )


# ----------------------------------------------------------------------------- policy


def _frames(count: int, size: int) -> list[Any]:
    import numpy as np
    from PIL import Image

    rng = np.random.default_rng(0)
    return [Image.fromarray(rng.integers(0, 255, (size, size, 3), dtype=np.uint8)) for _ in range(count)]


CACHE = Path("/tmp/revseg-gpu")


def _policy(name: str, dry: bool, attn: str) -> Any:
    from revseg.policies.hf import HFPolicy
    from revseg.testing.real_size import real_qwen_vl
    from revseg.trajectory import PolicyInfo

    if dry:  # the tiny Qwen2.5-VL through hf: (the real-size builder has its own tests)
        from revseg.testing import build_tiny_qwen_vl

        folder = CACHE / "tiny-qwen25"
        if not (folder / "config.json").exists():
            build_tiny_qwen_vl(folder)
        return HFPolicy.from_spec(str(folder), device="cpu", dtype="float32", attn_implementation=attn)
    model, processor = real_qwen_vl(name, device=device(dry), dtype="bfloat16", attn_implementation=attn)
    info = PolicyInfo(spec=f"hf:random-{name}", backend="hf", model=name, box_convention="absolute")
    return HFPolicy(model, processor, info)


def _turns(dry: bool) -> dict[str, Any]:
    """The paper's inputs: 16 frames at 448 px, the 840 px keyframe, the paper's prompts."""
    from revseg.policies.prompts import PROMPT_SETS
    from revseg.settings import PAPER_PROMPT_SET

    prompts = PROMPT_SETS[PAPER_PROMPT_SET]
    nframes, size, key = (4, 112, 224) if dry else (16, 448, 840)
    return {
        "frames": _frames(nframes, size),
        "keyframe": _frames(1, key)[0],
        "p1": prompts.render_interpret("the cyclist riding at the front of the group", nframes),
        "p2": prompts.render_ground("the cyclist in a red jersey on the leftmost bike"),
        "new_tokens": 4 if dry else 256,
    }


def _messages(turns: dict[str, Any], answer1: Any = None) -> list[Any]:
    from revseg.policies.base import ImagePart, Message, TextPart

    first = Message(role="user", parts=(*(ImagePart(f) for f in turns["frames"]), TextPart(turns["p1"])))
    if answer1 is None:
        return [first]
    second = Message(role="user", parts=(ImagePart(turns["keyframe"]), TextPart(turns["p2"])))
    return [first, Message.assistant(answer1.text, answer1.token_ids), second]


def _timed_generate(policy: Any, messages: list[Any], new_tokens: int) -> tuple[Any, float]:
    from revseg.settings import SamplingParams

    sync()
    start = time.perf_counter()
    out = policy.generate(messages, SamplingParams(temperature=0.0, max_new_tokens=new_tokens))
    sync()
    return out, time.perf_counter() - start


def section_policy(rec: Recorder, dry: bool) -> None:
    import importlib.util

    attns = ["sdpa"] + (["flash_attention_2"] if importlib.util.find_spec("flash_attn") else [])
    turns = _turns(dry)
    for attn in attns:
        started = time.perf_counter()
        policy = _policy("qwen2.5-vl-7b", dry, attn)
        build_s = time.perf_counter() - started
        _timed_generate(policy, _messages(turns), 2)  # warm-up: kernels, allocator
        answer1 = None
        for turn in ("turn 1", "turn 2"):
            messages = _messages(turns, answer1)
            inputs = policy.build_inputs(messages)
            prompt_tokens = int(inputs["input_ids"].shape[1])
            image_tokens = int((inputs["input_ids"] == policy.model.config.image_token_id).sum())
            gpu_reset()
            _, prefill_s = _timed_generate(policy, messages, 1)
            out, total_s = _timed_generate(policy, messages, turns["new_tokens"])
            generated = len(out.token_ids)
            decode_s = max(total_s - prefill_s, 1e-9)
            rec.add(
                f"policy:{attn}:{turn}",
                key=f"qwen2.5-vl-7b {attn} {turn}",
                prompt_tokens=prompt_tokens,
                image_tokens=image_tokens,
                prefill_s=round(prefill_s, 3),
                prefill_tok_s=round(prompt_tokens / prefill_s),
                new_tokens=generated,
                decode_tok_s=round((generated - 1) / decode_s, 1),
                turn_s=round(total_s, 3),
                peak_gpu_gib=gpu_peak_gib(),
                build_s=round(build_s, 1),
            )
            if answer1 is None:
                answer1 = out
        del policy
        _free()


def _free() -> None:
    import gc

    import torch

    gc.collect()
    if torch.cuda.is_available():
        torch.cuda.empty_cache()


# ----------------------------------------------------------------------------- tracking

WIDTH, HEIGHT = 854, 480


def make_clip(folder: Path, frames: int, dry: bool) -> Path:
    """A 480p clip as a folder of ``00000.jpg`` ...: a textured square drifting over a gradient."""
    import numpy as np
    from PIL import Image

    width, height = (160, 120) if dry else (WIDTH, HEIGHT)
    done = folder / "done"
    if done.exists():
        return folder
    folder.mkdir(parents=True, exist_ok=True)
    y, x = np.mgrid[0:height, 0:width]
    background = np.stack([x * 255 // width, y * 255 // height, np.full_like(x, 90)], axis=-1).astype(np.uint8)
    texture = np.random.default_rng(0).integers(0, 255, (height // 4, width // 4, 3), dtype=np.uint8)
    th, tw = texture.shape[:2]

    def write(index: int) -> None:
        frame = background.copy()
        left = int((width - tw) * (0.5 + 0.45 * np.sin(index / 40)))
        top = int((height - th) * (0.5 + 0.45 * np.cos(index / 55)))
        frame[top : top + th, left : left + tw] = texture
        Image.fromarray(frame).save(folder / f"{index:05d}.jpg", quality=90)

    from concurrent.futures import ThreadPoolExecutor

    with ThreadPoolExecutor(os.cpu_count() or 1) as pool:  # PIL encodes without the GIL
        list(pool.map(write, range(frames)))
    done.touch()
    return folder


def _tracker_spec(backend: str, dry: bool, cache: Path) -> str:
    if dry:
        from revseg.testing import build_tiny_hf_sam2, build_tiny_sam2

        if backend == "hf-sam2":
            return f"hf-sam2:{build_tiny_hf_sam2(cache / 'tiny-hf-sam2')}"
        config, checkpoint = build_tiny_sam2(cache / "tiny-sam2")
        return f"sam2:{config}:{checkpoint}"
    from revseg.testing.real_size import REAL_SAM2, build_real_hf_sam2, build_real_sam2

    name = "sam2.1-hiera-large"
    if backend == "hf-sam2":
        folder = cache / f"hf-{name}"
        if not (folder / "config.json").exists():
            build_real_hf_sam2(name, folder)
        return f"hf-sam2:{folder}"
    folder = cache / name
    if not (folder / REAL_SAM2[name].checkpoint_name).exists():
        build_real_sam2(name, folder)
    return f"sam2:{folder}"


def _clip_frames(frames: int, dry: bool) -> int:
    return (6 if frames < 1000 else 12) if dry else frames  # dry: the same code on a few seconds of work


def section_prepare(rec: Recorder, dry: bool, cache: Path) -> None:
    """Build both trackers' models and the clips once, so the tracking sections only load and track."""
    start = time.perf_counter()
    for backend in ("hf-sam2", "sam2"):
        _tracker_spec(backend, dry, cache)
    for frames in (300, 3000):
        count = _clip_frames(frames, dry)
        make_clip(cache / f"clip-{count}{'-dry' if dry else ''}", count, dry)
    rec.add("prepare", key="models and clips", seconds=round(time.perf_counter() - start, 1))


def section_track(rec: Recorder, dry: bool, backend: str, frames: int, cache: Path, options: str = "") -> None:
    """Track a clip; ``options`` (``KEY=VALUE&...``) ride on the tracker spec, e.g. ``bounded=false``."""
    from revseg.tools.frames import open_video
    from revseg.tools.trackers import build_tracker

    frames = _clip_frames(frames, dry)
    spec = _tracker_spec(backend, dry, cache) + (f"?{options}" if options else "")
    clip = make_clip(cache / f"clip-{frames}{'-dry' if dry else ''}", frames, dry)
    video = open_video(clip, backend="folder")
    ref = video.ref
    tracker = build_tracker(spec, device=device(dry))
    assert tracker is not None
    keyframe = frames // 2
    box = (ref.width * 0.3, ref.height * 0.3, ref.width * 0.6, ref.height * 0.7)
    key = f"{backend} hiera-{'tiny' if dry else 'large'} {frames} frames" + (f" {options}" if options else "")
    gpu_reset()
    start = time.perf_counter()
    first_s = None
    done = 0
    report_every = max(frames // 10, 50)
    for done, _ in enumerate(tracker.track(video, keyframe, [box]), start=1):
        if first_s is None:
            first_s = time.perf_counter() - start  # includes sam2's init_state (loading every frame)
        if done % report_every == 0 and done < frames:
            elapsed = time.perf_counter() - start
            rec.add(
                f"track:{backend}:{frames}",
                key=key,
                frames_done=done,
                partial=True,
                ms_per_frame=round(1000 * (elapsed - first_s) / max(done - 1, 1), 1),
                peak_gpu_gib=gpu_peak_gib(),
                peak_host_gib=host_peak_gib(),
            )
    sync()
    total = time.perf_counter() - start
    assert first_s is not None
    rec.add(
        f"track:{backend}:{frames}",
        key=key,
        frames_done=done,
        partial=False,
        ms_per_frame=round(1000 * (total - first_s) / max(done - 1, 1), 1),
        ms_per_frame_all=round(1000 * total / max(done, 1), 1),  # loading included (sam2's init_state)
        first_frame_s=round(first_s, 2),
        total_s=round(total, 1),
        peak_gpu_gib=gpu_peak_gib(),
        peak_host_gib=host_peak_gib(),
        video=f"{ref.width}x{ref.height} jpg",
    )


# ----------------------------------------------------------------------------- GRPO


def _rollout_sequences(policy: Any, turns: dict[str, Any], count: int) -> list[Any]:
    """``count`` two-turn rollouts as training rebuilds them: both answers inside one forward sequence.

    The answers are random token ids of the paper's answer length (generating them with the
    random model would cost more than the step: about 11 tokens/s), with behaviour
    log-probs of 0; rewards and advantages are made up. None of this changes what a step costs.
    """
    import torch

    _light_graphs_package()
    from revseg.policies.base import Generation
    from revseg.rl.sequences import RolloutSequence

    vocab = len(policy.processor.tokenizer) - 16  # ordinary tokens, below the special ones
    generator = torch.Generator().manual_seed(0)

    def answer() -> Any:
        ids = torch.randint(0, vocab, (turns["new_tokens"],), generator=generator).tolist()
        return Generation(text="", token_ids=ids, logprobs=[0.0] * len(ids), finish_reason="length")

    answer1, answer2 = answer(), answer()
    inputs = policy.build_inputs(_messages(turns, answer1))
    ids = inputs["input_ids"][0].tolist()
    first = _find(ids, answer1.token_ids)
    prompt_len = len(ids)
    extra = torch.tensor([answer2.token_ids], device=inputs["input_ids"].device)
    full = dict(inputs)
    full["input_ids"] = torch.cat([inputs["input_ids"], extra], dim=1)
    full["attention_mask"] = torch.cat([inputs["attention_mask"], torch.ones_like(extra)], dim=1)
    if "mm_token_type_ids" in full:
        full["mm_token_type_ids"] = torch.cat([inputs["mm_token_type_ids"], torch.zeros_like(extra)], dim=1)
    positions = torch.tensor(
        [*range(first, first + len(answer1.token_ids)), *range(prompt_len, prompt_len + len(answer2.token_ids))],
        device=extra.device,
    )
    logps = torch.zeros(len(positions), device=extra.device)
    return [RolloutSequence(full, positions, logps, ["interpret", "ground"]) for _ in range(count)]


def _light_graphs_package() -> None:
    """Let ``revseg.rl.sequences`` import ``revseg.graphs.conversation`` without ``revseg.graphs``' LangGraph.

    The package's ``__init__`` builds the graph (LangGraph and its stack, not on the GPU
    machine); the one module training needs imports only revseg's own types. So the
    package is registered as a bare namespace of its folder, and its ``__init__`` never runs.
    """
    import types

    if "revseg.graphs" in sys.modules:
        return
    try:
        import langgraph  # noqa: F401
    except ImportError:
        pass
    else:
        return
    import revseg

    package = types.ModuleType("revseg.graphs")
    package.__path__ = [str(Path(revseg.__file__).parent / "graphs")]
    sys.modules["revseg.graphs"] = package


def _find(haystack: list[int], needle: list[int]) -> int:
    for start in range(len(haystack) - len(needle), -1, -1):
        if haystack[start : start + len(needle)] == needle:
            return start
    raise RuntimeError("turn 1's answer is not in turn 2's prompt")


def section_grpo(rec: Recorder, dry: bool, mode: str) -> None:
    import torch

    _light_graphs_package()
    from revseg.rl.grpo import QWEN_LORA_TARGETS, GRPOConfig, grpo_loss
    from revseg.rl.sequences import answer_logps

    name = "qwen2.5-vl-7b" if mode == "lora-7b" else "qwen2.5-vl-3b"
    config = GRPOConfig(use_lora=mode == "lora-7b", gradient_checkpointing=True)
    rollouts = 2 if dry else 8
    turns = _turns(dry)
    policy = _policy(name, dry, "sdpa")
    sequences = _rollout_sequences(policy, turns, rollouts)
    model = policy.model
    reference = None
    if config.use_lora:
        from peft import LoraConfig, get_peft_model

        model.enable_input_require_grads()
        lora = LoraConfig(
            r=config.lora_r,
            lora_alpha=config.lora_alpha,
            lora_dropout=config.lora_dropout,
            target_modules=QWEN_LORA_TARGETS,
        )
        model = get_peft_model(model, lora)
    else:
        reference = _policy(name, dry, "sdpa").model.requires_grad_(False)
    model.gradient_checkpointing_enable()
    model.train()
    trainable = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(trainable, lr=config.learning_rate)
    advantages = torch.linspace(-1.0, 1.0, rollouts)
    times = []
    # One step, measured: on the H200 a first step took 51.4 s and a second 53.5 s (LoRA 7B), so a warm-up
    # step only doubled the section's time. Dry runs keep two, so the loop over steps stays exercised.
    for _step in range(2 if dry else 1):
        gpu_reset()
        sync()
        start = time.perf_counter()
        for done, (seq, advantage) in enumerate(zip(sequences, advantages, strict=True), start=1):
            if done > 1:
                sync()
                rec.add(
                    f"grpo:{mode}",
                    key=f"{name} {mode.split('-')[0]} ({rollouts} rollouts)",
                    partial=f"step {_step + 1}, {done - 1} rollouts",
                    s_per_rollout=round((time.perf_counter() - start) / (done - 1), 3),
                    peak_gpu_gib=gpu_peak_gib(),
                )
            logps = answer_logps(model, seq)[None]
            with torch.no_grad():
                if reference is not None:
                    ref = answer_logps(reference, seq)[None]
                else:
                    with model.disable_adapter():
                        ref = answer_logps(model, seq)[None]
            weights = torch.full_like(logps, 1.0 / (rollouts * seq.num_tokens))
            loss, _ = grpo_loss(
                logps, seq.behaviour_logps[None], advantage.to(logps.device)[None], weights, ref_logps=ref
            )
            loss.backward()
        torch.nn.utils.clip_grad_norm_(trainable, 1.0)
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        sync()
        times.append(time.perf_counter() - start)
    step_s = times[-1]
    seq_tokens = int(sequences[0].inputs["input_ids"].shape[1])
    # The paper's step: 128 prompts x 8 rollouts = 1024 sequences (DESIGN.md 1.5).
    paper_equiv = step_s * 1024 / rollouts
    rec.add(
        f"grpo:{mode}",
        key=f"{name} {mode.split('-')[0]} ({rollouts} rollouts)",
        partial="",
        trainable=sum(p.numel() for p in trainable),
        sequence_tokens=seq_tokens,
        answer_tokens=sequences[0].num_tokens,
        step_s=round(step_s, 2),
        first_step_s=round(times[0], 2),
        s_per_rollout=round(step_s / rollouts, 3),
        paper_step_1024_rollouts_s=round(paper_equiv, 1),
        vs_paper_725s=round(paper_equiv / PAPER_STEP_S, 3),
        peak_gpu_gib=gpu_peak_gib(),
        peak_host_gib=host_peak_gib(),
        dtype="float32" if dry else "bfloat16",
        gradient_checkpointing=True,
    )


# ----------------------------------------------------------------------------- RESULTS.md


def record_results(folders: list[Path], notes: str, title: str = "") -> None:
    """Write the tables of one or more runs' results.jsonl into benchmarks/RESULTS.md, with the GPU machine and date.

    Run here, after the files came back from the GPU machine; later folders' rows replace
    earlier ones of the same key (a follow-up run of a failed section).
    """
    sys.path.insert(0, str(ROOT / "benchmarks"))
    from _common import record

    merged = Path(os.environ.get("TMPDIR", "/tmp")) / "revseg-gpu-record"
    merged.mkdir(parents=True, exist_ok=True)
    rows = [row for folder in folders for row in _rows(folder)]
    (merged / "results.jsonl").write_text("".join(json.dumps(row) + "\n" for row in rows))
    env: dict[str, Any] = next((row for row in reversed(rows) if row["section"] == "env"), {})
    where = (
        f"{rows[0]['time'][:10] if rows else ''} · {env.get('gpu', '?')} ({env.get('gpu_gib', '?')} GiB), "
        f"{env.get('cpus', '?')} cores, Python {env.get('python', '?')}, torch {env.get('torch', '?')}, "
        f"transformers {env.get('transformers', '?')}"
    )
    table = write_table(merged).replace("### ", "#### ")
    record(title or "Real size on one GPU (benchmarks/gpu/run.sh)", table.strip(), notes, where=where)


# ----------------------------------------------------------------------------- concurrency


def section_concurrency(rec: Recorder, dry: bool) -> None:
    """benchmarks/bench_concurrency.py with this machine's cores; its tables land in OUT/concurrency.md."""
    import subprocess

    script = ROOT / "benchmarks" / "bench_concurrency.py"
    args = ["--queries", "8", "--overhead-queries", "2"] if dry else []
    start = time.perf_counter()
    done = subprocess.run(
        [sys.executable, str(script), "--print-to", str(rec.out / "concurrency.md"), *args], check=False
    )
    rec.add(
        "concurrency",
        key=f"bench_concurrency.py, {os.cpu_count()} cores",
        status=done.returncode,
        seconds=round(time.perf_counter() - start, 1),
        tables="concurrency.md",
    )


# ----------------------------------------------------------------------------- main


def _block_modules() -> None:
    """Make the modules named in REVSEG_BENCH_BLOCK unimportable (the dry test mimics the GPU machine)."""
    blocked = {m for m in os.environ.get("REVSEG_BENCH_BLOCK", "").split(",") if m}
    if not blocked:
        return
    import importlib.abc

    class Blocker(importlib.abc.MetaPathFinder):
        def find_spec(self, fullname: str, path: Any, target: Any = None) -> Any:
            if fullname.split(".")[0] in blocked:
                raise ImportError(f"{fullname} is blocked (not on the GPU machine)")
            return None

    sys.meta_path.insert(0, Blocker())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "section",
        help="env, prepare, policy, track:BACKEND:FRAMES[:OPTIONS], grpo:lora-7b, grpo:full-3b, concurrency, "
        "table or record",
    )
    parser.add_argument("--dry", action="store_true", help="CPU, one-layer and tiny models, small inputs.")
    parser.add_argument("--out", type=Path, default=Path(os.environ.get("OUT", ROOT / "benchmarks/gpu/out")))
    parser.add_argument("--notes", default="", help="record: the prose under the tables.")
    parser.add_argument("--runs", type=Path, nargs="*", default=[], help="record: result folders, in run order.")
    parser.add_argument("--title", default="", help="record: the RESULTS.md section (default: the full run's).")
    parser.add_argument("--cache", type=Path, default=Path(os.environ.get("REVSEG_BENCH_CACHE", "/tmp/revseg-gpu")))
    args = parser.parse_args()
    global CACHE
    CACHE = args.cache
    _block_modules()
    import torch

    if args.dry:
        torch.set_num_threads(min(2, os.cpu_count() or 1))
    rec = Recorder(args.out, args.dry)
    kind, _, rest = args.section.partition(":")
    if kind == "env":
        section_env(rec, args.dry)
    elif kind == "prepare":
        section_prepare(rec, args.dry, args.cache)
    elif kind == "policy":
        section_policy(rec, args.dry)
    elif kind == "track":
        backend, _, frames = rest.partition(":")
        frames, _, options = frames.partition(":")
        section_track(rec, args.dry, backend, int(frames), args.cache, options)
    elif kind == "concurrency":
        section_concurrency(rec, args.dry)
    elif kind == "grpo":
        section_grpo(rec, args.dry, rest)
    elif kind == "record":
        record_results(args.runs, args.notes, args.title)
    elif kind == "table":
        print(write_table(args.out))
    else:
        parser.error(f"unknown section {args.section!r}")


if __name__ == "__main__":
    main()
