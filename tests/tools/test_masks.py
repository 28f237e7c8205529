"""Masks: COCO RLE round trips, the streaming PNG writer, and reading masks.json back lazily."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from pycocotools import mask as mask_utils

from revseg.errors import OutputError
from revseg.tools.masks import (
    MASKS_JSON,
    MaskWriter,
    davis_palette,
    decode_rle,
    empty_rle,
    encode_rle,
    label_map,
    read_masks_json,
)
from revseg.tools.trackers.base import FrameMasks

SHARED_DATA = Path(__file__).resolve().parents[3] / "shared" / "data"

# pycocotools' Cython decoder trips numpy 2's copy-keyword deprecation; not ours to fix.
pytestmark = pytest.mark.filterwarnings("ignore:__array__ implementation:DeprecationWarning")


def random_masks(rng: np.random.Generator, k: int, h: int, w: int) -> np.ndarray:
    return rng.random((k, h, w)) > 0.7


@pytest.mark.parametrize("shape", [(1, 1), (7, 13), (48, 64), (31, 1)])
def test_rle_round_trip(shape: tuple[int, int]) -> None:
    mask = np.random.default_rng(0).random(shape) > 0.5
    rle = encode_rle(mask)
    assert isinstance(rle["counts"], str)
    assert rle["size"] == list(shape)
    json.dumps(rle)
    decoded = decode_rle(rle)
    assert decoded.dtype == bool and np.array_equal(decoded, mask)


def test_rle_is_standard_coco() -> None:
    mask = np.zeros((20, 30), bool)
    mask[3:9, 4:20] = True
    rle = encode_rle(mask)
    coco = {"size": rle["size"], "counts": rle["counts"].encode()}
    assert int(mask_utils.area(coco)) == 6 * 16
    assert np.array_equal(mask_utils.decode(coco).astype(bool), mask)


def test_decode_accepts_bytes_and_uncompressed_counts() -> None:
    mask = np.zeros((4, 5), bool)
    mask[1:3, 2:4] = True
    rle = encode_rle(mask)
    assert np.array_equal(decode_rle({"size": rle["size"], "counts": rle["counts"].encode()}), mask)
    column_major_runs = [9, 2, 2, 2, 5]  # counts run down columns (Fortran order), starting with background
    assert np.array_equal(decode_rle({"size": [4, 5], "counts": column_major_runs}), mask)


def test_encode_rejects_stacks() -> None:
    with pytest.raises(ValueError, match=r"\(H, W\)"):
        encode_rle(np.zeros((2, 3, 4), bool))


def test_palette_matches_published_davis_results() -> None:
    pngs = sorted((SHARED_DATA / "davis2017-results").glob("*/*/*.png"))
    if not pngs:
        pytest.skip("shared DAVIS result masks not present")
    assert Image.open(pngs[0]).getpalette() == davis_palette()


def test_palette_first_colours() -> None:
    assert davis_palette()[:12] == [0, 0, 0, 128, 0, 0, 0, 128, 0, 128, 128, 0]


def test_label_map_later_object_wins() -> None:
    masks = np.zeros((2, 3, 3), bool)
    masks[0, :2] = True
    masks[1, 1:] = True
    assert label_map(masks).tolist() == [[1, 1, 1], [2, 2, 2], [2, 2, 2]]


def test_writer_accepts_any_order_and_writes_palette_pngs(tmp_path: Path) -> None:
    rng = np.random.default_rng(1)
    frames = {t: random_masks(rng, 2, 12, 16) for t in range(6)}
    writer = MaskWriter(tmp_path / "masks", num_frames=6, size=(16, 12))
    for t in (3, 2, 1, 0, 4, 5):  # keyframe 3, backwards, then forwards, like the tracker
        writer.write(t, frames[t])
        assert writer.png_path(t).exists()  # written at once, not at close
    path = writer.close()
    assert path == tmp_path / "masks" / MASKS_JSON
    for t, masks in frames.items():
        png = Image.open(tmp_path / "masks" / f"{t:05d}.png")
        assert png.mode == "P" and png.getpalette() == davis_palette()
        assert np.array_equal(np.asarray(png), label_map(masks))


def test_masks_json_schema_and_content(tmp_path: Path) -> None:
    rng = np.random.default_rng(2)
    frames = {t: random_masks(rng, 3, 9, 11) for t in range(4)}
    with MaskWriter(tmp_path, num_frames=4, size=(11, 9)) as writer:
        for t in (2, 0, 3, 1):
            writer.write(t, frames[t])
    record = json.loads((tmp_path / MASKS_JSON).read_text())
    assert {k: record[k] for k in ("version", "num_frames", "height", "width", "objects", "missing")} == {
        "version": 1,
        "num_frames": 4,
        "height": 9,
        "width": 11,
        "objects": 3,
        "missing": [],
    }
    assert [f["frame_index"] for f in record["frames"]] == [0, 1, 2, 3]
    for entry in record["frames"]:
        masks = frames[entry["frame_index"]]
        assert np.array_equal(decode_rle(entry["union"]), masks.any(axis=0))
        assert [np.array_equal(decode_rle(r), m) for r, m in zip(entry["objects"], masks, strict=True)] == [True] * 3
    assert not list(tmp_path.glob("*.tmp"))  # atomic: no temporary file left


def test_frames_never_given_get_empty_masks(tmp_path: Path) -> None:
    writer = MaskWriter(tmp_path, num_frames=5, size=(8, 6), num_objects=1)
    writer.write(2, np.ones((1, 6, 8), bool))
    writer.close()
    assert sorted(p.name for p in tmp_path.glob("*.png")) == [f"{t:05d}.png" for t in range(5)]
    masks = read_masks_json(tmp_path)
    assert masks.missing == [0, 1, 3, 4]
    assert [int(masks[t].sum()) for t in range(5)] == [0, 0, 48, 0, 0]
    assert masks.object_masks(0).shape == (1, 6, 8)


def test_write_empty_is_a_no_target_output(tmp_path: Path) -> None:
    writer = MaskWriter(tmp_path, num_frames=3, size=(8, 6), num_objects=0)
    writer.write_empty()
    writer.close()
    masks = read_masks_json(tmp_path / MASKS_JSON)
    assert masks.objects == masks.num_objects == 0 and masks.missing == []
    assert masks.object_masks(1).shape == (0, 6, 8)
    assert all(not m.any() for m in masks)
    assert all(not np.asarray(Image.open(p)).any() for p in tmp_path.glob("*.png"))


def test_closing_without_any_frame_still_writes_every_png(tmp_path: Path) -> None:
    """The failure path: nothing was tracked, yet every frame has a PNG."""
    with pytest.raises(RuntimeError), MaskWriter(tmp_path, num_frames=3, size=(4, 4)):
        raise RuntimeError("tracker crashed")
    assert len(list(tmp_path.glob("*.png"))) == 3
    assert read_masks_json(tmp_path).missing == [0, 1, 2]


def test_frame_names_name_the_pngs(tmp_path: Path) -> None:
    writer = MaskWriter(tmp_path, num_frames=2, size=(4, 4), frame_names=["00005.jpg", "00010.jpg"])
    writer.write(1, np.ones((1, 4, 4), bool))
    writer.close()
    assert sorted(p.name for p in tmp_path.glob("*.png")) == ["00005.png", "00010.png"]
    assert read_masks_json(tmp_path).frame_names == ["00005", "00010"]


def test_write_all_consumes_tracker_output(tmp_path: Path) -> None:
    writer = MaskWriter(tmp_path, num_frames=2, size=(4, 3))
    writer.write_all(FrameMasks(frame_index=t, masks=np.ones((1, 3, 4), bool)) for t in (1, 0))
    assert writer.written == 2
    writer.close()


@pytest.mark.parametrize(
    ("frame", "masks", "message"),
    [
        (0, np.ones((1, 5, 5), bool), r"shape \(K, 6, 8\)"),
        (9, np.ones((1, 6, 8), bool), "out of range"),
        (0, np.ones((2, 6, 8), bool), "expected 1 object"),
    ],
)
def test_writer_rejects_bad_frames(tmp_path: Path, frame: int, masks: np.ndarray, message: str) -> None:
    writer = MaskWriter(tmp_path, num_frames=3, size=(8, 6), num_objects=1)
    with pytest.raises(ValueError, match=message):
        writer.write(frame, masks)


def test_writer_rejects_a_frame_written_twice_and_writes_after_close(tmp_path: Path) -> None:
    writer = MaskWriter(tmp_path, num_frames=2, size=(4, 4))
    writer.write(0, np.zeros((1, 4, 4), bool))
    with pytest.raises(ValueError, match="already written"):
        writer.write(0, np.zeros((1, 4, 4), bool))
    assert writer.close() == writer.close()
    with pytest.raises(ValueError, match="closed"):
        writer.write(1, np.zeros((1, 4, 4), bool))


def test_unwritable_folder_is_an_output_error(tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("x")
    with pytest.raises(OutputError, match="file/masks"):
        MaskWriter(blocker / "masks", num_frames=1, size=(4, 4))


def test_unwritable_png_is_an_output_error(tmp_path: Path) -> None:
    writer = MaskWriter(tmp_path, num_frames=1, size=(4, 4))
    (tmp_path / "00000.png").mkdir()  # a folder where the PNG should go
    with pytest.raises(OutputError, match=str(tmp_path)):
        writer.write(0, np.ones((1, 4, 4), bool))


def test_read_masks_json_is_lazy_and_indexable(tmp_path: Path) -> None:
    rng = np.random.default_rng(3)
    frames = [random_masks(rng, 2, 5, 7) for _ in range(3)]
    with MaskWriter(tmp_path, num_frames=3, size=(7, 5)) as writer:
        for t, masks in enumerate(frames):
            writer.write(t, masks)
    seq = read_masks_json(tmp_path)
    assert len(seq) == 3 and (seq.height, seq.width, seq.objects) == (5, 7, 2)
    assert np.array_equal(seq.union(1), frames[1].any(axis=0))
    assert np.array_equal(seq[2], frames[2].any(axis=0))
    assert np.array_equal(seq.object_masks(0), frames[0])
    with pytest.raises(IndexError):
        seq.union(3)


@pytest.mark.parametrize("content", ["not json", json.dumps({"version": 99}), json.dumps({"version": 1})])
def test_read_masks_json_rejects_broken_files(tmp_path: Path, content: str) -> None:
    (tmp_path / MASKS_JSON).write_text(content)
    with pytest.raises(OutputError, match=MASKS_JSON):
        read_masks_json(tmp_path)


def test_read_masks_json_missing_file(tmp_path: Path) -> None:
    with pytest.raises(OutputError, match="cannot read masks file"):
        read_masks_json(tmp_path / "nope.json")


def test_empty_rle_is_all_background() -> None:
    assert not decode_rle(empty_rle(6, 9)).any()
    assert decode_rle(empty_rle(6, 9)).shape == (6, 9)


def test_writer_keeps_rle_on_disk_not_in_memory_and_writes_compact_json(tmp_path: Path) -> None:
    """Long videos: each frame's RLE goes to a scratch file at once; masks.json is the same compact JSON as before."""
    rng = np.random.default_rng(3)
    frames = {t: random_masks(rng, 2, 9, 11) for t in range(5)}
    writer = MaskWriter(tmp_path, num_frames=6, size=(11, 9))
    for t in (4, 3, 0, 1, 2):
        writer.write(t, frames[t])
    assert not any(isinstance(v, dict) for v in vars(writer).values())  # no per-frame records held
    assert (tmp_path / f".{MASKS_JSON}.parts").exists()
    writer.close()
    assert not (tmp_path / f".{MASKS_JSON}.parts").exists()
    text = (tmp_path / MASKS_JSON).read_text()
    record = json.loads(text)
    assert text == json.dumps(record, separators=(",", ":"))
    assert record["missing"] == [5] and [f["frame_index"] for f in record["frames"]] == list(range(6))
    assert [len(f["objects"]) for f in record["frames"]] == [2] * 6
    for t, masks in frames.items():
        assert np.array_equal(read_masks_json(tmp_path).object_masks(t), masks)
