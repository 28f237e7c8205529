"""`evaluate` with deterministic fakes: exact scores, the prediction layout, workers, resume after a crash."""

from __future__ import annotations

import json
import zipfile
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from revseg.errors import OutputError, SpecError
from revseg.evals import AgentSpec, evaluate, get_benchmark, score
from revseg.evals.report import comparable
from revseg.evals.runner import RESULTS_JSONL, RunStore
from revseg.testing.benchmarks import QueryBoxAgent
from revseg.trajectory import Trajectory

AGENT = QueryBoxAgent()


def lines(out: Path) -> list[dict]:  # type: ignore[type-arg]
    return [json.loads(line) for line in (out / RESULTS_JSONL).read_text().splitlines()]


def test_revos_scores_are_the_hand_computed_ones(datasets: dict[str, Path], tmp_path: Path) -> None:
    bench = get_benchmark("revos", datasets["revos"])
    report = evaluate(bench, tmp_path / "out", AGENT)
    # referring: cat/0 right, dog/0 wrong box, street/0 right; reasoning: cat/1 right (two objects),
    # dog/1 unparseable turn 1, street/1 unparseable turn 2 (both score 0)
    assert report.row("referring").values["J"] == pytest.approx(200 / 3)
    assert report.row("reasoning").values["J&F"] == pytest.approx(100 / 3)
    assert report.row("overall").values["J&F"] == pytest.approx(50)
    assert report.row("referring").values["R"] == pytest.approx(100 * (2 + 1 - 64 / (768 + 1e-6)) / 3)
    failures = report.failures
    assert failures["failed_select_frames"] == ["dog/1"]
    assert failures["failed_ground"] == ["rain/street/1"]
    assert failures["no_target"] == ["cat/2"]
    # no-target: cat/2 answered empty (J&F 100), street/2 answered a box (J = F = 0): N-acc. 50.
    # With a target: cat/0, cat/1, dog/0 (wrong box), street/0 answered a mask, dog/1 and street/1
    # failed (no answer, not a "no target" one): T-acc. 4/6, false "no target" 0/6.
    no_target = report.row("no-target expressions", "no-target").values
    assert no_target["N-acc."] == 50 and no_target["J&F"] == pytest.approx(50)
    target = report.row("expressions with a target", "no-target").values
    assert target["T-acc."] == pytest.approx(400 / 6) and target["false 'no target'"] == 0
    assert target["J&F"] == pytest.approx(50)  # cat/0, cat/1, street/0 at 100; dog/0, dog/1, street/1 at 0
    assert report.row("all expressions (J&F with no-target)", "no-target").values["J&F"] == pytest.approx(50)


def test_longrvos_evaluation_scores_the_out_of_view_frames_and_timing_by_hand(
    datasets: dict[str, Path], tmp_path: Path
) -> None:
    report = evaluate(get_benchmark("longrvos", datasets["longrvos"]), tmp_path / "out", AGENT)
    # The fake tracker fills the answered box on every frame. static: cat/0 right box but the object is out of
    # view on 2 of 8 frames (J = F = tIoU = vIoU = 6/8), rain/street/0 right (1). dynamic: dog/0 wrong box on
    # every frame (J = F = vIoU = 0 but tIoU = 1: right frames, wrong place), rain/street/1 unparseable turn 2
    # (0). hybrid: dog/1 unparseable turn 1 (0).
    assert report.row("static").values == pytest.approx({"J": 87.5, "F": 87.5, "J&F": 87.5, "tIoU": 87.5, "vIoU": 87.5})
    assert report.row("dynamic").values == pytest.approx({"J": 0, "F": 0, "J&F": 0, "tIoU": 50, "vIoU": 0})
    assert report.row("hybrid").values == pytest.approx({"J": 0, "F": 0, "J&F": 0, "tIoU": 0, "vIoU": 0})
    overall = report.row("overall").values
    assert overall["J&F"] == pytest.approx(100 * 1.75 / 5) and overall["tIoU"] == pytest.approx(100 * 2.75 / 5)
    assert report.failures["failed_select_frames"] == ["dog/1"]
    assert report.failures["failed_ground"] == ["rain/street/1"]
    assert report.setup["benchmark"] == "longrvos" and report.setup["version"] is None


def test_predictions_land_in_the_standard_layout_with_rle_and_run_records(
    datasets: dict[str, Path], tmp_path: Path
) -> None:
    bench = get_benchmark("revos", datasets["revos"])
    out = tmp_path / "out"
    evaluate(bench, out, AGENT)
    pngs = sorted((out / "predictions" / "cat" / "1").glob("*.png"))
    assert [p.stem for p in pngs] == [f"{i:05d}" for i in range(8)]
    mask = np.asarray(Image.open(pngs[0]))
    assert Image.open(pngs[0]).mode == "P" and set(np.unique(mask)) == {0, 1}  # union of both objects as 1
    assert mask.sum() == 384 + 448
    masks = json.loads((out / "predictions" / "cat" / "1" / "masks.json").read_text())
    assert masks["frame_names"][0] == "00000" and masks["num_frames"] == 8
    per_object = json.loads((out / "runs" / "cat" / "1" / "masks.json").read_text())
    assert per_object["objects"] == 2
    trajectory = Trajectory.load(out / "runs" / "cat" / "1" / "trajectory.json")
    assert trajectory.query_id == "cat/1" and trajectory.outputs["predictions"].endswith("predictions/cat/1")
    assert trajectory.dataset == {"benchmark": "revos", "version": None, "split": "valid", "sample": "cat/1"}
    assert not (out / "predictions" / "dog" / "1").exists()  # a failed run has no prediction: it scores 0
    assert (out / "runs" / "dog" / "1" / "trajectory.json").is_file()
    assert [r["key"] for r in lines(out)] == [s.key for s in bench.samples()]
    assert (out / "report.md").is_file() and json.loads((out / "run.json").read_text())["benchmark"] == "revos"
    assert comparable(score(bench, out, tmp_path / "rescored").to_json()) == comparable(
        json.loads((out / "report.json").read_text())
    )


def test_mevis_version_is_in_run_json_every_trajectory_and_the_report(
    datasets: dict[str, Path], tmp_path: Path
) -> None:
    bench = get_benchmark("mevis", datasets["mevis-v1"])
    report = evaluate(bench, tmp_path / "out", AGENT, limit=1)
    assert json.loads((tmp_path / "out" / "run.json").read_text())["version"] == "v1"
    trajectory = Trajectory.load(tmp_path / "out" / "runs" / "cat" / "0" / "trajectory.json")
    assert trajectory.dataset == {"benchmark": "mevis", "version": "v1", "split": "valid_u", "sample": "cat/0"}
    saved = json.loads((tmp_path / "out" / "report.json").read_text())
    assert saved["version"] == "v1" and saved["setup"]["split"] == "valid_u"
    assert "score 0" in saved["setup"]["failures"] and "eval_mevis.py" in saved["setup"]["protocol"]
    assert (tmp_path / "out" / "report.md").read_text().startswith("# MeViS v1 valid_u\n\n- benchmark: MeViS")
    assert report.table("MeViS v1 valid_u").rows[1].label == "ReVSeg-7B (paper): valid (v1)"


def test_worker_processes_give_the_same_report_as_one_process(datasets: dict[str, Path], tmp_path: Path) -> None:
    bench = get_benchmark("mevis", datasets["mevis"])
    single = evaluate(bench, tmp_path / "one", AGENT)
    # Both workers build their agent before either starts (a barrier), and each query takes 50 ms: a worker
    # spawned late under load cannot find the work already done by the other.
    both = QueryBoxAgent(delay_s=0.05, start_together=str(tmp_path / "barrier"), parties=2)
    multi = evaluate(bench, tmp_path / "two", both, workers=2, concurrency=2)
    assert comparable(multi.to_json()) == comparable(single.to_json())
    assert len({r["worker"] for r in lines(tmp_path / "two")}) == 2
    for sample in bench.samples():
        a, b = tmp_path / "one" / "predictions" / sample.key, tmp_path / "two" / "predictions" / sample.key
        assert sorted(p.name for p in a.glob("*")) == sorted(p.name for p in b.glob("*"))


def test_concurrent_queries_in_one_process_give_the_same_report(datasets: dict[str, Path], tmp_path: Path) -> None:
    bench = get_benchmark("revos", datasets["revos"])
    single = evaluate(bench, tmp_path / "one", AGENT)
    in_flight: list[int] = []
    agent = QueryBoxAgent(delay_s=0.05)
    overlapped = evaluate(bench, tmp_path / "many", agent, concurrency=4, on_result=lambda d, t, r: in_flight.append(d))
    assert comparable(overlapped.to_json()) == comparable(single.to_json())
    assert in_flight == list(range(1, 9))
    assert sorted(r["key"] for r in lines(tmp_path / "many")) == sorted(r["key"] for r in lines(tmp_path / "one"))


def test_resume_runs_only_what_is_left_and_equals_an_uninterrupted_run(
    datasets: dict[str, Path], tmp_path: Path
) -> None:
    bench = get_benchmark("revos", datasets["revos"])
    reference = evaluate(bench, tmp_path / "ref", AGENT)
    out = tmp_path / "out"
    evaluate(bench, out, AGENT, limit=3)
    # A crash mid-sample: dog/0's predictions half written, its record torn in the middle.
    partial = out / "predictions" / "dog" / "0"
    partial.mkdir(parents=True)
    (partial / "00000.png").write_bytes(b"half")
    (out / "predictions" / "dog" / ".0.tmp-123").mkdir()
    with (out / RESULTS_JSONL).open("a") as handle:
        handle.write('{"key":"dog/0","status":"o')
    with pytest.raises(OutputError, match=r"already holds an evaluation.*--resume"):
        evaluate(bench, out, AGENT)
    seen: list[str] = []
    resumed = evaluate(bench, out, AGENT, resume=True, on_result=lambda done, total, r: seen.append(r["key"]))
    assert seen == [s.key for s in bench.samples()][3:]  # nothing finished is redone
    assert comparable(resumed.to_json()) == comparable(reference.to_json())
    records = RunStore(out).records()
    assert sorted(records) == sorted(s.key for s in bench.samples())
    assert sorted(r["key"] for r in lines(out)) == sorted(records)  # each sample recorded exactly once, no torn line
    assert not (out / "predictions" / "dog" / ".0.tmp-123").exists()
    assert len(list(partial.glob("*.png"))) == 6


def test_resume_refuses_a_different_configuration(datasets: dict[str, Path], tmp_path: Path) -> None:
    bench = get_benchmark("revos", datasets["revos"])
    evaluate(bench, tmp_path / "out", AGENT, limit=1)
    other = get_benchmark("revos", datasets["revos"], "valid", exclude_videos=["dog"])
    spec = AgentSpec(policy="openai:x", tracker="sam2:y")
    with pytest.raises(OutputError, match="different agent"):
        evaluate(other, tmp_path / "out", spec, resume=True)
    with pytest.raises(SpecError, match="needs masks"):
        AgentSpec(policy="openai:x", tracker="none")


def test_retry_errors_reruns_samples_that_raised(datasets: dict[str, Path], tmp_path: Path) -> None:
    bench = get_benchmark("revos", datasets["revos"])
    out = tmp_path / "out"
    evaluate(bench, out, AGENT, limit=2)
    records = lines(out)
    records[1] |= {"status": "error", "reason": "RuntimeError: CUDA out of memory"}
    (out / RESULTS_JSONL).write_text("".join(json.dumps(r) + "\n" for r in records))
    seen: list[str] = []
    evaluate(bench, out, AGENT, limit=2, resume=True, on_result=lambda d, t, r: seen.append(r["key"]))
    assert seen == []
    report = evaluate(bench, out, AGENT, limit=2, resume=True, retry_errors=True,
                      on_result=lambda d, t, r: seen.append(r["key"]))  # fmt: skip
    assert seen == ["cat/1"] and report.failures["error"] == []


def test_a_broken_video_is_an_error_sample_not_a_crash(datasets: dict[str, Path], tmp_path: Path) -> None:
    import shutil

    root = tmp_path / "mevis"
    shutil.copytree(datasets["mevis"], root)
    (root / "valid_u" / "JPEGImages" / "dog" / "00003.jpg").write_bytes(b"not a jpeg")
    report = evaluate(get_benchmark("mevis", root), tmp_path / "out", AGENT)
    assert report.failures["error"] == ["dog/0", "dog/1"]
    assert "00003.jpg" in next(s.reason for s in report.samples if s.key == "dog/0")  # type: ignore[arg-type]
    assert report.row("all").n == 8


def test_server_split_evaluation_writes_a_complete_submission(datasets: dict[str, Path], tmp_path: Path) -> None:
    bench = get_benchmark("ref-youtube-vos", datasets["ref-youtube-vos"])
    report = evaluate(bench, tmp_path / "out", AGENT)
    with zipfile.ZipFile(tmp_path / "out" / "submission.zip") as archive:
        names = set(archive.namelist())
        cat0 = np.asarray(Image.open(archive.open("Annotations/cat/0/00002.png")))
    assert len(names) == 3 * 4 + 2 * 3 + 3 * 4
    assert cat0.sum() == 384 * 255  # the listed frames only (linked, not the whole folder)
    assert sorted(p.stem for p in (tmp_path / "out" / "predictions" / "cat" / "0").glob("*.png")) == [
        "00000", "00002", "00004", "00006"
    ]  # fmt: skip
    assert report.failures["failed_select_frames"] == ["dog/1"]
    assert "scored by the benchmark's server" in report.notes[-1]


@pytest.mark.slow
def test_ray_actors_give_the_same_report(datasets: dict[str, Path], tmp_path: Path) -> None:
    pytest.importorskip("ray")
    bench = get_benchmark("reasonvos", datasets["reasonvos"])
    single = evaluate(bench, tmp_path / "one", AGENT, limit=4)
    spread = evaluate(bench, tmp_path / "ray", AGENT, limit=4, workers=2, concurrency=2, ray_address="local")
    assert comparable(spread.to_json()) == comparable(single.to_json())
