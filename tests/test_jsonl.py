"""The one append-only JSON Lines log under the trajectory store and both results files."""

from __future__ import annotations

from pathlib import Path

from revseg.jsonl import AppendLog, SkippedLine


def test_lines_append_whole_and_read_back_with_their_numbers(tmp_path: Path) -> None:
    log = AppendLog(tmp_path / "deep" / "log.jsonl", fsync=False)
    log.append_json({"id": "a"})
    log.append(['{"id":"b"}', '{"id":"c"}'])
    assert list(log.read()) == [(1, {"id": "a"}), (2, {"id": "b"}), (3, {"id": "c"})]


def test_a_torn_tail_is_reported_then_cut_off_by_the_next_append(tmp_path: Path) -> None:
    log = AppendLog(tmp_path / "log.jsonl", fsync=False)
    log.append_json({"id": "a"})
    with log.path.open("ab") as f:
        f.write(b'{"id": "tor')  # a writer killed inside write()
    skipped: list[SkippedLine] = []
    assert [r for _, r in log.read(skipped)] == [{"id": "a"}]
    assert [(s.line, s.reason.split(" (")[0]) for s in skipped] == [(2, "torn last line")]
    log.append_json({"id": "b"})
    assert log.path.read_bytes() == b'{"id":"a"}\n{"id":"b"}\n'


def test_garbage_lines_are_skipped_with_a_reason_and_later_lines_still_read(tmp_path: Path) -> None:
    path = tmp_path / "log.jsonl"
    path.write_bytes(b'{"id": 1}\nnot json\n\n{"id": 2}\n')
    skipped: list[SkippedLine] = []
    assert [r for _, r in AppendLog(path).read(skipped)] == [{"id": 1}, {"id": 2}]
    assert [(s.line, s.reason.startswith("not JSON")) for s in skipped] == [(2, True)]


def test_repair_drops_only_the_torn_bytes(tmp_path: Path) -> None:
    path = tmp_path / "log.jsonl"
    path.write_bytes(b'{"id": 1}\n{"id"')
    assert AppendLog(path).repair() == len(b'{"id"')
    assert path.read_bytes() == b'{"id": 1}\n'
    assert AppendLog(tmp_path / "missing.jsonl").repair() == 0
