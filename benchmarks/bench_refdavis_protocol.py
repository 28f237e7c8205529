"""Ref-DAVIS17's per-annotator protocol against the official DAVIS-2017 unsupervised evaluation: same numbers, time.

Our `revseg.evals.benchmarks.refdavis.davis_unsupervised` re-implements the official
``DAVISEvaluation(task="unsupervised")``: predicted objects matched to ground-truth objects by
Hungarian assignment on the J&F of each pair, empty masks for unmatched ground truth, J and
F means over all frames, then over objects. On the shared DAVIS-2017 val masks (osvos taken
as ground truth, rvos as the prediction) this script runs both on the same videos, checks
every object's J and F mean, and times them. The official side needs a checkout of
davisvideochallenge/davis2017-evaluation (``--official PATH``; not a revseg dependency, and
it needs opencv and scikit-image); it reads a DAVIS folder, which is built here from links.

    .venv/bin/python benchmarks/bench_refdavis_protocol.py --official /path/to/davis2017-evaluation [--videos 30]
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from PIL import Image

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import record

SHARED = Path(__file__).resolve().parents[2] / "shared" / "data" / "davis2017-results"


def labels(folder: Path) -> np.ndarray:
    """(T, H, W) uint8 object ids of a folder of palette PNGs, void (255) as background."""
    stack = np.stack([np.array(Image.open(f)) for f in sorted(folder.glob("*.png"))]).astype(np.uint8)
    stack[stack == 255] = 0
    return stack


def ours(videos: list[str]) -> tuple[list[float], list[float], float]:
    """Per-object J and F means from our implementation, and the seconds it took (decoding included)."""
    from revseg.evals.benchmarks.refdavis import davis_unsupervised

    start = time.perf_counter()
    j_all, f_all = [], []
    for video in videos:
        gt, pred = labels(SHARED / "osvos" / video), labels(SHARED / "rvos" / video)
        j, f = davis_unsupervised([gt == k for k in range(1, int(gt[0].max()) + 1)], pred)
        j_all += j
        f_all += f
    return j_all, f_all, time.perf_counter() - start


def official(videos: list[str], code: Path) -> tuple[list[float], list[float], float]:
    """The same from the official DAVISEvaluation on a DAVIS folder of links to the shared masks."""
    sys.path.insert(0, str(code))
    from davis2017.evaluation import DAVISEvaluation

    root = Path(tempfile.mkdtemp(prefix="davis-root-"))
    (root / "ImageSets" / "2017").mkdir(parents=True)
    (root / "ImageSets" / "2017" / "val.txt").write_text("".join(f"{v}\n" for v in videos))
    for video in videos:
        masks = root / "Annotations_unsupervised" / "480p" / video
        images = root / "JPEGImages" / "480p" / video
        masks.mkdir(parents=True)
        images.mkdir(parents=True)
        for file in sorted((SHARED / "osvos" / video).glob("*.png")):
            (masks / file.name).symlink_to(file)
            (images / f"{file.stem}.jpg").touch()  # only listed, never read
    start = time.perf_counter()
    result = DAVISEvaluation(str(root), "unsupervised", "val").evaluate(str(SHARED / "rvos"))
    return list(result["J"]["M"]), list(result["F"]["M"]), time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--official", type=Path, help="checkout of davisvideochallenge/davis2017-evaluation")
    parser.add_argument("--videos", type=int, default=30, help="the first N val videos (sorted)")
    parser.add_argument("--no-record", action="store_true")
    args = parser.parse_args()
    videos = sorted(p.name for p in (SHARED / "osvos").iterdir())[: args.videos]
    j, f, seconds = ours(videos)
    rows = [f"| revseg `davis_unsupervised` | {len(j)} | {100 * (np.mean(j) + np.mean(f)) / 2:.4f} | {seconds:.1f} |"]
    note = f"{len(videos)} DAVIS-2017 val videos, osvos as ground truth, rvos as prediction."
    if args.official is not None:
        oj, of, official_seconds = official(videos, args.official)
        dj = float(np.max(np.abs(np.array(oj) - np.array(j))))
        df = float(np.max(np.abs(np.array(of) - np.array(f))))
        rows.append(
            f"| official `DAVISEvaluation(task='unsupervised')` | {len(oj)} | "
            f"{100 * (np.mean(oj) + np.mean(of)) / 2:.4f} | {official_seconds:.1f} |"
        )
        note += f" Largest per-object difference: J {dj:.1e}, F {df:.1e}; {official_seconds / seconds:.0f}x faster."
    table = "| implementation | objects | J&F | seconds |\n|---|---:|---:|---:|\n" + "\n".join(rows)
    if args.no_record:
        print(table + "\n\n" + note)
    else:
        record("Ref-DAVIS17 per-annotator protocol vs official DAVIS unsupervised evaluation", table, note)


if __name__ == "__main__":
    main()
