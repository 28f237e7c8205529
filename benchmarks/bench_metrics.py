"""Speed of `revseg.evals.metrics` against the official DAVIS 2017 metric code, with identical numbers.

Decodes the shared DAVIS masks once (30 videos, osvos as ground truth, rvos as prediction: 61 objects,
3,984 object-frames at 480p, about 3.3 GB of boolean masks in memory), then times in one process, on the
same arrays: official `db_eval_iou` against `jaccard`, official `db_eval_boundary` against `boundary_f`,
and the two official functions together against `j_and_f`. Checks that both sides give the same floats
and that ours match `expected_rvos_vs_osvos.json`, prints a Markdown table and appends it to
benchmarks/RESULTS.md. Times are the best of several runs, wall clock and CPU, since the machine may be
shared.

The official code is a checkout of davisvideochallenge/davis2017-evaluation, imported from --official
(default /work/davis2017-evaluation when it exists). It needs scikit-image and opencv-python-headless,
which are not revseg dependencies. Without it only our side is timed.

Run: `.venv/bin/python benchmarks/bench_metrics.py [--official PATH] [--repeat 5] [--official-repeat 1]`.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
from PIL import Image

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from _common import record

from revseg.evals.metrics import boundary_f, j_and_f, jaccard

DATA = Path(__file__).resolve().parents[2] / "shared" / "data" / "davis2017-results"
DEFAULT_OFFICIAL = Path("/work/davis2017-evaluation")
MEASURES = ("J", "F", "J and F")

Objects = list[tuple[str, np.ndarray, np.ndarray]]
Scores = dict[str, np.ndarray]  # per object key, per-frame values
Metric = Callable[[np.ndarray, np.ndarray], np.ndarray]
Timing = tuple[float, float]  # best wall and CPU seconds


def load(data: Path, keys: list[str]) -> tuple[Objects, float, int]:
    """Every object's (key, gt, pred) boolean masks, the seconds spent decoding PNGs, and how many."""
    objects: Objects = []
    decode_s, decoded = 0.0, 0
    for video in sorted({key.split("/")[0] for key in keys}):
        names = sorted(path.name for path in (data / "osvos" / video).glob("*.png"))
        start = time.perf_counter()
        gt_labels = np.stack([np.asarray(Image.open(data / "osvos" / video / name)) for name in names])
        pred_labels = np.stack([np.asarray(Image.open(data / "rvos" / video / name)) for name in names])
        decode_s, decoded = decode_s + time.perf_counter() - start, decoded + 2 * len(names)
        for key in sorted(key for key in keys if key.split("/")[0] == video):
            object_id = int(key.split("/")[1])
            objects.append((key, gt_labels == object_id, pred_labels == object_id))
    return objects, decode_s, decoded


def timed(objects: Objects, metric: Metric, repeat: int) -> tuple[Timing, Scores]:
    """Best wall and CPU seconds of `metric` over all objects in `repeat` runs, and its scores."""
    wall, cpu, scores = float("inf"), float("inf"), {}
    for _ in range(repeat):
        wall_start, cpu_start = time.perf_counter(), time.process_time()
        scores = {key: np.asarray(metric(gt, pred), np.float64) for key, gt, pred in objects}
        wall, cpu = min(wall, time.perf_counter() - wall_start), min(cpu, time.process_time() - cpu_start)
    return (wall, cpu), scores


def joined(j: Scores, f: Scores) -> Scores:
    """J then F of each object in one array, to compare combined results in one go."""
    return {key: np.concatenate([j[key], f[key]]) for key in j}


def max_diff(ours: Scores, theirs: Scores) -> float:
    """Largest absolute difference over all frames of all objects."""
    return max(float(np.max(np.abs(ours[key] - theirs[key]))) for key in ours)


def both_scores(gt: np.ndarray, pred: np.ndarray) -> np.ndarray:
    """`j_and_f`'s per-frame J and F, joined like `joined`."""
    scores = j_and_f(gt, pred)
    return np.concatenate([scores["J"], scores["F"]])


def run_ours(objects: Objects, repeat: int) -> tuple[dict[str, Timing], dict[str, Scores]]:
    """Timings and scores of `jaccard`, `boundary_f` and `j_and_f`, keyed by measure."""
    results = [timed(objects, metric, repeat) for metric in (jaccard, boundary_f, both_scores)]
    return dict(zip(MEASURES, (t for t, _ in results), strict=True)), dict(
        zip(MEASURES, (s for _, s in results), strict=True)
    )


def run_official(objects: Objects, path: Path, repeat: int) -> tuple[dict[str, Timing], dict[str, Scores]]:
    """Timings and scores of `db_eval_iou`, `db_eval_boundary` and of the two together (their sum)."""
    sys.path.insert(0, str(path))
    try:
        from davis2017.metrics import db_eval_boundary, db_eval_iou
    except ImportError as error:  # its own dependencies, not revseg's
        message = f"cannot import the official code ({error}); pip install scikit-image opencv-python-headless"
        raise SystemExit(message) from error

    def iou(gt: np.ndarray, pred: np.ndarray) -> np.ndarray:
        with np.errstate(divide="ignore", invalid="ignore"):  # 0/0 on empty frames, which it then sets to 1
            return np.asarray(db_eval_iou(gt, pred), np.float64)

    j_time, j_scores = timed(objects, iou, repeat)
    f_time, f_scores = timed(objects, db_eval_boundary, repeat)
    both_time = (j_time[0] + f_time[0], j_time[1] + f_time[1])
    return dict(zip(MEASURES, (j_time, f_time, both_time), strict=True)), dict(
        zip(MEASURES, (j_scores, f_scores, joined(j_scores, f_scores)), strict=True)
    )


def cpu_name() -> str:
    """The CPU model from /proc/cpuinfo, or the platform's processor string."""
    cpuinfo = Path("/proc/cpuinfo")
    if cpuinfo.is_file():
        for line in cpuinfo.read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    return platform.processor() or "unknown CPU"


def table(ours: dict[str, Timing], theirs: dict[str, Timing] | None, diffs: dict[str, float] | None) -> str:
    """The Markdown table: wall and CPU seconds of both sides, speed-ups, max abs difference."""
    names = {"J": "J: `db_eval_iou` / `jaccard`", "F": "F: `db_eval_boundary` / `boundary_f`"}
    names["J and F"] = "J and F: both / `j_and_f`"
    lines = [
        "| measure | official wall s | revseg wall s | speed-up | official CPU s | revseg CPU s | speed-up "
        "| max abs diff |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for measure in MEASURES:
        (wall, cpu) = ours[measure]
        if theirs is None or diffs is None:
            lines.append(f"| {names[measure]} | – | {wall:.3f} | – | – | {cpu:.3f} | – | – |")
            continue
        their_wall, their_cpu = theirs[measure]
        lines.append(
            f"| {names[measure]} | {their_wall:.2f} | {wall:.3f} | {their_wall / wall:.1f}x | {their_cpu:.2f} "
            f"| {cpu:.3f} | {their_cpu / cpu:.1f}x | {diffs[measure]:.1e} |"
        )
    return "\n".join(lines)


def main() -> int:
    """Time both implementations, check their numbers, print and record the table; 1 if numbers differ."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    default_official = DEFAULT_OFFICIAL if DEFAULT_OFFICIAL.is_dir() else None
    parser.add_argument("--official", type=Path, default=default_official, help="davis2017-evaluation checkout")
    parser.add_argument("--data", type=Path, default=DATA, help="folder with osvos/, rvos/ and the expected JSON")
    parser.add_argument("--repeat", type=int, default=5, help="runs of ours; the best counts")
    parser.add_argument("--official-repeat", type=int, default=1, help="runs of the official code, ~14 s each")
    parser.add_argument("--no-record", action="store_true", help="print only, do not append to RESULTS.md")
    args = parser.parse_args()

    expected_path = args.data / "expected_rvos_vs_osvos.json"
    if not expected_path.is_file():
        print(f"no DAVIS masks at {args.data}: {expected_path.name} is missing", file=sys.stderr)
        return 2
    if args.official is not None and not (args.official / "davis2017" / "metrics.py").is_file():
        print(f"{args.official} is not a davis2017-evaluation checkout (no davis2017/metrics.py)", file=sys.stderr)
        return 2
    expected = json.loads(expected_path.read_text())
    objects, decode_s, decoded = load(args.data, sorted(expected))
    frames = sum(len(gt) for _, gt, _ in objects)
    print(f"decoded {decoded} PNGs in {decode_s:.2f} s: {len(objects)} objects, {frames} object-frames")

    our_times, our_scores = run_ours(objects, args.repeat)
    want_j = {key: np.asarray(value["J"], np.float64) for key, value in expected.items()}
    want_f = {key: np.asarray(value["F"], np.float64) for key, value in expected.items()}
    want = dict(zip(MEASURES, (want_j, want_f, joined(want_j, want_f)), strict=True))
    json_diff = max(max_diff(our_scores[measure], want[measure]) for measure in MEASURES)

    their_times = diffs = None
    if args.official is None:
        print("official code not given (--official PATH to a davis2017-evaluation checkout): timing ours only")
    else:
        their_times, their_scores = run_official(objects, args.official, args.official_repeat)
        diffs = {measure: max_diff(our_scores[measure], their_scores[measure]) for measure in MEASURES}

    notes = (
        f"{len(objects)} objects, {frames} object-frames at 480p, masks already in memory; decoding the "
        f"{decoded} PNGs with PIL took {decode_s:.2f} s more. {cpu_name()}, numpy {np.__version__}, load average "
        f"{os.getloadavg()[0]:.1f} at the end. Best of {args.repeat} runs for revseg and "
        f"{args.official_repeat} for the official code ({args.official or 'not run'}), whose J and F row is the "
        f"sum of its two functions. Ours against expected_rvos_vs_osvos.json: max abs diff {json_diff:.1e}."
    )
    text = table(our_times, their_times, diffs)
    if args.no_record:
        print(f"\n{text}\n\n{notes}")
    else:
        record("DAVIS J and F: revseg.evals.metrics vs the official davis2017-evaluation", text, notes)
    if json_diff > 1e-9 or (diffs is not None and max(diffs.values()) > 1e-9):
        print("our numbers differ from the official ones", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
