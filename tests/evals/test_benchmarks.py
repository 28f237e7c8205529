"""Benchmark readers on synthetic datasets written in each public layout: samples, ground truth, path safety."""

from __future__ import annotations

import json
import re
import shutil
import zipfile
from pathlib import Path

import numpy as np
import pytest

from revseg.errors import DatasetError
from revseg.evals import BENCHMARKS, get_benchmark, score
from revseg.evals.base import safe_name
from revseg.testing.benchmarks import default_videos

KEYS = ["cat/0", "cat/1", "cat/2", "dog/0", "dog/1", "rain/street/0", "rain/street/1", "rain/street/2"]


def video(name: str):  # type: ignore[no-untyped-def]
    return next(v for v in default_videos() if v.name == name)


def test_registry_names_every_benchmark_and_aliases_resolve(datasets: dict[str, Path]) -> None:
    assert set(BENCHMARKS) == {"revos", "reasonvos", "mevis", "ref-youtube-vos", "ref-davis17", "longrvos"}
    assert get_benchmark("Long-RVOS", datasets["longrvos"], "val").name == "longrvos"
    assert get_benchmark("RefYTVOS", datasets["ref-youtube-vos"]).name == "ref-youtube-vos"
    assert get_benchmark("refdavis", datasets["ref-davis17"], "val").split == "valid"
    with pytest.raises(DatasetError, match=r"unknown benchmark 'kitti'.*revos"):
        get_benchmark("kitti", datasets["revos"])
    with pytest.raises(DatasetError, match=r"no split 'test'.*valid_u"):
        get_benchmark("mevis", datasets["mevis"], "test")
    with pytest.raises(DatasetError, match="not a folder"):
        get_benchmark("revos", datasets["revos"] / "nope")


def test_revos_reads_subsets_queries_and_union_ground_truth(datasets: dict[str, Path]) -> None:
    bench = get_benchmark("revos", datasets["revos"])
    samples = bench.samples()
    assert [s.key for s in samples] == KEYS
    assert [s.subset for s in samples][:3] == ["referring", "reasoning", "no_target"]
    cat1 = samples[1]
    assert cat1.query == "box 8 8 24 32 and box 40 12 56 40"
    assert cat1.frame_files == tuple(f"{i:05d}.jpg" for i in range(8))
    gt = bench.ground_truth(cat1)
    assert gt.masks.shape == (8, 48, 64) and gt.frame_names == cat1.frame_names
    assert np.array_equal(gt.masks[3], video("cat").union_mask((0, 1)))
    assert gt.foreground is not None and np.array_equal(gt.foreground[0], video("cat").union_mask((0, 1)))
    assert not bench.ground_truth(samples[2]).masks.any()  # no-target: empty
    street = bench.ground_truth(samples[5])
    assert street.masks.shape == (7, 48, 64) and samples[5].frames_dir.name == "street"


def test_revos_excluded_videos_are_listed_not_dropped_silently(datasets: dict[str, Path]) -> None:
    bench = get_benchmark("revos", datasets["revos"], exclude_videos=["dog"])
    assert [s.key for s in bench.samples()] == [k for k in KEYS if not k.startswith("dog")]
    assert [e["key"] for e in bench.excluded] == ["dog/0", "dog/1"]


def test_mevis_valid_u_has_ground_truth_and_valid_does_not(datasets: dict[str, Path]) -> None:
    bench = get_benchmark("mevis", datasets["mevis"])
    assert bench.split == "valid_u" and bench.has_ground_truth
    assert [s.key for s in bench.samples()] == KEYS
    gt = bench.ground_truth(bench.samples()[1])
    assert np.array_equal(gt.masks[0], video("cat").union_mask((0, 1)))
    server = get_benchmark("mevis", datasets["mevis-valid"], "valid")
    assert not server.has_ground_truth and len(server.samples()) == 8
    with pytest.raises(DatasetError, match="scored by its server"):
        server.ground_truth(server.samples()[0])


def test_mevis_version_is_detected_from_no_target_expressions_and_can_be_forced(
    datasets: dict[str, Path], tmp_path: Path
) -> None:
    from revseg.testing.benchmarks import write_mevis

    v2 = get_benchmark("mevis", write_mevis(tmp_path / "mevis", meta_name="meta_expressions.json"))
    assert v2.version == "v2" and "no-target" in v2.version_source
    assert [s.subset for s in v2.samples()][:3] == ["all", "all", "no_target"]
    v1 = get_benchmark("mevis", datasets["mevis-v1"])
    assert v1.version == "v1" and v1.version_source == "detected: no no-target expression"
    assert [s.key for s in v1.samples()] == [k for k in KEYS if k not in ("cat/2", "rain/street/2")]
    forced = get_benchmark("mevis", datasets["mevis-v1"], version="v2")
    assert forced.version == "v2" and forced.version_source == "forced"
    with pytest.raises(DatasetError, match="MeViS v1 has no no-target expressions"):
        get_benchmark("mevis", datasets["mevis"], version="v1").samples()
    with pytest.raises(DatasetError, match="no version 'v3'"):
        get_benchmark("mevis", datasets["mevis"], version="v3")
    with pytest.raises(DatasetError, match="has one version"):
        get_benchmark("revos", datasets["revos"], version="v2")


def test_mevis_v2_release_file_names_are_read_and_mean_v2(datasets: dict[str, Path], tmp_path: Path) -> None:
    valid_u = get_benchmark("mevis", datasets["mevis"])
    assert valid_u.meta_path.name == "meta_expressions_v2.json"
    assert valid_u.version == "v2" and valid_u.version_source == "detected: file name meta_expressions_v2.json"
    assert [s.key for s in valid_u.samples()] == KEYS and valid_u.samples()[2].subset == "no_target"
    valid = get_benchmark("mevis", datasets["mevis-valid"], "valid")
    assert valid.meta_path.name == "meta_expressions_v2_release.json" and valid.version == "v2"
    assert not valid.notes  # nothing assumed: the name says v2
    both = tmp_path / "both"
    shutil.copytree(datasets["mevis-v1"], both)
    shutil.copy(datasets["mevis"] / "valid_u" / "meta_expressions_v2.json", both / "valid_u")
    bench = get_benchmark("mevis", both)
    assert bench.version == "v2" and "both meta_expressions.json and meta_expressions_v2.json" in bench.notes[0]
    v1 = get_benchmark("mevis", both, version="v1")
    assert v1.meta_path.name == "meta_expressions.json" and len(v1.samples()) == 6
    with pytest.raises(DatasetError, match=r"no meta expressions file .*meta_expressions_v2\.json"):
        get_benchmark("mevis", tmp_path / "both", "train").samples()


def test_mevis_version_comes_from_the_published_expression_count_first(tmp_path: Path) -> None:
    from revseg.evals.benchmarks.mevis import MeViS

    root = tmp_path / "mevis"
    (root / "valid").mkdir(parents=True)
    bench = MeViS(root, "valid")
    videos = {f"v{i}": {"expressions": {str(j): {"exp": "x"} for j in range(10)}} for i in range(252)}
    videos["v0"]["expressions"] |= {str(j): {"exp": "x"} for j in range(10, 13)}  # 2,523 in all
    assert bench.detect_version(videos) == "v2" and bench.version_source == "detected: 2523 expressions in valid"
    unknown = MeViS(root, "valid")
    assert unknown.detect_version({"v": {"expressions": {"0": {"exp": "x"}}}}) == "v1"
    assert unknown.version_source.startswith("assumed") and "v1 assumed" in unknown.notes[0]


def test_refytvos_drops_test_videos_and_segments_only_the_listed_frames(datasets: dict[str, Path]) -> None:
    bench = get_benchmark("ref-youtube-vos", datasets["ref-youtube-vos"])
    samples = bench.samples()
    assert [s.key for s in samples] == KEYS  # "test-only" is in the valid meta but also in the test meta
    assert samples[0].frame_files == ("00000.jpg", "00002.jpg", "00004.jpg", "00006.jpg")
    assert len(list(samples[0].frames_dir.glob("*.jpg"))) == 8
    assert not bench.has_ground_truth and bench.submission_prefix == "Annotations"


def test_reasonvos_names_expressions_by_obj_id_and_reads_png_ground_truth(datasets: dict[str, Path]) -> None:
    bench = get_benchmark("reasonvos", datasets["reasonvos"])
    samples = bench.samples()
    assert [s.key for s in samples] == [k.replace("rain/street", "rain_street") for k in KEYS]
    assert samples[0].info["source"] == "MOSE" and samples[0].query == "box 8 8 24 32"
    gt = bench.ground_truth(samples[1])
    assert gt.frame_names == tuple(f"{i:05d}" for i in range(8))
    assert np.array_equal(gt.masks[5], video("cat").union_mask((0, 1)))


def test_reasonvos_missing_ground_truth_folder_is_listed_as_excluded(datasets: dict[str, Path], tmp_path: Path) -> None:
    root = tmp_path / "ReasonVOS"
    shutil.copytree(datasets["reasonvos"], root)
    shutil.rmtree(root / "Annotations" / "mose_dog_1")
    bench = get_benchmark("reasonvos", root)
    assert "dog/1" not in [s.key for s in bench.samples()]
    assert bench.excluded == [{"key": "dog/1", "reason": "no ground truth folder MOSE_dog_1"}]


def test_refdavis_reads_four_annotators_per_object_in_both_layouts(datasets: dict[str, Path]) -> None:
    converted = get_benchmark("ref-davis17", datasets["ref-davis17"])
    official = get_benchmark("ref-davis17", datasets["ref-davis17-official"])
    assert converted.layout == "converted" and official.layout == "official"
    a, b = converted.samples(), official.samples()
    assert len(a) == 4 * (2 + 1 + 2)
    assert [(s.key, s.query, s.subset, dict(s.info)) for s in a] == [
        (s.key, s.query, s.subset, dict(s.info)) for s in b
    ]
    cat = [s for s in a if s.video == "cat"]
    assert [s.info["obj_id"] for s in cat] == [1, 1, 1, 1, 2, 2, 2, 2]
    assert [s.info["annotator"] for s in cat] == [0, 1, 2, 3, 0, 1, 2, 3]
    assert cat[4].subset == "annotator 1, first frame"
    for x, y in zip(a, b, strict=True):
        assert np.array_equal(converted.ground_truth(x).masks, official.ground_truth(y).masks)
    assert np.array_equal(converted.ground_truth(cat[5]).masks[0], video("cat").object_mask(1))


@pytest.mark.parametrize(
    ("name", "kind"),
    [
        ("../../etc", "video id"),
        ("/etc/passwd", "video id"),
        ("ok/../../escape", "video id"),
        ("C:evil", "video id"),
    ],
)
def test_annotation_names_cannot_escape_the_data_root(
    tmp_path: Path, datasets: dict[str, Path], name: str, kind: str
) -> None:
    root = tmp_path / "ReVOS"
    shutil.copytree(datasets["revos"], root)
    meta_path = root / "meta_expressions_valid_.json"
    meta = json.loads(meta_path.read_text())
    meta["videos"][name] = meta["videos"].pop("cat")
    meta_path.write_text(json.dumps(meta))
    with pytest.raises(DatasetError, match=f"{kind} .* is not a plain relative name"):
        get_benchmark("revos", root).samples()


def test_expression_ids_and_frame_names_are_checked_too(tmp_path: Path, datasets: dict[str, Path]) -> None:
    root = tmp_path / "mevis"
    shutil.copytree(datasets["mevis"], root)
    meta_path = root / "valid_u" / "meta_expressions_v2.json"
    meta = json.loads(meta_path.read_text())
    meta["videos"]["cat"]["expressions"]["x/../.."] = meta["videos"]["cat"]["expressions"]["0"]
    meta_path.write_text(json.dumps(meta))
    with pytest.raises(DatasetError, match=re.escape("expression id 'x/../..'")):
        get_benchmark("mevis", root).samples()
    meta["videos"]["cat"]["expressions"].pop("x/../..")
    meta["videos"]["cat"]["frames"][0] = "../00000"
    meta_path.write_text(json.dumps(meta))
    with pytest.raises(DatasetError, match=re.escape("frame name '../00000'")):
        get_benchmark("mevis", root).samples()


def test_safe_name_accepts_plain_and_nested_names() -> None:
    assert safe_name(3, "x", "expression id") == "3"
    assert safe_name("a/b-c_d.1", "x", "video id", nested=True) == "a/b-c_d.1"
    for bad in ["", " a", "a/b", "..", "a\\b", "a\x00"]:
        with pytest.raises(DatasetError):
            safe_name(bad, "x", "name")
    with pytest.raises(DatasetError):
        safe_name(True, "x", "name")


def test_malformed_annotation_files_fail_with_the_file_named(tmp_path: Path, datasets: dict[str, Path]) -> None:
    root = tmp_path / "ReVOS"
    shutil.copytree(datasets["revos"], root)
    (root / "meta_expressions_valid_.json").write_text("{not json")
    with pytest.raises(DatasetError, match=re.escape("meta_expressions_valid_.json: cannot read")):
        get_benchmark("revos", root).samples()
    shutil.copy(datasets["revos"] / "meta_expressions_valid_.json", root)
    masks = json.loads((root / "mask_dict.json").read_text())
    masks.pop("100")
    (root / "mask_dict.json").write_text(json.dumps(masks))
    bench = get_benchmark("revos", root)
    with pytest.raises(DatasetError, match=re.escape("annotation id 100 is not in mask_dict.json")):
        bench.ground_truth(bench.samples()[0])


def test_refytvos_train_has_local_ground_truth_from_palette_annotations(tmp_path: Path) -> None:
    from revseg.testing.benchmarks import write_refytvos_train

    root = write_refytvos_train(tmp_path / "ref-youtube-vos")
    bench = get_benchmark("ref-youtube-vos", root, "train", exclude_videos=["dog"])  # dog: used for training
    assert bench.has_ground_truth and "held-out" in bench.protocol
    samples = bench.samples()
    assert [s.key for s in samples] == ["cat/0", "rain/street/0", "rain/street/1"]  # single-object expressions
    gt = bench.ground_truth(samples[1])
    assert gt.frame_names == ("00000", "00002", "00004", "00006")
    assert np.array_equal(gt.masks[0], video("rain/street").object_mask(1))
    assert [e["key"] for e in bench.excluded] == ["dog/0", "dog/1"]


def test_refytvos_valid_says_the_server_may_be_unavailable(datasets: dict[str, Path]) -> None:
    bench = get_benchmark("ref-youtube-vos", datasets["ref-youtube-vos"])
    bench.samples()
    assert any("reported unavailable" in n and "--split train" in n for n in bench.notes)
    assert "reported unavailable" in bench.describe()["protocol"]  # type: ignore[operator]


LONGRVOS_KEYS = ["cat/0", "dog/0", "dog/1", "rain/street/0", "rain/street/1"]


def test_longrvos_reads_types_and_one_object_per_expression_with_absent_frames_empty(
    datasets: dict[str, Path],
) -> None:
    bench = get_benchmark("longrvos", datasets["longrvos"])
    assert bench.split == "valid" and bench.has_ground_truth and bench.version is None
    samples = bench.samples()
    assert [s.key for s in samples] == LONGRVOS_KEYS  # cat/1 names two objects, the no-target ones none
    assert [s.subset for s in samples] == ["static", "dynamic", "hybrid", "static", "dynamic"]
    assert samples[0].info == {"obj_id": "1", "type": "static"} and samples[0].query == "box 8 8 24 32"
    gt = bench.ground_truth(samples[0])
    assert gt.masks.shape == (8, 48, 64) and gt.frame_names == tuple(f"{i:05d}" for i in range(8))
    assert all(np.array_equal(m, video("cat").object_mask(0)) for m in gt.masks[:6])
    assert not gt.masks[6:].any()  # out of view: no mask file, empty ground truth
    street = bench.ground_truth(samples[3])
    assert np.array_equal(street.masks[2], video("rain/street").object_mask(1))
    assert "pooled" in bench.describe()["protocol"]  # type: ignore[operator]


def test_longrvos_unscored_types_are_excluded_and_a_missing_type_or_bad_obj_id_is_an_error(
    tmp_path: Path, datasets: dict[str, Path]
) -> None:
    root = tmp_path / "long_rvos"
    shutil.copytree(datasets["longrvos"], root)
    meta_path = root / "valid" / "meta_expressions.json"
    meta = json.loads(meta_path.read_text())
    meta["videos"]["dog"]["expressions"]["1"]["type"] = "relation"
    meta_path.write_text(json.dumps(meta))
    bench = get_benchmark("longrvos", root)
    assert [s.key for s in bench.samples()] == [k for k in LONGRVOS_KEYS if k != "dog/1"]
    assert bench.excluded == [
        {"key": "dog/1", "reason": "type 'relation' is not scored by the official script (static, dynamic, "
         "static+dynamic)"}
    ]  # fmt: skip
    del meta["videos"]["dog"]["expressions"]["1"]["type"]
    meta_path.write_text(json.dumps(meta))
    with pytest.raises(DatasetError, match=r"expression '1': no 'type'"):
        get_benchmark("longrvos", root).samples()
    meta["videos"]["dog"]["expressions"]["1"] |= {"type": "static", "obj_id": "../../cat/1"}
    meta_path.write_text(json.dumps(meta))
    with pytest.raises(DatasetError, match=re.escape("obj_id '../../cat/1' is not a plain relative name")):
        get_benchmark("longrvos", root).samples()
    meta["videos"]["dog"]["expressions"]["1"]["obj_id"] = 1
    meta["videos"]["../dog"] = meta["videos"].pop("dog")
    meta_path.write_text(json.dumps(meta))
    with pytest.raises(DatasetError, match=re.escape("video id '../dog' is not a plain relative name")):
        get_benchmark("longrvos", root).samples()


def test_longrvos_test_split_without_annotations_has_no_local_ground_truth(tmp_path: Path) -> None:
    from revseg.testing.benchmarks import write_longrvos

    root = write_longrvos(tmp_path / "long_rvos", split="test", annotations=False)
    bench = get_benchmark("longrvos", root, "test")
    assert not bench.has_ground_truth and len(bench.samples()) == 5
    assert "no Annotations folder" in bench.notes[0] and "No evaluation server is known" in bench.notes[0]
    with pytest.raises(DatasetError, match="no local ground truth"):
        bench.ground_truth(bench.samples()[0])
    (tmp_path / "pred").mkdir()
    report = score(bench, tmp_path / "pred", tmp_path / "out")  # nothing predicted: every sample filled empty
    with zipfile.ZipFile(tmp_path / "out" / "submission.zip") as archive:
        assert "cat/0/00007.png" in archive.namelist() and "dog/1/00000.png" in archive.namelist()
    assert report.submission and any("No evaluation server is known" in note for note in report.notes)
