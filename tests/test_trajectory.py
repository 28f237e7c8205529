"""The trajectory record across schema versions: version 3 adds turns of any kind and attempts."""

from __future__ import annotations

import json
from pathlib import Path

from revseg.rl.replay import describe
from revseg.trajectory import SCHEMA_VERSION, SUPPORTED_SCHEMA_VERSIONS, Trajectory
from revseg.trajectory_store import TrajectoryStore

V2_RECORD = Path(__file__).parent / "data" / "trajectory-v2.json"
"""A paper-chain record written by revseg at eb6a188 (schema 2), kept as it was written."""


def test_a_saved_version_2_record_still_reads_as_a_paper_run() -> None:
    raw = json.loads(V2_RECORD.read_text())
    assert raw["schema_version"] == "2" and "attempts" not in raw and "program" not in raw["settings"]
    record = Trajectory.load(V2_RECORD)
    assert record.schema_version == "2" and SCHEMA_VERSION == "3" and "2" in SUPPORTED_SCHEMA_VERSIONS
    assert record.settings.program == "paper" and record.settings.prompt_set == "revseg-paper-v1"
    assert record.attempts == [] and all(t.overlay is None and t.attempt is None for t in record.turns)
    assert [t.name for t in record.turns] == ["interpret", "ground"]
    text = describe(record)
    assert "program: paper" in text and "attempt" not in text


def test_a_version_2_record_goes_into_a_store_and_comes_back(tmp_path: Path) -> None:
    store = TrajectoryStore(tmp_path / "store")
    store.append([Trajectory.load(V2_RECORD)])
    (back,) = list(store)
    assert back.run_id == "v2-record" and back.turns[1].response == Trajectory.load(V2_RECORD).turns[1].response
