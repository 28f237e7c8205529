"""SAM2 data curation (DESIGN.md 1.5) on synthetic benchmarks: decisions, resume, failures, real tiny SAM2s, CLI."""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from revseg.errors import DatasetError, OutputError, RevsegError, SpecError
from revseg.evals import get_benchmark
from revseg.rl.collect import benchmark_items
from revseg.rl.curate import EXCLUDE_FILE, curate, score_video, video_objects
from revseg.testing import benchmarks as synth
from revseg.tools.masks import encode_rle

pytestmark = pytest.mark.usefixtures("one_torch_thread")


class BoxFill:
    """A BoxSegmenter whose mask is its box, filled: exactly right for the synthetic (rectangular) objects."""

    spec = "fake:box-fill"

    def __init__(self, crash_on_call: int | None = None) -> None:
        self.calls: list[list[int]] = []
        self.crash_on_call = crash_on_call

    def segment_boxes(self, frames: Sequence[np.ndarray], boxes: Sequence[Sequence[Any]]) -> list[np.ndarray]:
        self.calls.append([len(b) for b in boxes])
        if self.crash_on_call == len(self.calls):
            raise KeyboardInterrupt  # the process dies mid-run: nothing of this video is recorded
        out = []
        for frame, frame_boxes in zip(frames, boxes, strict=True):
            masks = np.zeros((len(frame_boxes), *frame.shape[:2]), dtype=bool)
            for mask, (x1, y1, x2, y2) in zip(masks, frame_boxes, strict=True):
                mask[int(y1) : int(y2), int(x1) : int(x2)] = True
            out.append(masks)
        return out


class Unused:
    """A BoxSegmenter that must not be called (every video already checked)."""

    spec = "fake:box-fill"

    def segment_boxes(self, frames: Sequence[np.ndarray], boxes: Sequence[Sequence[Any]]) -> list[np.ndarray]:
        raise AssertionError("no video should run")


def edit_masks(root: Path, video: str, edit: Callable[[list[Any]], list[Any]]) -> None:
    """Rewrite the mask_dict.json tracks of every object of a ReVOS video."""
    meta = json.loads((root / "meta_expressions_train_.json").read_text())
    anno_ids = {a for e in meta["videos"][video]["expressions"].values() for a in e["anno_id"]}
    masks = json.loads((root / "mask_dict.json").read_text())
    for anno_id in anno_ids:
        masks[str(anno_id)] = edit(masks[str(anno_id)])
    (root / "mask_dict.json").write_text(json.dumps(masks))


def loose_mask(track: list[Any]) -> list[Any]:
    """dog's object (box 16, 16, 48, 40) as its top-left corner plus one far pixel: same box, IoU 145 / 768."""
    mask = np.zeros((48, 64), dtype=bool)
    mask[16:28, 16:28] = True
    mask[39, 47] = True
    return [encode_rle(mask)] * len(track)


@pytest.fixture
def revos(tmp_path: Path) -> Path:
    """The default synthetic videos as a ReVOS train split; dog's masks no longer fill their boxes."""
    root = synth.write_revos(tmp_path / "ReVOS", split="train")
    edit_masks(root, "dog", loose_mask)
    return root


def rows(out: Path) -> dict[str, dict[str, Any]]:
    return {row["video"]: row for row in json.loads((out / "report.json").read_text())["videos"]}


def excluded(out: Path) -> list[str]:
    from revseg.cli import _read_ids

    return _read_ids(out / EXCLUDE_FILE)


def test_a_video_whose_box_masks_miss_its_ground_truth_has_all_its_queries_dropped(revos: Path, tmp_path: Path) -> None:
    bench = get_benchmark("revos", revos, "train")
    fake = BoxFill()
    report = curate(bench, fake, tmp_path / "out")
    got = rows(tmp_path / "out")
    assert {v: (r["mean_iou"], r["pairs"], r["kept"]) for v, r in got.items()} == {
        "cat": (1.0, 16, True),  # 2 objects x 8 frames
        "dog": (round(145 / 768, 6), 6, False),
        "rain/street": (1.0, 14, True),
    }
    assert got["cat"]["objects"] == {
        "anno 100": {"frames": 8, "mean_iou": 1.0},
        "anno 101": {"frames": 8, "mean_iou": 1.0},
    }
    assert [2] * 8 in fake.calls  # cat's two objects share each frame's prompt, 8 frames a batch
    assert report.dropped == excluded(tmp_path / "out") == ["dog"]
    counts = report.counts()
    assert counts["dropped_low_iou"] == {"videos": 1, "queries": 2} and counts["kept"] == {"videos": 2, "queries": 6}
    markdown = (tmp_path / "out" / "report.md").read_text()
    assert "| dropped: mean IoU < 0.6 | 1 | 2 |" in markdown and "`fake:box-fill`" in markdown
    assert len((tmp_path / "out" / "results.jsonl").read_text().splitlines()) == 3

    again = curate(bench, Unused(), tmp_path / "out", resume=True, threshold=0.15)  # re-decide, run nothing
    assert again.dropped == excluded(tmp_path / "out") == []


def test_resume_after_a_crash_keeps_finished_videos_and_runs_only_the_rest(revos: Path, tmp_path: Path) -> None:
    bench = get_benchmark("revos", revos, "train")
    out = tmp_path / "out"
    with pytest.raises(KeyboardInterrupt):
        curate(bench, BoxFill(crash_on_call=2), out, batch_size=8)  # dies inside the second video
    results = out / "results.jsonl"
    assert [json.loads(line)["video"] for line in results.read_text().splitlines()] == ["cat"]
    with results.open("a") as handle:
        handle.write('{"key":"dog","video":"dog","sta')  # and a line torn by the kill

    with pytest.raises(OutputError, match="--resume"):
        curate(bench, BoxFill(), out)
    fake = BoxFill()
    report = curate(bench, fake, out, resume=True, limit=1)
    assert len(fake.calls) == 1 and report.counts()["pending"] == {"videos": 1, "queries": 3}
    report = curate(bench, fake, out, resume=True)
    assert len(fake.calls) == 2 and report.counts()["checked"] == {"videos": 3, "queries": 8}
    lines = [json.loads(line) for line in results.read_text().splitlines()]
    assert [r["video"] for r in lines] == ["cat", "dog", "rain/street"]
    assert report.dropped == ["dog"]

    with pytest.raises(OutputError, match="different tracker"):
        curate(bench, "sam2:other.yaml:other.pt", out, resume=True)


def test_broken_videos_are_recorded_as_failures_and_the_run_goes_on(tmp_path: Path) -> None:
    names = ["good", "empty", "gone", "corrupt", "drift"]
    videos = [
        synth.SyntheticVideo(n, 3, ((8, 8, 24, 32),), (synth.SyntheticExpression("0", "the box", (0,)),)) for n in names
    ]
    root = synth.write_revos(tmp_path / "ReVOS", videos, split="train")
    edit_masks(root, "empty", lambda track: [None] * len(track))
    edit_masks(root, "corrupt", lambda track: [{"size": [48, 64], "counts": 12345}] * len(track))
    small = encode_rle(np.ones((24, 32), dtype=bool))  # masks (and foreground) of another size than the frames
    edit_masks(root, "drift", lambda track: [small] * len(track))
    foreground = json.loads((root / "mask_dict_foreground.json").read_text())
    foreground["drift"]["masks_rle"] = [small] * 3
    (root / "mask_dict_foreground.json").write_text(json.dumps(foreground))
    for frame in (root / "JPEGImages" / "gone").iterdir():
        frame.unlink()

    bench = get_benchmark("revos", root, "train")
    report = curate(bench, BoxFill(), tmp_path / "out")
    got = rows(tmp_path / "out")
    assert got["good"]["status"] == "scored" and got["good"]["kept"]
    reasons = {v: r["reason"] for v, r in got.items() if r["status"] == "failed"}
    assert set(reasons) == {"empty", "gone", "corrupt", "drift"}
    assert "every ground-truth mask is empty" in reasons["empty"]
    assert "missing or unreadable frame" in reasons["gone"] and "00000.jpg" in reasons["gone"]
    assert "RLE" in reasons["corrupt"]
    assert "64x48" in reasons["drift"] and "32x24" in reasons["drift"]
    assert report.dropped == excluded(tmp_path / "out") == ["corrupt", "drift", "empty", "gone"]
    assert "Failed videos:" in (tmp_path / "out" / "report.md").read_text()

    kept = curate(bench, Unused(), tmp_path / "out", resume=True, drop_failed=False)
    assert kept.dropped == []
    curate(bench, Unused(), tmp_path / "out", resume=True, retry_failed=True)  # each fails on its input again
    records = [json.loads(line) for line in (tmp_path / "out" / "results.jsonl").read_text().splitlines()]
    assert [r["video"] for r in records[5:]] == ["corrupt", "drift", "empty", "gone"]


TWO_IN_ONE_BOX = 832 / 1536  # cat's two objects (384 + 448 pixels) against their union box (48 x 32)


@pytest.mark.parametrize(
    ("writer", "split", "objects", "mean"),
    [
        (synth.write_revos, "train", ["anno 100", "anno 101"], 1.0),  # anno ids; the no-target query adds none
        (synth.write_mevis, "valid_u", ["anno 100", "anno 101"], 1.0),
        # one object per query; query 1's mask is both objects, which one box cannot single out
        (synth.write_reasonvos, "test", ["expression 0", "expression 1", "expression 2"], (1 + TWO_IN_ONE_BOX) / 2),
        (synth.write_refdavis, "valid", ["object 1", "object 2"], 1.0),  # four expressions per object
    ],
)
def test_objects_are_found_in_every_benchmark_layout(
    tmp_path: Path, writer: Callable[..., Path], split: str, objects: list[str], mean: float
) -> None:
    kwargs = {"split": split} if writer in (synth.write_revos, synth.write_mevis) else {}
    bench = get_benchmark(writer.__name__.removeprefix("write_"), writer(tmp_path / "data", **kwargs), split)
    samples = [s for s in bench.samples() if s.video == "cat"]
    assert [name for name, _ in video_objects(samples)] == objects
    scored = score_video(bench, samples, BoxFill())
    assert scored.mean_iou == pytest.approx(mean) and scored.pairs == 16  # 2 visible objects x 8 frames
    assert sorted(scored.objects) == objects[:2]  # ReasonVOS' no-target query 2 is empty on every frame


@pytest.mark.parametrize("spec_fixture", ["tiny_sam2_spec", "tiny_hf_sam2_spec"])
def test_real_tiny_sam2_backends_write_reports_and_exclusion_lists(
    request: pytest.FixtureRequest, spec_fixture: str, tmp_path: Path
) -> None:
    spec = request.getfixturevalue(spec_fixture)
    root = synth.write_revos(tmp_path / "ReVOS", split="train")
    report = curate(get_benchmark("revos", root, "train"), spec, tmp_path / "out", device="cpu", batch_size=4, limit=2)
    data = json.loads((tmp_path / "out" / "report.json").read_text())
    assert data["tracker"] == spec and data["threshold"] == 0.6
    assert [r["video"] for r in data["videos"]] == ["cat", "dog"] and data["counts"]["pending"]["videos"] == 1
    for row in data["videos"]:
        assert row["status"] == "scored" and 0.0 <= row["mean_iou"] <= 1.0 and row["pairs"] in (16, 6)
        assert row["kept"] == (row["mean_iou"] >= 0.6)
    assert excluded(tmp_path / "out") == report.dropped


def test_a_tracker_without_box_segmentation_is_refused(revos: Path, tmp_path: Path) -> None:
    with pytest.raises(SpecError, match="cannot segment box prompts"):
        curate(get_benchmark("revos", revos, "train"), "none", tmp_path / "out")
    with pytest.raises(DatasetError, match="no local ground truth"):
        mevis = synth.write_mevis(tmp_path / "mevis", split="valid")
        curate(get_benchmark("mevis", mevis, "valid"), BoxFill(), tmp_path / "out2")


def cli(*args: str) -> tuple[int, str]:
    """Run the command in this process; (exit code, output), revseg errors as main() prints them."""
    from typer.testing import CliRunner

    from revseg.cli import app

    result = CliRunner().invoke(app, list(args))
    if isinstance(result.exception, RevsegError):
        return 2, f"revseg: error: {result.exception}"
    if result.exception is not None and not isinstance(result.exception, SystemExit):
        raise result.exception
    return result.exit_code, result.output


def test_cli_curate_writes_the_list_that_collect_excludes(revos: Path, tmp_path: Path, tiny_sam2_spec: str) -> None:
    out = tmp_path / "curated"
    common = ["curate", "revos", "--data-root", str(revos), "--split", "train", "--out", str(out), "--device", "cpu"]
    code, text = cli(*common, "--tracker", tiny_sam2_spec, "--threshold", "0", "--limit", "2")
    assert code == 0, text
    assert "[2/2] dog: mean IoU" in text and "| not yet checked | 1 | 3 |" in text and excluded(out) == []
    code, text = cli(*common, "--tracker", tiny_sam2_spec, "--threshold", "1", "--resume", "-q")
    assert code == 0, text
    assert "[1/1]" not in text and "| dropped: mean IoU < 1 | 3 | 8 |" in text
    assert excluded(out) == ["cat", "dog", "rain/street"]
    code, text = cli(*common, "--tracker", tiny_sam2_spec)
    assert code == 2 and "--resume" in text

    (out / "some.txt").write_text("# a hand-made list\ndog\n")
    from revseg.testing.chat_server import chat_server, paper_responder
    from revseg.trajectory_store import TrajectoryStore

    store = tmp_path / "store"
    collect = ["collect", "--dataset", "revos", "--split", "train", "--data-root", str(revos), "--out", str(store)]
    fast = ["-q", "--frames", "4", "--group-size", "1", "--max-new-tokens", "64"]
    with chat_server(paper_responder(keyframe=1, box=(10, 10, 300, 300))) as url:
        policy = ["--policy", "openai:qwen", "--base-url", url]
        code, text = cli(*collect, *fast, *policy, "--exclude-videos", str(out / "some.txt"))
    assert code == 0, text
    collected = sorted(r.query_id for r in TrajectoryStore(store) if r.query_id)
    assert collected == ["revos/train/cat/0", "revos/train/cat/1", "revos/train/cat/2"] + [
        f"revos/train/rain/street/{n}" for n in range(3)
    ]
    items = benchmark_items("revos", revos, "train", link_dir=tmp_path / "l", exclude_videos=excluded(out))
    assert list(items) == []
