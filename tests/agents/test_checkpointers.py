"""One checkpointer conformance suite, run against SQLite and a real PostgreSQL server.

A run killed with SIGKILL mid-chain resumes by thread id with nothing redone; a human review
paused in one process is finished from others; two agents on different threads share one database.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
from pathlib import Path

import pytest

from revseg import ReVSegAgent, Status
from revseg.testing.fakes import ScriptedPolicy
from tests.agents.review_worker import TURN1, TURN2
from tests.agents.test_review import ROOT, worker


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def database(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    if request.param == "sqlite":
        return str(tmp_path / "checkpoints.sqlite")
    url: str = request.getfixturevalue("postgres_url")
    return url


@pytest.mark.slow
def test_a_run_killed_mid_chain_resumes_by_thread_id_with_nothing_redone(
    database: str, small_clip: Path, tmp_path: Path
) -> None:
    forget_job(database)
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    hanging = subprocess.Popen(
        [sys.executable, "-m", "tests.agents.review_worker", "hang", database, str(small_clip), str(tmp_path / "o")],
        stdout=subprocess.PIPE, text=True, cwd=ROOT, env=env,
    )  # fmt: skip
    assert hanging.stdout is not None
    assert hanging.stdout.readline().strip() == "GROUNDING"  # turn 1 answered and checkpointed, turn 2 in flight
    hanging.send_signal(signal.SIGKILL)
    hanging.wait(timeout=60)
    resumed = worker("continue", database, json.dumps([TURN2]))
    assert resumed["status"] == "ok" and resumed["has_masks"]
    assert resumed["policy_calls"] == 1  # only turn 2: turn 1 came from the checkpoint
    assert resumed["turns"] == ["interpret", "ground"] and resumed["targets"][0]["frame_index"] == 5


@pytest.mark.slow
def test_a_review_paused_in_one_process_is_finished_from_another(
    database: str, small_clip: Path, tmp_path: Path
) -> None:
    forget_job(database)
    first = worker("start", database, str(small_clip), str(tmp_path / "out"))
    assert first["status"] == "pending_review" and first["review"]["stage"] == "keyframe"
    second = worker("resume", database, json.dumps({"frame_index": 9}), json.dumps([TURN2]))
    assert second["status"] == "pending_review" and second["policy_calls"] == 1
    third = worker("resume", database, json.dumps({"box": [10, 20, 100, 120]}), "[]")
    assert third["status"] == "ok" and third["policy_calls"] == 0 and third["has_masks"]


def forget_job(database: str) -> None:
    """The workers use thread "job-1": clear it from the session's shared Postgres database."""
    if not database.startswith("postgresql://"):
        return  # a fresh SQLite file per test
    import psycopg

    with psycopg.connect(database, autocommit=True) as conn:
        row = conn.execute("SELECT to_regclass('checkpoints')").fetchone()
        if row is not None and row[0] is not None:
            for table in ("checkpoints", "checkpoint_blobs", "checkpoint_writes"):
                conn.execute(f"DELETE FROM {table} WHERE thread_id = 'job-1'")


@pytest.mark.slow
def test_two_agents_on_different_threads_share_one_database(database: str, small_clip: Path, tmp_path: Path) -> None:
    results: dict[str, Status] = {}
    errors: list[BaseException] = []

    def run(name: str) -> None:
        try:
            agent = ReVSegAgent(ScriptedPolicy([TURN1, TURN2], delay_s=0.05), None, checkpointer=database,
                                overlay=False, report=False)  # fmt: skip
            thread = f"{tmp_path.name}-{name}"
            results[name] = agent.run(small_clip, f"query {name}", tmp_path / name, thread_id=thread).status
            assert agent.resume(thread).keyframe_index == 5  # each thread reads back its own run
        except BaseException as exc:  # noqa: BLE001  # surfaced below, in the main thread
            errors.append(exc)

    threads = [threading.Thread(target=run, args=(name,)) for name in ("a", "b")]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=300)
    assert not errors, errors
    assert results == {"a": Status.OK, "b": Status.OK}
