"""Answer parsers: lenient on syntax, strict on validity, and never an exception on model text."""

from __future__ import annotations

import json
import math

import pytest
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from revseg.policies.parsing import (
    MAX_COORDINATE,
    MAX_DESCRIPTION_CHARS,
    MAX_OBJECTS,
    BoxAnswer,
    KeyframeAnswer,
    KeyframeObject,
    RawBox,
    parse_box_answer,
    parse_keyframe_answer,
)

N = 16  # sampled frames, as in the paper


def tagged(answer: str, think: str = "the dog jumps in frame 7") -> str:
    """A turn-1 answer in the exact layout the paper's prompt asks for."""
    return f"<think>{think}</think> <answer>{answer}</answer>"


# --------------------------------------------------------------------------- turn 1: accepted

KEYFRAME_OK = [
    pytest.param(
        tagged('[{"frame_idx": 7, "object description": "the red stone"}]'),
        [(7, "the red stone")],
        True,
        id="canonical-json",
    ),
    pytest.param(
        "<think> reasoning process here </think> <answer> [{'frame_idx': 7, 'object description': "
        "'the red triangular stone on the far left'}] </answer>",
        [(7, "the red triangular stone on the far left")],
        True,
        id="the-prompts-own-single-quoted-example",
    ),
    pytest.param(
        "<think>\nFirst, frame 3 shows it.\n</think>\n<answer>\n[{'frame_idx': 3, 'object description': 'a cat',},]\n"
        "</answer>\n",
        [(3, "a cat")],
        True,
        id="python-literal-trailing-commas-and-newlines",
    ),
    pytest.param(
        tagged('\n```json\n[{"frame_idx": 2, "object description": "the boat"}]\n```\n'),
        [(2, "the boat")],
        True,
        id="one-code-fence-inside-answer",
    ),
    pytest.param(
        tagged('[{"frame_idx": 0, "object description": "a"}, {"frame_idx": 15, "object description": "b"}]'),
        [(0, "a"), (15, "b")],
        True,
        id="multi-object-at-both-ends-of-the-range",
    ),
    pytest.param(
        tagged('[{"frame_idx": 4, "object description": "  the man in a \\"red\\" coat \\n "}]'),
        [(4, 'the man in a "red" coat')],
        True,
        id="escaped-quotes-and-whitespace-stripped",
    ),
    pytest.param(
        tagged('[{"frame_idx": 5, "object description": "左边的白色小狗 🐕"}]'),
        [(5, "左边的白色小狗 🐕")],
        True,
        id="unicode-description",
    ),
    pytest.param(
        tagged('[{"frame_idx": 5, "object description": "x", "confidence": 0.9}]'),
        [(5, "x")],
        True,
        id="extra-keys-ignored",
    ),
    pytest.param(
        'Sure. <think>ok</think> <answer>[{"frame_idx": 1, "object description": "a"}]</answer> Hope this helps!',
        [(1, "a")],
        False,
        id="prose-around-the-tags",
    ),
    pytest.param(
        tagged('{"frame_idx": 6, "object description": "a"}'),
        [(6, "a")],
        False,
        id="single-dict-not-a-list",
    ),
    pytest.param(
        tagged('[{"frame_idx": "7", "object description": "a"}]'),
        [(7, "a")],
        False,
        id="frame-idx-as-string",
    ),
    pytest.param(
        tagged('[{"frame_idx": 7.0, "object description": "a"}]'),
        [(7, "a")],
        False,
        id="frame-idx-as-integral-float",
    ),
    pytest.param(
        tagged('[{"frame_index": 3, "object_description": "a"}]'),
        [(3, "a")],
        False,
        id="key-variants-underscore",
    ),
    pytest.param(tagged('[{"frame": 3, "description": "a"}]'), [(3, "a")], False, id="key-variants-short"),
    pytest.param(tagged('[{"Frame Idx": 3, "Object-Description": "a"}]'), [(3, "a")], False, id="key-variants-case"),
    pytest.param(tagged('[{"keyframe": 3, "desc": "a"}]'), [(3, "a")], False, id="key-variants-keyframe-desc"),
    pytest.param(
        '<think>t</think> <answer>[{"frame_idx": 9, "object description": "the cup"}]',
        [(9, "the cup")],
        False,
        id="missing-close-answer-tag",
    ),
    pytest.param(
        '<answer>[{"frame_idx": 9, "object description": "the cup"}]</answer>',
        [(9, "the cup")],
        False,
        id="no-think-block",
    ),
    pytest.param(
        '<THINK>t</THINK><ANSWER>[{"frame_idx": 9, "object description": "the cup"}]</ANSWER>',
        [(9, "the cup")],
        False,
        id="upper-case-tags",
    ),
    pytest.param(
        '```json\n[{"frame_idx": 8, "object description": "the kite"}]\n```',
        [(8, "the kite")],
        False,
        id="bare-code-fence-no-tags",
    ),
    pytest.param(
        'I compared frames [3, 5, 7] (all blurry) and pick {"frame_idx": 5, "object description": "cat"}.',
        [(5, "cat")],
        False,
        id="unrelated-brackets-in-prose-skipped",
    ),
    pytest.param(
        'Frames [] and {"note": 1} were useless; {"frame_idx": 3, "object description": "cat"}',
        [(3, "cat")],
        False,
        id="empty-list-and-other-dicts-in-prose-skipped",
    ),
    pytest.param(
        'First {"frame_idx": 1, "object description": "a"} and then {"frame_idx": 2, "object description": "b"}',
        [(1, "a"), (2, "b")],
        False,
        id="several-bare-dicts-in-prose",
    ),
    pytest.param(
        "<think>I will answer in <answer> tags with [brackets] {braces}</think>"
        '<answer>[{"frame_idx": 3, "object description": "a"}]</answer>',
        [(3, "a")],
        False,  # two <answer> tags in the text
        id="answer-tag-mentioned-inside-think",
    ),
    pytest.param(
        tagged("[{'frame_idx': 3, 'object description': 'the dog's tail'}]"),
        [(3, "the dog's tail")],
        False,
        id="apostrophe-breaks-single-quotes-salvaged",
    ),
    pytest.param(
        tagged('[{"frame_idx": 3, "object description": "a"}, {"frame_idx": 5, "object descr'),
        [(3, "a")],
        False,
        id="truncated-list-keeps-the-complete-object",
    ),
    pytest.param(
        tagged('[{"frame_idx": 3, "object description": "a"'),
        [(3, "a")],
        False,
        id="unclosed-object-salvaged",
    ),
]


@pytest.mark.parametrize(("text", "objects", "strict"), KEYFRAME_OK)
def test_keyframe_answers_that_parse(text: str, objects: list[tuple[int, str]], strict: bool) -> None:
    result = parse_keyframe_answer(text, N)
    assert result.ok, result.reason
    assert result.reason is None
    assert not result.no_target
    assert [(o.sample_idx, o.description) for o in result.objects] == objects
    assert result.strict is strict


def test_think_and_tag_flags_are_reported() -> None:
    result = parse_keyframe_answer(tagged('[{"frame_idx": 1, "object description": "a"}]', think="  why  "), N)
    assert (result.think, result.has_think, result.has_answer) == ("why", True, True)
    bare = parse_keyframe_answer('[{"frame_idx": 1, "object description": "a"}]', N)
    assert (bare.ok, bare.think, bare.has_think, bare.has_answer, bare.strict) == (True, None, False, False, False)


def test_unclosed_answer_tag_runs_to_the_end_but_is_not_a_strict_tag_pair() -> None:
    result = parse_keyframe_answer("<think>t</think><answer>[]", N)
    assert result.ok and result.no_target
    assert result.has_think and not result.has_answer and not result.strict


def test_long_descriptions_are_truncated() -> None:
    long = "a" * (MAX_DESCRIPTION_CHARS * 3)
    result = parse_keyframe_answer(tagged(json.dumps([{"frame_idx": 1, "object description": long}])), N)
    assert result.ok
    assert len(result.objects[0].description) == MAX_DESCRIPTION_CHARS


def test_a_different_frame_count_moves_the_valid_range() -> None:
    text = tagged('[{"frame_idx": 19, "object description": "a"}]')
    assert parse_keyframe_answer(text, 20).ok
    assert parse_keyframe_answer(text, 16).reason == "frame_idx 19 out of range 0-15"


def test_num_frames_below_one_is_a_caller_bug() -> None:
    with pytest.raises(ValueError, match="num_frames"):
        parse_keyframe_answer("[]", 0)


# --------------------------------------------------------------------------- turn 1: no target

NO_TARGET = [
    pytest.param(tagged("[]"), True, id="empty-list"),
    pytest.param(tagged(" [ ] "), True, id="empty-list-spaced"),
    pytest.param(tagged("none"), False, id="none"),
    pytest.param(tagged("None"), False, id="python-none"),
    pytest.param(tagged("null"), False, id="json-null"),
    pytest.param(tagged("No target."), False, id="no-target-sentence"),
    pytest.param(tagged('"no target found"'), False, id="quoted-no-target"),
    pytest.param(tagged("```json\n[]\n```"), True, id="fenced-empty-list"),
    pytest.param("<think>nothing matches</think>\n<answer>N/A</answer>", False, id="n-a"),
    pytest.param("none", False, id="bare-none-without-tags"),
]


@pytest.mark.parametrize(("text", "strict"), NO_TARGET)
def test_no_target_answers_are_ok_without_objects(text: str, strict: bool) -> None:
    result = parse_keyframe_answer(text, N)
    assert result.ok and result.no_target
    assert result.objects == ()
    assert result.reason is None
    assert result.strict is strict


def test_none_inside_prose_is_not_a_no_target_answer() -> None:
    result = parse_keyframe_answer(tagged("none of the objects match, sorry"), N)
    assert not result.ok and not result.no_target


# --------------------------------------------------------------------------- turn 1: rejected

KEYFRAME_BAD = [
    pytest.param(tagged('[{"frame_idx": 16, "object description": "a"}]'), "frame_idx 16 out of range 0-15", id="16"),
    pytest.param(tagged('[{"frame_idx": 17, "object description": "a"}]'), "frame_idx 17 out of range 0-15", id="17"),
    pytest.param(tagged('[{"frame_idx": -1, "object description": "a"}]'), "frame_idx -1 out of range 0-15", id="neg"),
    pytest.param(tagged('[{"frame_idx": true, "object description": "a"}]'), "frame_idx must be an integer", id="bool"),
    pytest.param(tagged('[{"frame_idx": 7.5, "object description": "a"}]'), "frame_idx must be an integer", id="7.5"),
    pytest.param(tagged('[{"frame_idx": NaN, "object description": "a"}]'), "frame_idx must be an integer", id="nan"),
    pytest.param(tagged('[{"frame_idx": Infinity, "object description": "a"}]'), "must be an integer", id="inf"),
    pytest.param(tagged('[{"frame_idx": "seven", "object description": "a"}]'), "must be an integer", id="word"),
    pytest.param(tagged('[{"frame_idx": null, "object description": "a"}]'), "must be an integer", id="null-idx"),
    pytest.param(tagged('[{"frame_idx": [7], "object description": "a"}]'), "must be an integer", id="list-idx"),
    pytest.param(tagged('[{"frame_idx": 7, "object description": ""}]'), "object description is empty", id="empty"),
    pytest.param(tagged('[{"frame_idx": 7, "object description": " \\n\\t "}]'), "is empty", id="blank"),
    pytest.param(tagged('[{"frame_idx": 7, "object description": 42}]'), "must be a string", id="desc-number"),
    pytest.param(tagged('[{"frame_idx": 7, "object description": null}]'), "must be a string", id="desc-null"),
    pytest.param(tagged('[{"frame_idx": 7}]'), "no object description", id="missing-desc"),
    pytest.param(tagged('[{"object description": "a"}]'), "no frame_idx", id="missing-frame"),
    pytest.param(tagged("[{}]"), "no frame_idx", id="empty-object"),
    pytest.param(tagged("[3, 5]"), "expected an object with frame_idx", id="list-of-ints"),
    pytest.param(tagged('"the dog"'), "answer is str", id="json-string"),
    pytest.param(tagged("7"), "answer is int 7", id="bare-number"),
    pytest.param(tagged("()"), "answer is tuple", id="empty-tuple"),
    pytest.param(
        tagged('[{"frame_idx": 1, "object description": "a"}, {"frame_idx": 99, "object description": "b"}]'),
        "object 1: frame_idx 99 out of range 0-15",
        id="one-invalid-object-fails-all",
    ),
    pytest.param(
        tagged(json.dumps([{"frame_idx": 1, "object description": "a"}] * (MAX_OBJECTS + 1))),
        "too many objects",
        id="too-many-objects",
    ),
    pytest.param(tagged("I think it is the dog in frame seven"), "the <answer> block holds no JSON", id="prose"),
    pytest.param(tagged(""), "the <answer> block holds no JSON", id="empty-answer-block"),
    pytest.param("", "no <answer> block and no JSON found", id="empty-text"),
    pytest.param("The dog, obviously.", "no <answer> block and no JSON found", id="prose-only"),
    pytest.param(
        '<think>[{"frame_idx": 3, "object description": "a"}]</think>',
        "no <answer> block and no JSON found",
        id="json-only-inside-think",
    ),
    pytest.param(tagged('[{"frame_idx": 3, "object description": '), "holds no JSON", id="truncated-object"),
]


@pytest.mark.parametrize(("text", "reason"), KEYFRAME_BAD)
def test_keyframe_answers_that_fail_say_why(text: str, reason: str) -> None:
    result = parse_keyframe_answer(text, N)
    assert not result.ok
    assert result.reason is not None and reason in result.reason
    assert result.objects == () and not result.no_target and not result.strict


def test_non_text_input_is_a_failed_answer_not_an_exception() -> None:
    result = parse_keyframe_answer(None, N)  # type: ignore[arg-type]
    assert not result.ok and result.reason == "answer is not text (got NoneType)"
    assert not parse_box_answer(b"[1, 2, 3, 4]").ok  # type: ignore[arg-type]


def test_keyframe_to_dict_is_json_serialisable_and_complete() -> None:
    result = parse_keyframe_answer(tagged('[{"frame_idx": 7, "object description": "the red stone"}]'), N)
    data = json.loads(json.dumps(result.to_dict(), allow_nan=False))
    assert data == {
        "ok": True,
        "objects": [{"sample_idx": 7, "description": "the red stone"}],
        "no_target": False,
        "think": "the dog jumps in frame 7",
        "has_think": True,
        "has_answer": True,
        "strict": True,
        "reason": None,
    }


# --------------------------------------------------------------------------- turn 2: accepted

BOX_OK = [
    pytest.param(
        '```json\n[\n\t{"bbox_2d": [10, 20, 300, 400], "label": "dog"}\n]\n```',
        [((10, 20, 300, 400), "dog")],
        True,
        id="qwen-native-fenced",
    ),
    pytest.param('[{"bbox_2d": [10, 20, 300, 400], "label": "dog"}]', [((10, 20, 300, 400), "dog")], True, id="list"),
    pytest.param("[{'bbox_2d': [1.5, 2.25, 3, 4]}]", [((1.5, 2.25, 3, 4), None)], True, id="single-quotes-floats"),
    pytest.param('<answer>[{"bbox_2d": [1, 2, 3, 4]}]</answer>', [((1, 2, 3, 4), None)], True, id="answer-tags"),
    pytest.param(
        '<think>the dog is left</think>\n<answer>[{"bbox_2d": [1, 2, 3, 4]}]</answer>',
        [((1, 2, 3, 4), None)],
        True,
        id="think-then-answer",
    ),
    pytest.param('{"bbox_2d": [1, 2, 3, 4], "label": "a"}', [((1, 2, 3, 4), "a")], False, id="single-dict"),
    pytest.param('[{"bbox": [1, 2, 3, 4]}]', [((1, 2, 3, 4), None)], False, id="key-bbox"),
    pytest.param("[1, 2, 3, 4]", [((1, 2, 3, 4), None)], False, id="bare-list"),
    pytest.param("[[1, 2, 3, 4], [5, 6, 7, 8]]", [((1, 2, 3, 4), None), ((5, 6, 7, 8), None)], False, id="bare-lists"),
    pytest.param("The box is (1, 2, 3, 4).", [((1, 2, 3, 4), None)], False, id="tuple-in-prose"),
    pytest.param(
        'Here you go:\n```json\n[{"bbox_2d": [1, 2, 3, 4], "label": "cup"}]\n```\nAnything else?',
        [((1, 2, 3, 4), "cup")],
        False,
        id="prose-around-fence",
    ),
    pytest.param(
        '[{"bbox_2d": [300, 400, 10, 20], "label": "inverted"}]',
        [((300, 400, 10, 20), "inverted")],
        True,
        id="inverted-corners-kept-as-written",
    ),
    pytest.param('[{"bbox_2d": [-5, 0, 1200, 900]}]', [((-5, 0, 1200, 900), None)], True, id="outside-kept"),
    pytest.param(
        '[{"bbox_2d": [1, 2, 3, 4], "label": 7}, {"bbox_2d": [5, 6, 7, 8], "label": " b "}]',
        [((1, 2, 3, 4), None), ((5, 6, 7, 8), "b")],
        True,
        id="two-boxes-non-string-label-dropped",
    ),
    pytest.param(
        '[{"bbox_2d": [1, 2, 3, 4], "label": "the dog\'s}]',
        [((1, 2, 3, 4), None)],
        False,
        id="truncated-label-box-still-found",
    ),
]


@pytest.mark.parametrize(("text", "boxes", "strict"), BOX_OK)
def test_box_answers_that_parse(text: str, boxes: list[tuple[tuple[float, ...], str | None]], strict: bool) -> None:
    result = parse_box_answer(text)
    assert result.ok, result.reason
    assert result.reason is None
    assert [(b.coords, b.label) for b in result.boxes] == boxes
    assert all(isinstance(c, float) for b in result.boxes for c in b.coords)
    assert result.first == result.boxes[0]
    assert result.strict is strict


BOX_BAD = [
    pytest.param('[{"bbox_2d": [1, 2, 3, NaN]}]', "coordinate 3 is not finite", id="nan"),
    pytest.param('[{"bbox_2d": [1, 2, Infinity, 4]}]', "coordinate 2 is not finite", id="inf"),
    pytest.param('[{"bbox_2d": [1, 2, 3, 1e9]}]', "coordinate 3 is absurdly large", id="1e9"),
    pytest.param('[{"bbox_2d": [-2e6, 2, 3, 4]}]', "coordinate 0 is absurdly large", id="minus-2e6"),
    pytest.param('[{"bbox_2d": [1, 2, 3, ' + "9" * 400 + "]}]", "coordinate 3 is absurdly large", id="huge-int"),
    pytest.param('[{"bbox_2d": [1, 2, "3", 4]}]', "coordinate 2 is not a number", id="string-coord"),
    pytest.param('[{"bbox_2d": [1, true, 3, 4]}]', "coordinate 1 is not a number", id="bool-coord"),
    pytest.param('[{"bbox_2d": [1, 2, 3]}]', "box must have 4 coordinates, got 3", id="three"),
    pytest.param('[{"bbox_2d": [1, 2, 3, 4, 5]}]', "box must have 4 coordinates, got 5", id="five"),
    pytest.param('[{"bbox_2d": [[1, 2], [3, 4]]}]', "box must have 4 coordinates, got 2", id="corner-pairs"),
    pytest.param('[{"bbox_2d": "1, 2, 3, 4"}]', "box must be a list of 4 numbers", id="string-box"),
    pytest.param('[{"point_2d": [1, 2]}]', "no bbox_2d", id="point-not-box"),
    pytest.param("[]", "the answer holds no box", id="empty-list"),
    pytest.param(
        '[{"bbox_2d": [1, 2, 3, 4]}, {"bbox_2d": [1, 2, 3]}]', "box 1: box must have 4 coordinates", id="second-bad"
    ),
    pytest.param("none", "no box found in the answer", id="none"),
    pytest.param("I cannot see it.", "no box found in the answer", id="prose"),
    pytest.param("", "no box found in the answer", id="empty"),
    pytest.param("<answer>somewhere left</answer>", "the <answer> block holds no box", id="tags-no-box"),
    pytest.param(json.dumps([[1, 2, 3, 4]] * (MAX_OBJECTS + 1)), "too many boxes", id="too-many"),
]


@pytest.mark.parametrize(("text", "reason"), BOX_BAD)
def test_box_answers_that_fail_say_why(text: str, reason: str) -> None:
    result = parse_box_answer(text)
    assert not result.ok
    assert result.reason is not None and reason in result.reason
    assert result.boxes == () and result.first is None and not result.strict


def test_box_to_dict_is_json_serialisable_and_complete() -> None:
    result = parse_box_answer('[{"bbox_2d": [10, 20, 30, 40], "label": "dog"}]')
    assert json.loads(json.dumps(result.to_dict(), allow_nan=False)) == {
        "ok": True,
        "boxes": [{"coords": [10.0, 20.0, 30.0, 40.0], "label": "dog"}],
        "strict": True,
        "reason": None,
    }


@pytest.mark.parametrize(
    "text",
    [
        "[" * 100_000,
        "{'a': " * 20_000,
        "<think>x</thin" * 20_000,
        " " * 100_000 + "x",
        "frame: 1 description: 'x " * 8_000,
        "frame" + " " * 20_000,
        "[{'frame_idx': 3, 'object description': '" + "a" * 100_000 + "'}]",
    ],
    ids=["brackets", "nested-dicts", "unclosed-think", "whitespace", "salvage-bait", "key-then-spaces", "huge-desc"],
)
@pytest.mark.timeout(60)  # the bound: far above a linear parse (milliseconds), far below the quadratic minutes
def test_adversarial_answers_parse_in_bounded_time(text: str) -> None:
    # Pathological inputs that once took seconds to minutes (quadratic regexes, rescans); this
    # test's own timeout (not the suite's 600 s) fails it, and each parse must return a value.
    assert isinstance(parse_keyframe_answer(text, N), KeyframeAnswer)
    assert isinstance(parse_box_answer(text), BoxAnswer)


# --------------------------------------------------------------------------- fuzz

_FRAGMENTS = [
    "<think>", "</think>", "<answer>", "</answer>", "<ANSWER>", "```json\n", "```", "\n", " ", "\t",
    "[", "]", "{", "}", "(", ")", ",", ":", "'", '"', "\\", "\\u00e9", "\x00",
    '"frame_idx"', "'frame_idx'", "frame_idx", '"object description"', "'object description'", "description",
    '"bbox_2d"', "'bbox'", '"label"', "0", "7", "15", "16", "-1", "3.5", "7.0", "1e9", "1e400", "-0",
    "NaN", "Infinity", "-Infinity", "true", "True", "null", "None", "none", "no target", "N/A",
    "9" * 30, "the red stone", "the dog's tail", "左边的狗", "🐕", "\u200b", "é",
]  # fmt: skip

_VALID = [
    tagged('[{"frame_idx": 7, "object description": "the red stone"}]'),
    tagged("[{'frame_idx': 3, 'object description': 'a cat'}, {'frame_idx': 12, 'object description': 'a dog'}]"),
    tagged("[]"),
    '```json\n[{"bbox_2d": [10, 20, 300, 400], "label": "dog"}]\n```',
    "[[1, 2, 3, 4], [5.5, 6, 7, 8]]",
    "{'bbox': (1, 2, 3, 4)}",
]

_fragment_text = st.lists(st.sampled_from(_FRAGMENTS), max_size=30).map("".join)
_noise = st.one_of(st.sampled_from(_FRAGMENTS), st.text(max_size=6))


@st.composite
def _mutated_valid_answer(draw: st.DrawFn) -> str:
    """A valid answer cut, spliced and sprinkled with fragments: the near-misses models produce."""
    text = draw(st.sampled_from(_VALID))
    for _ in range(draw(st.integers(0, 4))):
        at = draw(st.integers(0, len(text)))
        op = draw(st.sampled_from(["cut", "insert", "delete", "replace"]))
        if op == "cut":
            text = text[:at]
        elif op == "insert":
            text = text[:at] + draw(_noise) + text[at:]
        elif op == "delete":
            text = text[:at] + text[at + draw(st.integers(1, 5)) :]
        else:
            text = text[:at] + draw(_noise) + text[at + 1 :]
    return text


_leaf = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(10**30), max_value=10**30),
    st.floats(allow_nan=True, allow_infinity=True),
    st.text(max_size=12),
)
_keys = st.one_of(st.sampled_from(["frame_idx", "object description", "frame", "description", "bbox_2d", "label"]),
                  st.text(max_size=4))  # fmt: skip
_values = st.recursive(
    _leaf, lambda inner: st.lists(inner, max_size=4) | st.dictionaries(_keys, inner, max_size=3), max_leaves=8
)
_index = st.one_of(st.integers(0, 15), st.integers(-3, 20), st.sampled_from([7.0, 7.5, "7", " 3 ", "x", True, None]))
_description = st.one_of(st.sampled_from(["the red stone", " a dog ", "左边的狗", "", "  "]), st.text(max_size=8))
_number = st.one_of(
    st.integers(-10, 2000), st.floats(allow_nan=True, allow_infinity=True), st.sampled_from(["1", None])
)
_keyframe_shaped = st.lists(
    st.fixed_dictionaries({"frame_idx": _index, "object description": _description}), min_size=1, max_size=3
)
_box_shaped = st.lists(
    st.fixed_dictionaries(
        {"bbox_2d": st.lists(_number, min_size=3, max_size=5)}, optional={"label": st.sampled_from(["dog", 3, ""])}
    ),
    min_size=1,
    max_size=2,
)


@st.composite
def _structured_answer(draw: st.DrawFn) -> str:
    """Random JSON or Python-literal values with the right keys but anything as values, in varied wrappers."""
    value = draw(st.one_of(_values, _keyframe_shaped, _box_shaped))
    body = json.dumps(value) if draw(st.booleans()) else repr(value)
    wrapper = draw(st.sampled_from(["{}", "<think>t</think> <answer>{}</answer>", "```json\n{}\n```", "x {} y"]))
    return wrapper.replace("{}", body)


def _check_keyframe(result: KeyframeAnswer, num_frames: int) -> None:
    assert isinstance(result, KeyframeAnswer)
    event(f"keyframe ok={result.ok} no_target={result.no_target} strict={result.strict}")
    json.dumps(result.to_dict(), allow_nan=False)
    assert (result.think is not None) == result.has_think
    if result.ok:
        assert result.reason is None
        if result.no_target:
            assert result.objects == ()
        else:
            assert 1 <= len(result.objects) <= MAX_OBJECTS
        for obj in result.objects:
            assert isinstance(obj, KeyframeObject)
            assert type(obj.sample_idx) is int and 0 <= obj.sample_idx < num_frames
            assert isinstance(obj.description, str) and obj.description == obj.description.strip()
            assert 0 < len(obj.description) <= MAX_DESCRIPTION_CHARS
    else:
        assert isinstance(result.reason, str) and result.reason
        assert result.objects == () and not result.no_target
    if result.strict:
        assert result.ok and result.has_think and result.has_answer


def _check_box(result: BoxAnswer) -> None:
    assert isinstance(result, BoxAnswer)
    event(f"box ok={result.ok} strict={result.strict}")
    json.dumps(result.to_dict(), allow_nan=False)
    if result.ok:
        assert result.reason is None
        assert 1 <= len(result.boxes) <= MAX_OBJECTS
        assert result.first == result.boxes[0]
        for box in result.boxes:
            assert isinstance(box, RawBox) and len(box.coords) == 4
            assert all(type(c) is float and math.isfinite(c) and abs(c) <= MAX_COORDINATE for c in box.coords)
            assert box.label is None or (isinstance(box.label, str) and box.label)
    else:
        assert isinstance(result.reason, str) and result.reason
        assert result.boxes == () and result.first is None and not result.strict


_FUZZ = settings(
    derandomize=True,
    deadline=None,
    database=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)


@settings(_FUZZ, max_examples=3500)
@given(text=_fragment_text, num_frames=st.sampled_from([1, 12, 16, 20]))
def test_fuzz_fragment_soup_never_raises(text: str, num_frames: int) -> None:
    _check_keyframe(parse_keyframe_answer(text, num_frames), num_frames)
    _check_box(parse_box_answer(text))


@settings(_FUZZ, max_examples=3500)
@given(text=_mutated_valid_answer())
def test_fuzz_mutated_valid_answers_never_raise(text: str) -> None:
    _check_keyframe(parse_keyframe_answer(text, N), N)
    _check_box(parse_box_answer(text))


@settings(_FUZZ, max_examples=3000)
@given(text=_structured_answer())
def test_fuzz_structured_values_never_raise(text: str) -> None:
    _check_keyframe(parse_keyframe_answer(text, N), N)
    _check_box(parse_box_answer(text))
