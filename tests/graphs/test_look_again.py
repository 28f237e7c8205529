"""The look_again program through the compiled graph: zoom, verify, reject and re-select, the budget."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import numpy as np

from revseg.graphs import ChainContext, build_graph, trajectory_from_state
from revseg.settings import ChainSettings
from revseg.testing.fakes import BoxTracker, ScriptedPolicy
from revseg.tools.masks import read_masks_json
from revseg.trajectory import Status, Trajectory

LOOK = "<think>too small</think> <answer> {'action': 'zoom', 'first': 2, 'last': 4} </answer>"
LOOK_AGAIN = "<think>closer</think> <answer> {'action': 'zoom', 'first': 0, 'last': 2} </answer>"
SELECT = "<think>there</think> <answer> [{'frame_idx': 3, 'object description': 'rider in red'}] </answer>"
SELECT_OTHER = "<think>other</think> <answer> [{'frame_idx': 5, 'object description': 'rider in blue'}] </answer>"
BOX = '[{"bbox_2d": [84, 168, 420, 672], "label": "rider"}]'
OTHER_BOX = '[{"bbox_2d": [420, 168, 840, 672], "label": "rider"}]'
ACCEPT = "<think>good</think> <answer> {'verdict': 'accept'} </answer>"
REJECT = "<think>bad</think> <answer> {'verdict': 'reject', 'reason': 'it follows the wrong rider'} </answer>"


def run(
    policy: ScriptedPolicy, clip: Path, out: Path, tracker: BoxTracker | None = None, **settings: Any
) -> tuple[dict[str, Any], Trajectory]:
    context = ChainContext(policy=policy, tracker=tracker, settings=ChainSettings(program="look_again", **settings))
    inputs = {"video_path": str(clip), "query": "who leads?", "out_dir": str(out)}
    state = dict(asyncio.run(build_graph().ainvoke(inputs, context=context)))  # type: ignore[arg-type]
    return state, trajectory_from_state(state, context)


def kinds(state: dict[str, Any]) -> list[str]:
    return [t["name"] for t in state["turns"]]


def test_accepted_first_attempt_takes_three_turns_and_keeps_the_masks(small_clip: Path, tmp_path: Path) -> None:
    policy = ScriptedPolicy([SELECT, BOX, ACCEPT])
    state, record = run(policy, small_clip, tmp_path, BoxTracker())
    assert state["status"] == Status.OK.value and state.get("reason") is None
    assert kinds(state) == ["interpret", "ground", "verify"]
    assert [a.verdict for a in record.attempts] == ["accept"]
    assert record.attempts[0].masks == state["outputs"]["masks_json"]
    assert record.targets[0].frame_index == 5 and record.schema_version == "3"


def test_zoom_resamples_inside_the_window_and_the_keyframe_indexes_the_new_view(
    small_clip: Path, tmp_path: Path
) -> None:
    policy = ScriptedPolicy([LOOK, SELECT, BOX, ACCEPT])
    state, _ = run(policy, small_clip, tmp_path, BoxTracker(), num_frames=8)
    first_view = state["turns"][0]["image_frames"]
    zoom = state["turns"][1]
    assert kinds(state) == ["interpret", "zoom", "ground", "verify"]
    assert state["turns"][0]["parsed"]["window"] == [2, 4]
    assert zoom["image_frames"][0] == first_view[2] and zoom["image_frames"][-1] == first_view[4]
    assert state["targets"][0]["frame_index"] == zoom["image_frames"][3]
    # the zoom turn continues the conversation: turn 1, its answer, then the new frames
    zoom_call = policy.calls[1]
    assert [m.role for m in zoom_call] == ["user", "assistant", "user"]
    assert zoom_call[1].text == LOOK and "between frames 2 and 4" in zoom_call[2].text
    assert len(zoom_call[2].parts) == len(zoom["image_frames"]) + 1


def test_verify_sees_the_mask_drawn_in_red_on_spread_frames_and_the_keyframe(small_clip: Path, tmp_path: Path) -> None:
    policy = ScriptedPolicy([SELECT, BOX, ACCEPT])
    state, _ = run(policy, small_clip, tmp_path, BoxTracker(), verify_frames=3)
    verify = state["turns"][-1]
    assert verify["image_frames"] == [0, 12, 23, 5] and verify["overlay"] == state["outputs"]["masks_json"]
    images = [p.image for p in policy.calls[2][-1].parts[:-1]]  # type: ignore[union-attr]
    assert len(images) == 4 and all(i.size == (448, 448) for i in images)
    pixels = np.asarray(images[-1]).astype(int)
    inside, outside = pixels[150, 150], pixels[400, 400]  # box (32, 36)-(160, 144) of 320x180, at 448x448
    assert inside[0] - inside[1] > outside[0] - outside[1] + 50  # tinted red inside the mask only
    assert "'rider in red' drawn in red on 3 frames" in policy.calls[2][-1].text


def test_a_rejection_reselects_another_keyframe_and_keeps_the_rejected_attempt(
    small_clip: Path, tmp_path: Path
) -> None:
    tracker = BoxTracker()
    policy = ScriptedPolicy([SELECT, BOX, REJECT, SELECT_OTHER, OTHER_BOX, ACCEPT])
    state, record = run(policy, small_clip, tmp_path, tracker)
    assert kinds(state) == ["interpret", "ground", "verify", "reselect", "ground", "verify"]
    assert state["status"] == Status.OK.value
    assert [a.verdict for a in record.attempts] == ["reject", "accept"]
    rejected = record.attempts[0]
    assert rejected.why == "it follows the wrong rider" and rejected.targets[0].frame_index == 5
    assert rejected.masks is not None and "masks_attempt0" in rejected.masks
    assert read_masks_json(rejected.masks).union(0)[36:144, 32:160].all()  # the rejected masks survive
    assert record.turns[2].overlay == rejected.masks  # its verify turn points where they went
    assert state["outputs"]["masks_json"] == str(tmp_path / "masks" / "masks.json")
    assert [call[0] for call in tracker.calls] == [5, 8]
    assert "(not frame 3)" in policy.calls[3][-1].text and "the wrong rider" in policy.calls[3][-1].text
    assert [t.attempt for t in record.turns] == [None, 0, 0, 1, 1, 1]


def test_reselecting_the_rejected_keyframe_ends_with_the_rejected_masks(small_clip: Path, tmp_path: Path) -> None:
    policy = ScriptedPolicy([SELECT, BOX, REJECT, SELECT])
    state, record = run(policy, small_clip, tmp_path, BoxTracker())
    assert kinds(state) == ["interpret", "ground", "verify", "reselect"]
    assert state["status"] == Status.OK.value
    assert "frame_idx 3 was rejected" in state["reason"] and "masks are kept" in state["reason"]
    assert state["outputs"]["masks_json"] == record.attempts[0].masks


def test_a_failed_regrounding_keeps_the_rejected_attempt_and_its_targets(small_clip: Path, tmp_path: Path) -> None:
    tracker = BoxTracker()
    state, record = run(ScriptedPolicy([SELECT, BOX, REJECT, SELECT_OTHER, "no box"]), small_clip, tmp_path, tracker)
    assert kinds(state) == ["interpret", "ground", "verify", "reselect", "ground"]
    assert state["status"] == Status.OK.value and "the rejected attempt's masks are kept" in state["reason"]
    assert record.targets == record.attempts[0].targets and len(tracker.calls) == 1
    assert state["outputs"]["masks_json"] == record.attempts[0].masks


def test_the_budget_is_enforced_by_the_graph_not_the_model(small_clip: Path, tmp_path: Path) -> None:
    policy = ScriptedPolicy([LOOK, LOOK_AGAIN, LOOK_AGAIN, SELECT, BOX])
    state, _ = run(policy, small_clip, tmp_path, BoxTracker(), max_turns=3)
    assert kinds(state) == ["interpret", "zoom"]
    assert state["status"] == Status.FAILED_SELECT_FRAMES.value and "budget of 3 turns" in state["reason"]
    rejected = ScriptedPolicy([SELECT, BOX, REJECT, SELECT_OTHER])
    state, _ = run(rejected, small_clip, tmp_path / "b", BoxTracker(), max_turns=4)
    assert kinds(state) == ["interpret", "ground", "verify"]
    assert "no room to re-select" in state["reason"] and state["status"] == Status.OK.value
    unverified = ScriptedPolicy([SELECT, BOX])
    state, _ = run(unverified, small_clip, tmp_path / "c", BoxTracker(), max_turns=2)
    assert kinds(state) == ["interpret", "ground"] and state["status"] == Status.OK.value


def test_an_unreadable_verdict_leaves_the_masks_unverified(small_clip: Path, tmp_path: Path) -> None:
    state, record = run(ScriptedPolicy([SELECT, BOX, "looks fine to me"]), small_clip, tmp_path, BoxTracker())
    assert state["status"] == Status.OK.value and "unverified" in state["reason"]
    assert record.attempts[0].verdict is None and record.turns[-1].parse_ok is False


def test_failures_are_outcomes_with_a_status(small_clip: Path, tmp_path: Path) -> None:
    state, _ = run(ScriptedPolicy(["no idea"]), small_clip, tmp_path / "a", BoxTracker())
    assert state["status"] == Status.FAILED_SELECT_FRAMES.value
    state, _ = run(ScriptedPolicy([LOOK, _error()]), small_clip, tmp_path / "b")
    assert state["status"] == Status.POLICY_ERROR.value and kinds(state) == ["interpret", "zoom"]
    state, _ = run(ScriptedPolicy([SELECT, BOX, _error()]), small_clip, tmp_path / "c", BoxTracker())
    assert state["status"] == Status.POLICY_ERROR.value and kinds(state) == ["interpret", "ground", "verify"]
    state, _ = run(ScriptedPolicy(["<answer>[]</answer>"]), small_clip, tmp_path / "d", BoxTracker())
    assert state["status"] == Status.NO_TARGET.value and kinds(state) == ["interpret"]


def test_without_a_tracker_the_program_stops_after_ground(small_clip: Path, tmp_path: Path) -> None:
    state, _ = run(ScriptedPolicy([LOOK, SELECT, BOX]), small_clip, tmp_path)
    assert kinds(state) == ["interpret", "zoom", "ground"] and state["status"] == Status.OK.value


def test_the_paper_program_is_untouched_by_the_look_again_nodes(small_clip: Path, tmp_path: Path) -> None:
    policy = ScriptedPolicy([SELECT, BOX, ACCEPT])
    context = ChainContext(policy=policy, tracker=BoxTracker())
    inputs = {"video_path": str(small_clip), "query": "who leads?", "out_dir": str(tmp_path)}
    state = dict(asyncio.run(build_graph().ainvoke(inputs, context=context)))  # type: ignore[arg-type]
    assert kinds(state) == ["interpret", "ground"] and "attempts" not in state and "action" not in state


def _error() -> Exception:
    from revseg.errors import PolicyError

    return PolicyError("server down")


def test_the_openai_policy_runs_the_program_against_the_local_chat_server(small_clip: Path, tmp_path: Path) -> None:
    from revseg.policies.openai import OpenAIPolicy
    from revseg.testing.chat_server import ChatServerLog, chat_server, count_images

    script = [LOOK, SELECT, BOX, REJECT, SELECT_OTHER, OTHER_BOX, ACCEPT]
    log = ChatServerLog()
    with chat_server(lambda request: script[len(log.requests) - 1], log) as url:
        policy = OpenAIPolicy("qwen2.5-vl", base_url=url)
        state, record = run(policy, small_clip, tmp_path, BoxTracker(), num_frames=8, verify_frames=2)  # type: ignore[arg-type]
    assert kinds(state) == ["interpret", "zoom", "ground", "verify", "reselect", "ground", "verify"]
    assert [a.verdict for a in record.attempts] == ["reject", "accept"]
    assert all(t.token_ids and t.logprobs and t.token_source == "generated" for t in record.turns)
    last_user = [[m for m in r["messages"] if m["role"] == "user"][-1] for r in log.requests]
    assert [count_images(m) for m in last_user] == [8, len(record.turns[1].image_frames), 1, 3, 0, 1, 3]
    assert [len(r["messages"]) for r in log.requests] == [1, 3, 5, 7, 9, 11, 13]  # one growing conversation


def test_the_hf_policy_runs_the_program_and_its_answer_is_an_outcome(
    tiny_qwen25_dir: Path, small_clip: Path, tmp_path: Path
) -> None:
    from revseg.policies.hf import HFPolicy
    from revseg.settings import SamplingParams

    policy = HFPolicy.from_spec(str(tiny_qwen25_dir), device="cpu")
    context = ChainContext(
        policy=policy,
        tracker=BoxTracker(),
        settings=ChainSettings(program="look_again", num_frames=4, frame_size=(112, 112), keyframe_size=(224, 224)),
        sampling=SamplingParams(temperature=1.0, max_new_tokens=16, seed=0),
    )
    inputs = {"video_path": str(small_clip), "query": "who leads?", "out_dir": str(tmp_path)}
    state = dict(asyncio.run(build_graph().ainvoke(inputs, context=context)))  # type: ignore[arg-type]
    record = trajectory_from_state(state, context)
    assert record.status in set(Status) and record.turns[0].token_source == "generated"
    assert record.turns[0].parse_ok is False and "turn 1 (interpret)" in (record.reason or "")  # random weights


def test_the_served_graph_runs_the_program_named_in_its_json_context(small_clip: Path, tmp_path: Path) -> None:
    from revseg.graphs.serve import graph
    from revseg.testing.chat_server import ChatServerLog, chat_server

    script = [LOOK, SELECT, BOX]
    log = ChatServerLog()
    inputs = {"video_path": str(small_clip), "query": "who leads?", "out_dir": str(tmp_path)}
    with chat_server(lambda request: script[len(log.requests) - 1], log) as url:
        context = {"policy": "openai:served", "tracker": "none", "base_url": url, "program": "look_again"}
        state = asyncio.run(graph.ainvoke(inputs, context=context))  # type: ignore[arg-type]
    assert kinds(state) == ["interpret", "zoom", "ground"] and state["status"] == Status.OK.value


def test_a_rejected_frame_stays_excluded_after_zooming_in_around_it(small_clip: Path, tmp_path: Path) -> None:
    from revseg.graphs.looks import rejected_in_view

    attempts = [
        {"verdict": "reject", "targets": [{"frame_index": 5}]},
        {"verdict": "accept", "targets": [{"frame_index": 8}]},
    ]
    assert rejected_in_view(attempts, [0, 3, 5, 8]) == [2]
    assert rejected_in_view(attempts, [4, 5, 5, 6]) == [1, 2] and rejected_in_view(attempts, [6, 7]) == []
    zoom_to_it = "<think>closer</think> <answer> {'action': 'zoom', 'first': 3, 'last': 4} </answer>"
    pick_it = "<think>same</think> <answer> [{'frame_idx': 0, 'object description': 'rider in red'}] </answer>"
    policy = ScriptedPolicy([SELECT, BOX, REJECT, zoom_to_it, pick_it])
    state, _ = run(policy, small_clip, tmp_path, BoxTracker())
    assert kinds(state) == ["interpret", "ground", "verify", "reselect", "zoom"]
    assert state["turns"][-1]["image_frames"][0] == 5 and "frame_idx 0 was rejected" in state["reason"]


def test_each_target_needs_its_own_grounding_turn_within_the_budget(small_clip: Path, tmp_path: Path) -> None:
    two = (
        "<think>both</think> <answer> [{'frame_idx': 3, 'object description': 'rider in red'}, "
        "{'frame_idx': 5, 'object description': 'rider in blue'}] </answer>"
    )
    state, _ = run(ScriptedPolicy([two, BOX, BOX]), small_clip, tmp_path / "a", BoxTracker(), max_turns=2)
    assert kinds(state) == ["interpret"] and "ground the 2 target(s)" in state["reason"]
    state, _ = run(ScriptedPolicy([two, BOX, OTHER_BOX]), small_clip, tmp_path / "b", BoxTracker(), max_turns=3)
    assert kinds(state) == ["interpret", "ground", "ground"] and state["status"] == Status.OK.value


def test_stage_times_add_up_over_every_attempt(small_clip: Path, tmp_path: Path) -> None:
    """Tracking twice (a rejection) and grounding twice count both times, not only the last (cost per run)."""

    class SlowTracker(BoxTracker):
        def track(self, *args: Any, **kwargs: Any) -> Any:
            import time

            time.sleep(0.3)
            return super().track(*args, **kwargs)

    policy = ScriptedPolicy([SELECT, BOX, REJECT, SELECT_OTHER, OTHER_BOX, ACCEPT])
    state, record = run(policy, small_clip, tmp_path, SlowTracker())
    assert kinds(state) == ["interpret", "ground", "verify", "reselect", "ground", "verify"]
    assert record.timings["segment"] >= 0.6  # two tracking passes of at least 0.3 s each
    grounds = [t.duration_s for t in record.turns if t.name == "ground"]
    assert record.timings["ground"] >= sum(grounds) - 1e-9
