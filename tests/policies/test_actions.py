"""The look_again program's answers: keyframe-or-zoom and verify verdicts, parsed strictly but forgivingly."""

from __future__ import annotations

import pytest

from revseg.policies.actions import look_action_from_call, parse_look_answer, parse_verdict, verdict_from_call

CANONICAL_ZOOM = "<think>too small</think> <answer> {'action': 'zoom', 'first': 3, 'last': 6} </answer>"
CANONICAL_SELECT = "<think>there</think> <answer> [{'frame_idx': 7, 'object description': 'the dog'}] </answer>"


def test_the_prompted_zoom_answer_parses_strictly_to_its_window() -> None:
    answer = parse_look_answer(CANONICAL_ZOOM, 16)
    assert (answer.ok, answer.action, answer.window, answer.strict) == (True, "zoom", (3, 6), True)
    assert answer.think == "too small"
    assert answer.to_dict()["window"] == [3, 6]


@pytest.mark.parametrize(
    "text",
    [
        "zoom(3, 6)",
        "Let me look closer: zoom(first=3, last=6).",
        '<answer>{"tool": "zoom", "start": 3, "end": 6}</answer>',
        '<answer>```json\n{"action": "Zoom", "window": [3, 6]}\n```</answer>',
        "<think>a</think><answer>{'action': 'zoom', 'first': '3', 'last': 6.0}</answer>",
    ],
)
def test_zoom_variants_parse_to_the_same_window_without_format_credit(text: str) -> None:
    answer = parse_look_answer(text, 16)
    assert (answer.ok, answer.action, answer.window, answer.strict) == (True, "zoom", (3, 6), False)


@pytest.mark.parametrize(
    ("text", "reason"),
    [
        ("<answer>{'action': 'zoom', 'first': 6, 'last': 3}</answer>", "first must be less than last"),
        ("<answer>{'action': 'zoom', 'first': 3, 'last': 3}</answer>", "is empty"),
        ("<answer>{'action': 'zoom', 'first': 3, 'last': 16}</answer>", "out of range 0-15"),
        ("<answer>{'action': 'zoom', 'first': 3}</answer>", "needs 'first' and 'last'"),
        ("<answer>{'action': 'zoom', 'first': 'early', 'last': 5}</answer>", "zoom first"),
        ("zoom(-1, 4)", "out of range"),
    ],
)
def test_an_invalid_zoom_fails_with_a_reason_instead_of_raising(text: str, reason: str) -> None:
    answer = parse_look_answer(text, 16)
    assert not answer.ok and answer.action is None
    assert answer.reason is not None and reason in answer.reason


def test_a_keyframe_answer_reads_exactly_as_the_paper_parser_reads_it() -> None:
    answer = parse_look_answer(CANONICAL_SELECT, 16)
    assert (answer.ok, answer.action, answer.strict) == (True, "select", True)
    assert [(o.sample_idx, o.description) for o in answer.objects] == [(7, "the dog")]
    assert parse_look_answer("<answer>[]</answer>", 16).no_target


def test_a_zoom_mentioned_in_prose_does_not_override_a_keyframe_answer() -> None:
    text = "I could zoom(1, 2) but no need. <answer>[{'frame_idx': 4, 'object description': 'cat'}]</answer>"
    answer = parse_look_answer(text, 16)
    assert answer.action == "select" and answer.objects[0].sample_idx == 4


def test_a_rejected_keyframe_is_refused_on_reselect() -> None:
    answer = parse_look_answer(CANONICAL_SELECT, 16, excluded={7})
    assert not answer.ok
    assert answer.reason is not None and "frame_idx 7 was rejected" in answer.reason
    assert parse_look_answer(CANONICAL_SELECT, 16, excluded={3}).ok


def test_garbage_is_a_failed_look_answer_and_never_an_exception() -> None:
    for text in ["", "no idea", "<answer>{'action': 'pan'}</answer>", "[[[[", None]:
        assert not parse_look_answer(text, 16).ok  # type: ignore[arg-type]


def test_native_tool_calls_parse_to_the_same_actions_as_text() -> None:
    zoom = look_action_from_call("zoom", {"first": 3, "last": 6}, 16)
    assert (zoom.action, zoom.window, zoom.strict) == ("zoom", (3, 6), True)
    select = look_action_from_call("select_keyframe", {"frame_idx": 7, "object description": "the dog"}, 16)
    assert select.action == "select" and select.objects == parse_look_answer(CANONICAL_SELECT, 16).objects
    assert not look_action_from_call("pan", {}, 16).ok
    assert verdict_from_call({"verdict": "reject", "reason": "wrong dog"}).to_dict()["verdict"] == "reject"


@pytest.mark.parametrize(
    ("text", "accept", "why", "strict"),
    [
        ("<think>fine</think> <answer> {'verdict': 'accept'} </answer>", True, None, True),
        ("<think>no</think> <answer> {'verdict': 'reject', 'reason': 'the cat'} </answer>", False, "the cat", True),
        ('<answer>{"decision": "Accepted"}</answer>', True, None, False),
        ('<answer>[{"verdict": false, "why": "drifts"}]</answer>', False, "drifts", False),
        ("accept", True, None, False),
        ("Reject: it follows the other dog.", False, "it follows the other dog", False),
    ],
)
def test_verdict_variants(text: str, accept: bool, why: str | None, strict: bool) -> None:
    verdict = parse_verdict(text)
    assert (verdict.ok, verdict.accept, verdict.why, verdict.strict) == (True, accept, why, strict)


@pytest.mark.parametrize("text", ["maybe", "<answer>{'verdict': 'unsure'}</answer>", "", "{'reason': 'x'}"])
def test_an_unreadable_verdict_fails_with_a_reason(text: str) -> None:
    verdict = parse_verdict(text)
    assert not verdict.ok and verdict.accept is None and verdict.reason
