"""Fingerprints of what a rebuild depends on: the video's bytes and time, the weights, the chat template."""

from __future__ import annotations

import os
from pathlib import Path

from revseg.provenance import model_revision, template_sha256, video_stat


def test_a_video_files_stat_is_its_size_and_modification_time(tmp_path: Path) -> None:
    video = tmp_path / "clip.mp4"
    video.write_bytes(b"x" * 1234)
    os.utime(video, ns=(1, 5_000_000_000))
    assert video_stat(video) == (1234, 5_000_000_000)
    assert video_stat(tmp_path / "missing.mp4") is None


def test_a_frame_folder_changes_when_one_frame_is_rewritten_in_place(tmp_path: Path) -> None:
    folder = tmp_path / "frames"
    folder.mkdir()
    for i in range(3):
        (folder / f"{i:05d}.jpg").write_bytes(b"f" * (10 + i))
        os.utime(folder / f"{i:05d}.jpg", ns=(1, 1_000 + i))
    os.utime(folder, ns=(1, 500))
    assert video_stat(folder) == (10 + 11 + 12, 1_002)
    (folder / "00001.jpg").write_bytes(b"g" * 11)  # same size, new bytes: the folder's own stat does not see it
    os.utime(folder / "00001.jpg", ns=(1, 9_000))
    os.utime(folder, ns=(1, 500))
    assert video_stat(folder) == (33, 9_000)


def test_a_hub_snapshot_is_named_by_its_commit(tmp_path: Path) -> None:
    commit = "0123456789abcdef0123456789abcdef01234567"
    snapshot = tmp_path / "models--org--name" / "snapshots" / commit
    snapshot.mkdir(parents=True)
    (snapshot / "model.safetensors").write_bytes(b"w")
    assert model_revision(snapshot) == f"hub:{commit}"


def test_a_local_folder_is_named_by_its_weights_and_changes_when_they_do(tmp_path: Path) -> None:
    one, two = tmp_path / "one", tmp_path / "two"
    for folder in (one, two):
        folder.mkdir()
        (folder / "config.json").write_text("{}")
        (folder / "model.safetensors").write_bytes(bytes(range(256)) * 20_000)  # 5 MB: head and tail are read
    assert model_revision(one) == model_revision(two) and str(model_revision(one)).startswith("local:")
    weights = bytearray((two / "model.safetensors").read_bytes())
    weights[-3] ^= 1  # one byte near the end: a trained model differs everywhere, this is the least case
    (two / "model.safetensors").write_bytes(bytes(weights))
    assert model_revision(one) != model_revision(two)
    (one / "model.safetensors").unlink()
    assert model_revision(one) is None


def test_chat_templates_hash_by_their_text() -> None:
    assert template_sha256("{{ messages }}") == template_sha256("{{ messages }}") != template_sha256("{{ x }}")
    assert template_sha256(None) is None and template_sha256("") is None
    assert template_sha256({"default": "a", "tool_use": "b"}) == template_sha256({"tool_use": "b", "default": "a"})
