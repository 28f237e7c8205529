"""`score` on known predictions: numbers worked out by hand, failures counted, both Ref-DAVIS17 protocols, zips."""

from __future__ import annotations

import json
import zipfile
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from revseg.evals import get_benchmark, score
from revseg.evals.base import Sample
from revseg.evals.report import comparable, load_report
from revseg.testing import benchmarks as synth
from tests.evals.helpers import write_masks, write_predictions

FRAME = 64 * 48


def test_perfect_revos_predictions_score_100_everywhere(datasets: dict[str, Path], tmp_path: Path) -> None:
    bench = get_benchmark("revos", datasets["revos"])
    report = score(bench, write_predictions(bench, tmp_path / "pred", lambda s, gt: gt))
    for label in ("referring", "reasoning", "overall"):
        row = report.row(label)
        assert row.values == pytest.approx({"J": 100, "F": 100, "J&F": 100, "R": 100, "A": 100})
    assert report.row("referring").n == 3 and report.row("overall").n == 6
    assert report.row("no-target expressions", "no-target").values["N-acc."] == 100
    assert report.row("expressions with a target", "no-target").values["T-acc."] == 100
    assert not any(report.failures.values())
    assert (tmp_path / "pred" / "report.md").is_file() and (tmp_path / "pred" / "report.json").is_file()


def test_empty_revos_predictions_score_0_on_j_and_f_and_are_robust(datasets: dict[str, Path], tmp_path: Path) -> None:
    bench = get_benchmark("revos", datasets["revos"])
    report = score(bench, write_predictions(bench, tmp_path / "pred", lambda s, gt: np.zeros_like(gt)))
    referring, reasoning = report.row("referring").values, report.row("reasoning").values
    assert referring["J"] == referring["F"] == reasoning["J&F"] == 0
    assert referring["R"] == reasoning["R"] == 100  # no false positives
    # A: the share of pixels outside each ground-truth box, averaged over the subset.
    assert referring["A"] == pytest.approx(100 * np.mean([1 - 384 / FRAME, 1 - 768 / FRAME, 1 - 768 / FRAME]))
    assert reasoning["A"] == pytest.approx(100 * np.mean([1 - 832 / FRAME, 1 - 768 / FRAME, 1 - 256 / FRAME]))
    assert report.row("overall").values["A"] == pytest.approx((referring["A"] + reasoning["A"]) / 2)
    assert report.row("no-target expressions", "no-target").values["N-acc."] == 100
    # every expression with a target answered "no target": T-acc. 0, false "no target" 100;
    # J&F with no-target = the 2 no-target expressions at 100 among 8
    target = report.row("expressions with a target", "no-target").values
    assert target["T-acc."] == 0 and target["false 'no target'"] == 100
    assert report.row("all expressions (J&F with no-target)", "no-target").values["J&F"] == pytest.approx(25)


def test_revos_overall_is_the_mean_of_subset_means_not_pooled(tmp_path: Path) -> None:
    clip = synth.SyntheticVideo("clip", 6, ((8, 8, 24, 32),))
    expressions = (
        synth.SyntheticExpression("0", "a", (0,), 0),
        synth.SyntheticExpression("1", "b", (0,), 1),
        synth.SyntheticExpression("2", "c", (0,), 1),
    )
    root = synth.write_revos(tmp_path / "ReVOS", [synth.SyntheticVideo("clip", 6, clip.boxes, expressions)])
    bench = get_benchmark("revos", root)
    pred = write_predictions(bench, tmp_path / "pred", lambda s, gt: np.zeros_like(gt) if s.key == "clip/2" else gt)
    report = score(bench, pred)
    assert report.row("referring").values["J"] == 100 and report.row("reasoning").values["J"] == 50
    assert report.row("overall").values["J"] == pytest.approx(75)  # pooled over the 3 expressions: 66.7
    assert report.row("overall").values["J&F"] == pytest.approx(75)


def test_a_half_box_has_j_one_half_and_r_from_false_positives(datasets: dict[str, Path], tmp_path: Path) -> None:
    bench = get_benchmark("revos", datasets["revos"])

    def make(sample, gt):  # type: ignore[no-untyped-def]
        if sample.key == "cat/0":  # box x 8..24, y 8..32: keep the left half
            pred = np.zeros_like(gt)
            pred[:, 8:32, 8:16] = True
            return pred
        if sample.key == "dog/0":  # the right box plus 96 false-positive pixels
            pred = gt.copy()
            pred[:, 0:8, 0:12] = True
            return pred
        return gt

    report = score(bench, write_predictions(bench, tmp_path / "pred", make))
    scores = {s.key: s for s in report.samples}
    assert pytest.approx(0.5) == scores["cat/0"].J
    assert 0 < scores["cat/0"].F < 1
    assert pytest.approx(768 / (768 + 96)) == scores["dog/0"].J
    # R = 1 - FP / foreground, foreground = the one dog box (768 pixels)
    assert scores["dog/0"].extra["R"] == pytest.approx(1 - 96 / (768 + 1e-6))
    assert scores["dog/0"].extra["A"] == pytest.approx(1 - 96 / FRAME)


def test_r_and_a_do_not_depend_on_the_png_values(datasets: dict[str, Path], tmp_path: Path) -> None:
    bench = get_benchmark("revos", datasets["revos"])
    reports = []
    for value in (1, 255):
        out = tmp_path / f"v{value}"
        for sample in bench.samples():
            gt = bench.ground_truth(sample)
            pred = gt.masks.copy()
            pred[:, :4, :4] = True
            write_masks(out / sample.video / sample.expression, gt.frame_names, pred, value=value)
        reports.append(comparable(score(bench, out).to_json()))
    assert reports[0] == reports[1]


def test_missing_incomplete_and_invalid_predictions_score_0_and_are_listed(
    datasets: dict[str, Path], tmp_path: Path
) -> None:
    bench = get_benchmark("mevis", datasets["mevis"])
    pred = write_predictions(bench, tmp_path / "pred", lambda s, gt: None if s.key == "dog/0" else gt)
    (pred / "cat" / "1" / "00003.png").unlink()
    Image.fromarray(np.zeros((10, 10), np.uint8)).save(pred / "rain" / "street" / "0" / "00002.png")
    report = score(bench, pred)
    failures = report.failures
    assert failures["missing"] == ["dog/0"]
    assert failures["incomplete"] == ["cat/1"]
    assert failures["invalid"] == ["rain/street/0"]
    assert report.row("all").values["J"] == pytest.approx(100 * 5 / 8)
    assert report.row("all").n == 8  # never skipped
    text = (pred / "report.md").read_text()
    assert "| missing prediction | 1 |" in text and "`dog/0`" in text


def test_reasonvos_and_mevis_perfect_predictions(datasets: dict[str, Path], tmp_path: Path) -> None:
    for name, n in (("reasonvos", 8), ("mevis", 8), ("mevis-v1", 6)):
        bench = get_benchmark(name.removesuffix("-v1"), datasets[name])
        report = score(bench, write_predictions(bench, tmp_path / name, lambda s, gt: gt))
        assert report.row("all").values == pytest.approx({"J": 100, "F": 100, "J&F": 100})
        assert report.row("all").n == n
    assert report.tables[0].title == "MeViS v1 valid_u"
    paper = [r for r in report.tables[0].rows if r.source == "paper"]
    assert paper and paper[0].values["J&F"] == 59.8
    assert "not directly comparable" in report.tables[0].notes[0]  # MeViS v1 valid_u vs the paper's v1 valid


def test_refdavis_both_protocols_and_hungarian_matching(datasets: dict[str, Path], tmp_path: Path) -> None:
    bench = get_benchmark("ref-davis17", datasets["ref-davis17"])
    perfect = score(bench, write_predictions(bench, tmp_path / "perfect", lambda s, gt: gt))
    assert perfect.row("all expressions").values == pytest.approx({"J": 100, "F": 100, "J&F": 100})
    annotators = perfect.table("per annotator")
    assert annotators.rows[4].label == "mean of the 4 annotators"
    assert annotators.rows[4].values == pytest.approx({"J": 100, "F": 100, "J&F": 100})
    assert annotators.rows[0].n == 5  # ground-truth objects: cat 2, dog 1, rain-street 2

    # Swap cat's two objects: every cat expression is wrong per expression, but the unsupervised
    # protocol matches predicted objects to ground-truth objects and finds the swap.
    def swapped(sample, gt):  # type: ignore[no-untyped-def]
        if sample.video != "cat":
            return gt
        other = 2 if sample.info["obj_id"] == 1 else 1
        _names, labels = bench.video_labels("cat")
        return labels == other

    report = score(bench, write_predictions(bench, tmp_path / "swapped", swapped))
    assert report.row("all expressions").values["J"] == pytest.approx(100 * 12 / 20)
    assert report.table("per annotator").rows[4].values["J"] == pytest.approx(100)


def test_refdavis_missing_expression_is_an_empty_object_for_its_annotator(
    datasets: dict[str, Path], tmp_path: Path
) -> None:
    bench = get_benchmark("ref-davis17", datasets["ref-davis17"])
    pred = write_predictions(bench, tmp_path / "pred", lambda s, gt: None if s.key == "dog/1" else gt)
    report = score(bench, pred)
    table = report.table("per annotator")
    assert table.rows[1].label == "annotator 1, full video"
    assert table.rows[1].values["J"] == pytest.approx(100 * 4 / 5)  # dog's one object is empty for annotator 1
    assert [r.values["J"] for r in table.rows[:4] if r is not table.rows[1]] == pytest.approx([100, 100, 100])
    assert report.failures["missing"] == ["dog/1"]
    assert report.row("all expressions").values["J"] == pytest.approx(100 * 19 / 20)


def test_server_splits_write_the_submission_zip_in_the_servers_layout(
    datasets: dict[str, Path], tmp_path: Path
) -> None:
    bench = get_benchmark("ref-youtube-vos", datasets["ref-youtube-vos"])
    pred = tmp_path / "pred"
    for sample in bench.samples()[:-1]:  # the last one is missing
        masks = np.ones((len(sample.frame_files), 48, 64), bool)
        write_masks(pred / sample.video / sample.expression, sample.frame_names, masks, value=1)
    report = score(bench, pred, tmp_path / "out")
    assert report.submission == str(tmp_path / "out" / "submission.zip")
    with zipfile.ZipFile(tmp_path / "out" / "submission.zip") as archive:
        names = sorted(archive.namelist())
        first = np.asarray(Image.open(archive.open("Annotations/cat/0/00000.png")))
        last = np.asarray(Image.open(archive.open("Annotations/rain/street/2/00006.png")))
    assert len(names) == 3 * 4 + 2 * 3 + 3 * 4  # every listed frame (every 2nd) of every expression
    assert all(n.startswith("Annotations/") for n in names)
    assert first.dtype == np.uint8 and set(np.unique(first)) == {255} and not last.any()
    assert report.failures["missing"] == ["rain/street/2"]
    mevis = get_benchmark("mevis", datasets["mevis-valid"], "valid")
    (tmp_path / "nothing").mkdir()
    report = score(mevis, tmp_path / "nothing")
    with zipfile.ZipFile(tmp_path / "nothing" / "submission.zip") as archive:
        assert "cat/0/00007.png" in archive.namelist()  # MeViS: no Annotations/ prefix, every frame
    assert len(report.failures["missing"]) == 8


def test_report_json_round_trips_and_is_complete(datasets: dict[str, Path], tmp_path: Path) -> None:
    bench = get_benchmark("revos", datasets["revos"])
    pred = write_predictions(bench, tmp_path / "pred", lambda s, gt: gt)
    score(bench, pred)
    data = load_report(pred)
    assert data["benchmark"] == "revos" and data["counts"]["samples"] == 8
    assert data["tables"][0]["rows"][0]["label"] == "referring"
    assert len(data["samples"]) == 8 and data["samples"][0]["J&F"] == 100
    assert json.loads(json.dumps(data)) == data


def test_davis_unsupervised_finds_the_best_assignment_of_predictions_to_objects() -> None:
    from itertools import permutations

    from revseg.evals.benchmarks.refdavis import davis_unsupervised
    from revseg.evals.metrics import boundary_f, jaccard

    rng = np.random.default_rng(7)
    for _ in range(6):
        n_gt, n_pred = int(rng.integers(1, 4)), int(rng.integers(0, 5))
        gt_labels = rng.integers(0, n_gt + 1, (3, 12, 16))
        pred_labels = rng.integers(0, n_pred + 1, (3, 12, 16)).astype(np.uint8)
        gts = [gt_labels == k for k in range(1, n_gt + 1)]
        j, f = davis_unsupervised(gts, pred_labels)
        assert len(j) == len(f) == n_gt
        width = max(n_pred, n_gt)
        preds = [pred_labels == k for k in range(1, width + 1)]
        pair = [[(jaccard(g, p).mean() + boundary_f(g, p).mean()) / 2 for p in preds] for g in gts]
        best = max(sum(pair[i][c] for i, c in enumerate(choice)) for choice in permutations(range(width), n_gt))
        assert (sum(j) + sum(f)) / 2 == pytest.approx(best)


def test_mevis_v2_no_target_metrics_are_the_hand_computed_ones(datasets: dict[str, Path], tmp_path: Path) -> None:
    bench = get_benchmark("mevis", datasets["mevis"])
    assert bench.version == "v2"

    def predict(sample: Sample, gt: np.ndarray) -> np.ndarray:
        if sample.key == "cat/2":  # a no-target expression answered with a mask
            mask = np.zeros_like(gt)
            mask[:, 8:32, 8:24] = True
            return mask
        if sample.key == "dog/0":  # an expression with a target answered "no target"
            return np.zeros_like(gt)
        return gt

    report = score(bench, write_predictions(bench, tmp_path / "pred", predict))
    # no-target: cat/2 wrong (J = F = 0), rain/street/2 right (empty on empty: 100) -> N-acc. 50, J&F 50.
    no_target = report.row("no-target expressions", "no-target").values
    assert no_target["N-acc."] == 50 and no_target["J&F"] == pytest.approx(50)
    # six with a target: dog/0 answered empty (J = F = 0), the other five perfect.
    target = report.row("expressions with a target", "no-target").values
    assert target["T-acc."] == pytest.approx(500 / 6) and target["false 'no target'"] == pytest.approx(100 / 6)
    assert target["J&F"] == pytest.approx(500 / 6)
    # J&F with no-target: (5 x 100 + 100) / 8 = 75; the main table's "all" pools them the same way.
    assert report.row("all expressions (J&F with no-target)", "no-target").values["J&F"] == pytest.approx(75)
    assert report.row("all", "MeViS v2 valid_u").values["J&F"] == pytest.approx(75)
    assert report.row("without no-target", "MeViS v2 valid_u").values["J&F"] == pytest.approx(500 / 6)
    # every published MeViS number is on v1: no paper row beside v2
    assert all(row.source == "ours" for row in report.table("MeViS v2 valid_u").rows)


def test_longrvos_scores_per_type_and_pooled_overall_are_the_hand_computed_ones(
    datasets: dict[str, Path], tmp_path: Path
) -> None:
    from revseg.evals.metrics import boundary_f

    bench = get_benchmark("longrvos", datasets["longrvos"])
    cat = next(v for v in synth.default_videos() if v.name == "cat")
    box = cat.object_mask(0)  # 16 x 24 = 384 pixels; in view on frames 0-5 of 8 (ground truth empty on 6, 7)
    extra = np.zeros_like(box)
    extra[0:16, 40:64] = True  # 384 pixels away from the box
    cat0 = np.stack([np.zeros_like(box)] * 2 + [box | extra] + [box] * 5)

    def predict(sample: Sample, gt: np.ndarray) -> np.ndarray | None:
        return {"cat/0": cat0, "dog/0": None, "rain/street/0": np.zeros_like(gt)}.get(sample.key, gt)

    report = score(bench, write_predictions(bench, tmp_path / "pred", predict))
    # cat/0 (static): frames 0, 1 missed (J 0), frame 2 J = 384 / 768 = 0.5, frames 3-5 exact, frames 6, 7 a mask
    # where the object is out of view (J 0): J = 3.5 / 8. Frames with the object: gt {0..5}, pred {2..7}:
    # tIoU = 4 / 8, vIoU = (0.5 + 1 + 1 + 1) / 8 = 3.5 / 8. F: 0 on frames 0, 1, 6, 7; 1 on 3-5.
    f_cat = (float(boundary_f(box, box | extra)[0]) + 3) / 8
    # rain/street/0 (static): empty everywhere, J = F = tIoU = vIoU = 0. dog/0 (dynamic): no prediction, 0.
    # dog/1 (hybrid) and rain/street/1 (dynamic): perfect, 100.
    static = report.row("static").values
    assert static == pytest.approx(
        {
            "J": 100 * 3.5 / 16,
            "F": 100 * f_cat / 2,
            "J&F": 100 * (3.5 / 8 + f_cat) / 4,
            "tIoU": 25,
            "vIoU": 100 * 3.5 / 16,
        }
    )
    assert report.row("dynamic").values == pytest.approx({"J": 50, "F": 50, "J&F": 50, "tIoU": 50, "vIoU": 50})
    assert report.row("hybrid").values == pytest.approx({"J": 100, "F": 100, "J&F": 100, "tIoU": 100, "vIoU": 100})
    # overall pools the five expressions (not the mean of the three rows, which would give J 100 * 0.5729)
    overall = report.row("overall").values
    assert report.row("overall").n == 5
    assert overall["J"] == pytest.approx(100 * (3.5 / 8 + 2) / 5) and overall["tIoU"] == pytest.approx(50)
    assert overall["vIoU"] == pytest.approx(100 * (3.5 / 8 + 2) / 5)
    assert overall["F"] == pytest.approx(100 * (f_cat + 2) / 5)
    assert report.failures["missing"] == ["dog/0"]
    assert report.setup["benchmark"] == "longrvos" and "tIoU" in report.to_markdown()


# [J, F, tIoU, vIoU] per expression that Long-RVOS's own eval_{static,dynamic,hybrid}.py printed for the
# predictions below on write_longrvos()'s dataset (run once, outside the suite, with opencv and scikit-image).
LONGRVOS_OFFICIAL = {
    "cat/0": [0.2589285714285714, 0.23124999999999998, 0.5, 0.2589285714285714],
    "dog/0": [0.14213197969543148, 0.0900900900900901, 0.5, 0.14213197969543148],
    "dog/1": [1.0, 1.0, 1.0, 1.0],
    "rain/street/0": [0.0, 0.0, 0.0, 0.0],
    "rain/street/1": [1.0, 1.0, 1.0, 1.0],
}


def test_longrvos_per_expression_scores_equal_the_official_scripts(datasets: dict[str, Path], tmp_path: Path) -> None:
    bench = get_benchmark("longrvos", datasets["longrvos"])
    cat = next(v for v in synth.default_videos() if v.name == "cat")
    box = cat.object_mask(0)
    extra = np.zeros_like(box)
    extra[0:16, 40:64] = True
    shifted = np.roll(box, 5, axis=1)
    cat0 = np.stack([np.zeros_like(box)] * 2 + [box | extra] + [shifted] * 3 + [box] * 2)

    def predict(sample: Sample, gt: np.ndarray) -> np.ndarray:
        if sample.key == "cat/0":
            return cat0
        if sample.key == "dog/0":  # a wrong region on frames 1-3 of 6
            mask = np.zeros_like(gt)
            mask[1:4, 10:40, 5:30] = True
            return mask
        return np.zeros_like(gt) if sample.key == "rain/street/0" else gt

    report = score(bench, write_predictions(bench, tmp_path / "pred", predict))
    ours = {s.key: [s.J, s.F, s.extra["tIoU"], s.extra["vIoU"]] for s in report.samples}
    assert ours.keys() == LONGRVOS_OFFICIAL.keys()
    for key, official in LONGRVOS_OFFICIAL.items():
        assert ours[key] == pytest.approx(official, abs=1e-12), key
    # the official eval_overall.py printed J&F 0.4722400641214093, tIoU 0.6, vIoU 0.48021211022480054
    overall = report.row("overall").values
    assert overall["J&F"] == pytest.approx(47.22400641214093)
    assert overall["tIoU"] == pytest.approx(60) and overall["vIoU"] == pytest.approx(48.021211022480054)
