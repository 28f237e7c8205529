"""Prompt sets: the paper's prompts rendered character for character, placeholders that braces cannot fool."""

from __future__ import annotations

from pathlib import Path

import pytest

from revseg.errors import SpecError
from revseg.policies.prompts import PROMPT_SETS, PromptSet, fill_placeholders, format_seconds, get_prompt_set
from revseg.settings import PAPER_PROMPT_SET, ChainSettings

DESIGN_MD = Path(__file__).resolve().parents[3] / "shared" / "DESIGN.md"

EXPECTED_P1_16_FRAMES = (
    "Here is an 8-second video represented by 16 frames (fps=2). Please first think deeply based on the given "
    "video, and then find 'the dog that jumps over the fence' with temporal timestamp and detailed object "
    "description for spatial grounding. Compare the difference between all possible objects and find the object "
    "that most matches the query. Carefully identify all frames and select the keyframe that will minimize the "
    "effort for a segmentation model to find the target object. Prioritize frame where the target object is "
    "clearly visible and low occlusion, large enough in image area, visually distinct from background and other "
    "objects, minimally motion-blurred, and centered. Describe the static appearance of the target object in the "
    "selected keyframe in detail, to aid subsequent spatial grounding. The reasoning process and answer must be "
    "enclosed within <think> </think> and <answer> </answer> tags, respectively. Output the keyframe index (0-15) "
    "and specific description of the target object in that frame in JSON format. i.e., <think> reasoning process "
    "here </think> <answer> [{'frame_idx': 7, 'object description': 'the red triangular stone on the far left'}] "
    "</answer>."
)

EXPECTED_P2 = (
    "This is the extracted keyframe, please detect 'the brown dog mid-air above the white fence' "
    "with bbox coordinates in JSON format."
)


@pytest.fixture
def paper() -> PromptSet:
    return get_prompt_set(PAPER_PROMPT_SET)


def test_paper_interpret_prompt_renders_verbatim_for_16_frames(paper: PromptSet) -> None:
    assert paper.render_interpret("the dog that jumps over the fence", 16) == EXPECTED_P1_16_FRAMES


def test_paper_ground_prompt_renders_verbatim(paper: PromptSet) -> None:
    assert paper.render_ground("the brown dog mid-air above the white fence") == EXPECTED_P2


def test_15_frames_claim_a_fractional_length_and_index_range_0_to_14(paper: PromptSet) -> None:
    text = paper.render_interpret("q", 15)
    assert text.startswith("Here is an 7.5-second video represented by 15 frames (fps=2). ")
    assert "Output the keyframe index (0-14) and" in text
    assert text == EXPECTED_P1_16_FRAMES.replace("an 8-second", "an 7.5-second").replace(
        "by 16 frames", "by 15 frames"
    ).replace("(0-15)", "(0-14)").replace("'the dog that jumps over the fence'", "'q'")


def test_one_frame_renders_a_range_of_0_to_0(paper: PromptSet) -> None:
    text = paper.render_interpret("q", 1)
    assert "Here is an 0.5-second video represented by 1 frames" in text
    assert "(0-0)" in text


@pytest.mark.parametrize(
    "question",
    [
        "the {question} with {nframes} and {second}",
        "{'frame_idx': 3}",
        "a } b { c {} {{}}",
        "{object description}",
        "back\\slash \\1 \\g<0> $1",
    ],
)
def test_braces_and_placeholder_names_in_the_question_are_inserted_literally(paper: PromptSet, question: str) -> None:
    text = paper.render_interpret(question, 16)
    assert f"then find '{question}' with temporal" in text
    assert text == EXPECTED_P1_16_FRAMES.replace("the dog that jumps over the fence", question)


def test_braces_in_the_description_are_inserted_literally(paper: PromptSet) -> None:
    assert paper.render_ground("{object description} {x}") == EXPECTED_P2.replace(
        "the brown dog mid-air above the white fence", "{object description} {x}"
    )


def test_templates_keep_the_papers_example_json_braces(paper: PromptSet) -> None:
    assert "[{'frame_idx': 7, 'object description': 'the red triangular stone on the far left'}]" in paper.interpret


def test_fps_label_changes_the_claimed_length_and_the_fps_shown(paper: PromptSet) -> None:
    text = paper.render_interpret("q", 16, fps=4.0)
    assert text.startswith("Here is an 4-second video represented by 16 frames (fps=4). ")


def test_default_fps_matches_chain_settings(paper: PromptSet) -> None:
    settings = ChainSettings.model_validate({})  # defaults (no pydantic mypy plugin configured)
    assert paper.render_interpret("q", settings.num_frames, settings.fps_label) == paper.render_interpret("q", 16)


@pytest.mark.parametrize(("nframes", "fps", "expected"), [(16, 2, "8"), (15, 2, "7.5"), (20, 3, "6.67"), (12, 2, "6")])
def test_format_seconds_prints_integral_lengths_without_a_decimal_point(
    nframes: int, fps: float, expected: str
) -> None:
    assert format_seconds(nframes, fps) == expected


@pytest.mark.parametrize(("nframes", "fps"), [(0, 2.0), (-3, 2.0), (16, 0.0), (16, float("nan"))])
def test_render_interpret_rejects_impossible_frame_counts_and_fps(paper: PromptSet, nframes: int, fps: float) -> None:
    with pytest.raises(ValueError):
        paper.render_interpret("q", nframes, fps)


@pytest.mark.skipif(not DESIGN_MD.exists(), reason="DESIGN.md not available next to the repository")
def test_paper_templates_match_design_md_character_for_character(paper: PromptSet) -> None:
    quoted = [line[2:] for line in DESIGN_MD.read_text().splitlines() if line.startswith("> ")]
    p1 = next(q for q in quoted if q.startswith("Here is an {second}-second video"))
    p2 = next(q for q in quoted if q.startswith("This is the extracted keyframe"))
    # The only difference: the paper's literal "fps=2" is a placeholder here.
    assert paper.interpret.replace("(fps={fps})", "(fps=2)") == p1
    assert paper.ground == p2


def test_get_prompt_set_names_the_unknown_set_and_lists_known_ones() -> None:
    with pytest.raises(SpecError, match=r"'revseg-paper-v9'.*revseg-paper-v1"):
        get_prompt_set("revseg-paper-v9")


def test_paper_set_is_registered_under_its_own_name() -> None:
    assert PROMPT_SETS[PAPER_PROMPT_SET].name == PAPER_PROMPT_SET


def test_prompt_set_without_required_placeholders_fails_when_built() -> None:
    with pytest.raises(SpecError, match=r"interpret template lacks.*\{question\}"):
        PromptSet(name="broken", interpret="no question here", ground="find '{object description}'")
    with pytest.raises(SpecError, match=r"ground template lacks.*\{object description\}"):
        PromptSet(name="broken", interpret="find '{question}'", ground="find it")


def test_fill_placeholders_prefers_the_longest_name_and_ignores_unknown_ones() -> None:
    out = fill_placeholders("{nframes-1}/{nframes} {other}", {"nframes": "16", "nframes-1": "15"})
    assert out == "15/16 {other}"


def test_the_look_again_set_keeps_the_paper_prompts_and_adds_its_actions() -> None:
    from revseg.policies.prompts import get_look_again_prompts

    paper = get_prompt_set("revseg-paper-v1")
    look = get_look_again_prompts("revseg-look-again-v1")
    assert look.render_interpret("the dog", 16).startswith(paper.render_interpret("the dog", 16))
    assert "{'action': 'zoom', 'first': 3, 'last': 6}" in look.render_interpret("the dog", 16)
    assert look.render_ground("a dog") == paper.render_ground("a dog")
    assert "between frames 2 and 9" in look.render_zoom("the dog", 16, 2, 9)
    assert "'brown dog' drawn in red on 4 frames" in look.render_verify("the dog", "brown dog", 4)
    assert "(not frame 3, 5)" in look.render_reselect("wrong dog", [3, 5])


def test_the_paper_set_cannot_run_the_look_again_program() -> None:
    from revseg.policies.prompts import get_look_again_prompts

    with pytest.raises(SpecError, match="no zoom, verify and reselect prompts"):
        get_look_again_prompts("revseg-paper-v1")


def test_look_again_settings_pick_the_look_again_prompt_set_unless_told() -> None:
    from revseg.settings import ChainSettings

    assert ChainSettings().program == "paper" and ChainSettings().prompt_set == "revseg-paper-v1"
    assert ChainSettings(program="look_again").prompt_set == "revseg-look-again-v1"
    assert ChainSettings(program="look_again", prompt_set="mine").prompt_set == "mine"


def test_the_compact_set_asks_for_the_same_answers_in_far_fewer_words() -> None:
    from revseg.policies.parsing import parse_box_answer, parse_keyframe_answer
    from revseg.settings import COMPACT_PROMPT_SET

    paper, compact = get_prompt_set(PAPER_PROMPT_SET), get_prompt_set(COMPACT_PROMPT_SET)
    turn1 = compact.render_interpret("the shape that grows", 4)
    assert "'the shape that grows'" in turn1 and "(0-3)" in turn1
    assert len(turn1) < len(paper.render_interpret("the shape that grows", 4)) / 3
    assert compact.render_ground("the red circle") == "Detect 'the red circle' with a bbox in JSON format."
    # its example answer is one the strict parser takes, as the paper's is
    example = turn1[turn1.index("<think>") :].removesuffix(".")
    parsed = parse_keyframe_answer(example, 16)
    assert parsed.ok and parsed.strict and parsed.objects[0].sample_idx == 7
    assert parsed.objects[0].description == "the red square"
    assert parse_box_answer('[{"bbox_2d": [1, 2, 30, 40]}]').strict
