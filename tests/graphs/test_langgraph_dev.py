"""`langgraph dev` serves the graphs of langgraph.json: a run streams its steps, a review pauses and resumes.

The real LangGraph API server (in-memory runtime) runs in a subprocess on loopback; the
policy is the local chat server, the tracker none. Skipped where langgraph-cli[inmem]
is not installed. Every test runs twice: with the server's own persistence, and with our
PostgreSQL checkpointer, which langgraph-api 0.16 honours through langgraph.json's
``checkpointer.path`` (``revseg.agents.revseg_agent.served_checkpointer``); there the
checkpoints must land in the database.
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from revseg.testing.chat_server import ChatServerLog, chat_server, paper_responder

REPO = Path(__file__).resolve().parents[2]
CLI = Path(sys.executable).parent / "langgraph"


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def _config(work: Path, checkpointer: str | None = None) -> Path:
    """Our langgraph.json with its paths made absolute (`langgraph dev` resolves them against its cwd)."""
    config = json.loads((REPO / "langgraph.json").read_text())
    config["dependencies"] = [str(REPO / d) for d in config["dependencies"]]
    config["graphs"] = {name: str(REPO / target) for name, target in config["graphs"].items()}
    if checkpointer is not None:
        config["checkpointer"] = {"path": checkpointer}
    path = work / "langgraph.json"
    path.write_text(json.dumps(config))
    return path


SERVED_CHECKPOINTER = "revseg.agents.revseg_agent.served_checkpointer"


@dataclass
class Served:
    """The SDK client of a running `langgraph dev`, the chat server's log, and the checkpointer's URL if ours."""

    client: Any
    log: ChatServerLog
    postgres: str | None = None


@pytest.fixture(scope="module", params=["server-default", pytest.param("postgres", marks=pytest.mark.postgres)])
def served(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Served]:
    """A `langgraph dev` server over our langgraph.json, its policy the local chat server; an SDK client."""
    pytest.importorskip("langgraph_api", reason="needs langgraph-cli[inmem] (the dev extra installs it)")
    sdk = pytest.importorskip("langgraph_sdk")
    if not CLI.exists():
        pytest.skip("the langgraph command is not installed")
    postgres = request.getfixturevalue("postgres_url") if request.param == "postgres" else None
    log = ChatServerLog()
    work = tmp_path_factory.mktemp("langgraph-dev")  # the server keeps its state in .langgraph_api/ of its cwd
    output = (work / "server.log").open("w")
    with chat_server(paper_responder(keyframe=3, box=(84, 168, 420, 672)), log) as url:
        port = _free_port()
        env = {
            **os.environ,
            "REVSEG_POLICY": "openai:served",
            "REVSEG_TRACKER": "none",
            "OPENAI_BASE_URL": url,
            "LANGSMITH_TRACING": "false",
            "LANGGRAPH_NO_ANALYTICS": "1",
            **({"REVSEG_CHECKPOINTER": postgres} if postgres else {}),
        }
        config = _config(work, SERVED_CHECKPOINTER if postgres else None)
        args = [str(CLI), "dev", "--no-browser", "--no-reload", "--port", str(port), "--config", str(config)]
        process = subprocess.Popen(args, cwd=work, env=env, stdout=output, stderr=output)
        try:
            client = sdk.get_sync_client(url=f"http://127.0.0.1:{port}")
            deadline = time.monotonic() + 90
            while True:
                try:
                    client.assistants.search()
                    break
                except Exception:  # noqa: BLE001 - not up yet
                    if process.poll() is not None or time.monotonic() > deadline:
                        pytest.fail(f"langgraph dev did not start:\n{(work / 'server.log').read_text()[-3000:]}")
                    time.sleep(0.5)
            yield Served(client, log, postgres)
        finally:
            process.terminate()
            process.wait(timeout=30)
            output.close()
    shutil.rmtree(work, ignore_errors=True)


def checkpoints_in(url: str, thread_id: str) -> int:
    """How many checkpoints of a thread the PostgreSQL database holds."""
    import psycopg

    with psycopg.connect(url) as connection:
        row = connection.execute("SELECT count(*) FROM checkpoints WHERE thread_id = %s", (thread_id,)).fetchone()
    return int(row[0]) if row else 0


def test_a_served_run_streams_each_reasoning_step(served: Served, small_clip: Path, tmp_path: Path) -> None:
    client = served.client
    thread = client.threads.create()
    inputs = {"video_path": str(small_clip), "query": "the rider", "out_dir": str(tmp_path)}
    stream = client.runs.stream(
        thread["thread_id"], "revseg", input=inputs, context={"num_frames": 8}, stream_mode="updates"
    )
    parts = list(stream)
    steps = [node for part in parts if part.event == "updates" for node in part.data]
    assert steps == ["sample", "interpret", "select_frames", "ground", "segment"]
    state = client.threads.get_state(thread["thread_id"])["values"]
    assert state["status"] == "ok" and len(state["sampled_indices"]) == 8
    assert state["targets"][0]["box"] == pytest.approx([32.0, 36.0, 160.0, 144.0])
    if served.postgres:  # the server kept its checkpoints in our database, one per step and more
        assert checkpoints_in(served.postgres, thread["thread_id"]) >= len(steps)


def test_a_served_review_pauses_and_a_correction_resumes_the_run(
    served: Served, small_clip: Path, tmp_path: Path
) -> None:
    client, log = served.client, served.log
    thread = client.threads.create()["thread_id"]
    inputs = {"video_path": str(small_clip), "query": "the rider", "out_dir": str(tmp_path)}
    client.runs.wait(thread, "revseg_review", input=inputs)
    paused = client.threads.get_state(thread)
    (request,) = [i["value"] for task in paused["tasks"] for i in task["interrupts"]]
    assert request["stage"] == "keyframe" and paused["next"] == ["review_keyframe"]
    requests_before = len(log.requests)
    client.runs.wait(thread, "revseg_review", command={"resume": {"frame_index": 7}})
    assert client.threads.get_state(thread)["next"] == ["review_box"]
    client.runs.wait(thread, "revseg_review", command={"resume": {"box": [10, 20, 100, 120]}})
    state = client.threads.get_state(thread)["values"]
    assert state["status"] == "ok"
    assert state["targets"][0]["frame_index"] == 7 and state["targets"][0]["box"] == [10, 20, 100, 120]
    assert len(log.requests) == requests_before + 1  # only turn 2 ran after the first pause
    assert [r["stage"] for r in state["reviews"]] == ["keyframe", "box"]
