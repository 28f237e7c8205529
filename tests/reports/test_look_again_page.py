"""The report page and the replay text of a look_again run: every turn, and a timeline of looks and verdicts."""

from __future__ import annotations

import asyncio
from pathlib import Path

from revseg.graphs import ChainContext, build_graph, trajectory_from_state
from revseg.reports.page import write_report
from revseg.rl.replay import describe
from revseg.settings import ChainSettings
from revseg.testing.fakes import BoxTracker, ScriptedPolicy
from revseg.trajectory import Trajectory
from tests.reports.test_page import Page

ZOOM = "<think>tiny</think> <answer> {'action': 'zoom', 'first': 1, 'last': 2} </answer>"
SELECT = "<think>there</think> <answer> [{'frame_idx': 1, 'object description': 'rider in red'}] </answer>"
OTHER = "<think>then</think> <answer> [{'frame_idx': 2, 'object description': 'rider in blue'}] </answer>"
BOX = '[{"bbox_2d": [84, 168, 420, 672], "label": "rider"}]'
REJECT = "<think>bad</think> <answer> {'verdict': 'reject', 'reason': 'it drifts to the car'} </answer>"
ACCEPT = "<think>good</think> <answer> {'verdict': 'accept'} </answer>"


def look_again_record(clip: Path, out: Path) -> Trajectory:
    context = ChainContext(
        policy=ScriptedPolicy([ZOOM, SELECT, BOX, REJECT, OTHER, BOX, ACCEPT]),
        tracker=BoxTracker(),
        settings=ChainSettings(program="look_again", num_frames=4, verify_frames=2),
    )
    inputs = {"video_path": str(clip), "query": "who leads?", "out_dir": str(out)}
    state = asyncio.run(build_graph().ainvoke(inputs, context=context))  # type: ignore[arg-type]
    return trajectory_from_state(dict(state), context)


def test_the_page_shows_every_turn_and_a_timeline_of_zooms_and_verdicts(small_clip: Path, tmp_path: Path) -> None:
    record = look_again_record(small_clip, tmp_path)
    html = write_report(record, tmp_path).read_text()
    page = Page(html)
    turns = [a["data-turn"] for a in page.all("section", "turn")]
    assert turns == ["interpret", "zoom", "ground", "verify", "reselect", "ground", "verify"]
    steps = page.all("li", "step")
    assert [s["data-kind"] for s in steps] == ["interpret", "zoom", "verify", "reselect", "verify"]
    assert [s.get("data-verdict") for s in steps if s["data-kind"] == "verify"] == ["reject", "accept"]
    assert "zoom into frames 1-2 of the view" in html and "reject: it drifts to the car" in html
    zoom_frames = record.turns[1].image_frames
    shown = [int(f["data-frame-index"]) for f in page.all("figure", "frame")]
    for index in [*zoom_frames, *record.turns[3].image_frames]:  # what the zoom and each verify saw
        assert index in shown
    assert all(i["src"].startswith("data:image/jpeg") for i in page.all("img"))  # frames embedded, no network
    assert "masks_attempt0" in html  # the rejected attempt's masks are the ones its verify saw
    # the rejected attempt's ground turn shows its own keyframe, not the final one
    assert 'id="keyframe-1"' in html and f"Video frame {record.attempts[0].targets[0].frame_index} at full" in html


def test_replay_text_lists_each_turn_its_action_and_every_attempt(small_clip: Path, tmp_path: Path) -> None:
    text = describe(look_again_record(small_clip, tmp_path))
    assert "program: look_again" in text
    assert text.count("--- turn") == 7 and "turn 2: zoom" in text and "turn 5: reselect" in text
    assert "action: zoom [1, 2]" in text and "action: reject (it drifts to the car)" in text
    assert "attempt 0: keyframe 10  verdict reject (it drifts to the car)" in text
    assert "attempt 1: keyframe 13  verdict accept" in text and "mask drawn from:" in text
