"""Prompt sets: the text of the chain's two turns, as named, versioned data.

A checkpoint trained with the paper's prompts only works if it is fed the same text,
so the paper's prompts live here verbatim (DESIGN.md 1.3) under the name
``revseg-paper-v1`` and every trajectory records the name of the set it used. A new
prompt set is one more entry in :data:`PROMPT_SETS`; existing entries never change.

Templates use ``{name}`` placeholders, but they are *not* ``str.format`` strings: the
paper's turn-1 prompt holds literal braces in its example answer, and a user's question
may hold braces too. :func:`fill_placeholders` substitutes only the known names, in one
pass, so inserted text is never scanned again.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from revseg.errors import SpecError
from revseg.settings import COMPACT_PROMPT_SET, LOOK_AGAIN_PROMPT_SET, PAPER_PROMPT_SET

# Placeholders each turn's template must contain, and the ones it may contain.
_INTERPRET_REQUIRED = ("question",)
_GROUND_REQUIRED = ("object description",)


def fill_placeholders(template: str, values: Mapping[str, str]) -> str:
    """Replace each ``{name}`` whose name is in ``values``, in a single pass.

    Anything else in braces (example JSON, unknown names) is left alone, and the
    substituted text is never re-scanned, so a question containing ``{question}`` is
    inserted literally.
    """
    if not values:
        return template
    # Longest names first so that "nframes-1" is not read as "nframes" followed by "-1".
    names = sorted(values, key=len, reverse=True)
    pattern = re.compile(r"\{(" + "|".join(re.escape(n) for n in names) + r")\}")
    return pattern.sub(lambda m: values[m.group(1)], template)


def format_seconds(nframes: int, fps: float) -> str:
    """The video length the prompt claims, ``nframes / fps``: "8" for 16 frames at 2 fps, "7.5" for 15.

    Integral values print without a decimal point, as in the paper's prompt; others
    keep at most two decimals so that the prompt stays short and deterministic.
    """
    seconds = nframes / fps
    if seconds.is_integer():
        return str(int(seconds))
    return f"{seconds:.2f}".rstrip("0").rstrip(".")


def _format_fps(fps: float) -> str:
    """``2.0`` -> ``"2"``: the paper's prompt says ``fps=2``."""
    return str(int(fps)) if float(fps).is_integer() else f"{fps:g}"


@dataclass(frozen=True)
class PromptSet:
    """The two prompt templates of the chain, under a name recorded in every trajectory.

    ``interpret`` is turn 1 (placeholders ``{second}``, ``{nframes}``, ``{nframes-1}``,
    ``{fps}``, ``{question}``); ``ground`` is turn 2 (placeholder ``{object description}``).
    Templates are checked when the set is built, so a broken set fails at import, not
    in the middle of a rollout.
    """

    name: str
    interpret: str
    ground: str

    def __post_init__(self) -> None:
        for turn, template, required in (
            ("interpret", self.interpret, _INTERPRET_REQUIRED),
            ("ground", self.ground, _GROUND_REQUIRED),
        ):
            missing = [n for n in required if "{" + n + "}" not in template]
            if missing:
                raise SpecError(
                    f"prompt set {self.name!r}: the {turn} template lacks the placeholder(s) "
                    f"{', '.join('{' + n + '}' for n in missing)}; add them to the template"
                )

    def render_interpret(self, question: str, nframes: int, fps: float = 2.0) -> str:
        """Turn 1's prompt for ``nframes`` sampled frames that the prompt says were taken at ``fps``.

        ``fps`` is the label the prompt claims (ChainSettings.fps_label), not the video's
        real frame rate: the paper always says 2 and derives the length from it.
        """
        if nframes < 1:
            raise ValueError(f"nframes must be at least 1, got {nframes}")
        if not (math.isfinite(fps) and fps > 0):
            raise ValueError(f"fps must be a positive finite number, got {fps}")
        values = {
            "second": format_seconds(nframes, fps),
            "nframes": str(nframes),
            "nframes-1": str(nframes - 1),
            "fps": _format_fps(fps),
            "question": question,
        }
        return fill_placeholders(self.interpret, values)

    def render_ground(self, description: str) -> str:
        """Turn 2's prompt asking for a box around the object that turn 1 described."""
        return fill_placeholders(self.ground, {"object description": description})


# The paper's appendix prompts (DESIGN.md 1.3), character for character. The only
# change is that the literal "fps=2" became "fps={fps}", which renders identically at
# the default fps of 2 and keeps the prompt consistent when ChainSettings.fps_label changes.
_PAPER_P1 = (
    "Here is an {second}-second video represented by {nframes} frames (fps={fps}). "
    "Please first think deeply based on the given video, and then find '{question}' with temporal timestamp "
    "and detailed object description for spatial grounding. "
    "Compare the difference between all possible objects and find the object that most matches the query. "
    "Carefully identify all frames and select the keyframe that will minimize the effort for a segmentation "
    "model to find the target object. "
    "Prioritize frame where the target object is clearly visible and low occlusion, large enough in image area, "
    "visually distinct from background and other objects, minimally motion-blurred, and centered. "
    "Describe the static appearance of the target object in the selected keyframe in detail, "
    "to aid subsequent spatial grounding. "
    "The reasoning process and answer must be enclosed within <think> </think> and <answer> </answer> tags, "
    "respectively. "
    "Output the keyframe index (0-{nframes-1}) and specific description of the target object in that frame "
    "in JSON format. "
    "i.e., <think> reasoning process here </think> <answer> [{'frame_idx': 7, 'object description': "
    "'the red triangular stone on the far left'}] </answer>."
)

_PAPER_P2 = "This is the extracted keyframe, please detect '{object description}' with bbox coordinates in JSON format."


@dataclass(frozen=True)
class LookAgainPromptSet(PromptSet):
    """The prompts of the ``look_again`` program: the chain's two turns plus its three actions.

    ``interpret`` offers, besides the keyframe answer, ``zoom``: a window of the frames it
    saw, to see new frames sampled inside it. ``zoom`` is that turn (placeholders
    ``{nframes}``, ``{nframes-1}``, ``{first}``, ``{last}``, ``{question}``). ``verify``
    shows the tracked mask drawn on a few frames, then on the keyframe (``{nframes}``
    overlaid frames besides the keyframe, ``{object description}``, ``{question}``) and
    asks for a verdict. ``reselect`` follows a rejection (``{why}``, ``{rejected}``): a
    keyframe answer over the latest frames, the rejected ones excluded. Answers are parsed
    by :mod:`revseg.policies.actions`.
    """

    zoom: str = ""
    verify: str = ""
    reselect: str = ""

    def __post_init__(self) -> None:
        super().__post_init__()
        for turn, template, required in (
            ("zoom", self.zoom, ("first", "last", "question")),
            ("verify", self.verify, ("object description", "question")),
            ("reselect", self.reselect, ("rejected",)),
        ):
            missing = [n for n in required if "{" + n + "}" not in template]
            if missing:
                raise SpecError(
                    f"prompt set {self.name!r}: the {turn} template lacks the placeholder(s) "
                    f"{', '.join('{' + n + '}' for n in missing)}; add them to the template"
                )

    def render_zoom(self, question: str, nframes: int, first: int, last: int) -> str:
        """The zoom turn's prompt: ``nframes`` new frames between frames ``first`` and ``last`` of the last view."""
        if nframes < 1:
            raise ValueError(f"nframes must be at least 1, got {nframes}")
        values = {
            "nframes": str(nframes),
            "nframes-1": str(nframes - 1),
            "first": str(first),
            "last": str(last),
            "question": question,
        }
        return fill_placeholders(self.zoom, values)

    def render_verify(self, question: str, description: str, nframes: int) -> str:
        """The verify turn's prompt: ``nframes`` frames with the mask drawn, then the keyframe with it."""
        values = {"nframes": str(nframes), "object description": description, "question": question}
        return fill_placeholders(self.verify, values)

    def render_reselect(self, why: str, rejected: Sequence[int]) -> str:
        """The re-select turn's prompt after a rejection; ``rejected`` are indices into the last view."""
        listed = ", ".join(str(i) for i in rejected)
        return fill_placeholders(self.reselect, {"why": why.strip() or "no reason given", "rejected": listed})


# The look-again set keeps the paper's P1 and P2 verbatim and adds one sentence offering the zoom,
# so a paper-trained checkpoint sees familiar text; every action's answer is JSON in <answer>.
_ZOOM_OFFER = (
    " If the target is not clearly visible in any of these frames, you may look again instead: answer "
    "<think> reasoning process here </think> <answer> {'action': 'zoom', 'first': 3, 'last': 6} </answer> "
    "to see {nframes} new frames taken between frames 3 and 6 (indices of the frames above)."
)
_LOOK_P1 = _PAPER_P1 + _ZOOM_OFFER
_LOOK_ZOOM = (
    "Here are {nframes} new frames, taken between frames {first} and {last} of the previous frames. "
    "Find '{question}' in them as before. Answer with the keyframe index (0-{nframes-1}) among these new frames "
    "and a description of the target in JSON format, i.e., <think> reasoning process here </think> <answer> "
    "[{'frame_idx': 2, 'object description': 'the red triangular stone on the far left'}] </answer>, "
    "or zoom again with <answer> {'action': 'zoom', 'first': 1, 'last': 4} </answer>."
)
_LOOK_VERIFY = (
    "Here is the tracked mask of '{object description}' drawn in red on {nframes} frames of the video, "
    "then on the keyframe. Check that the red mask covers '{question}' and nothing else. "
    "The reasoning process and answer must be enclosed within <think> </think> and <answer> </answer> tags. "
    "Answer <answer> {'verdict': 'accept'} </answer> if the mask is right, or "
    "<answer> {'verdict': 'reject', 'reason': 'what is wrong'} </answer> if it is not."
)
_LOOK_RESELECT = (
    "The mask was rejected: {why}. Look at the frames again and select a different keyframe "
    "(not frame {rejected}) where the target is clearly visible, and describe the target in that frame, "
    "in JSON format, i.e., <think> reasoning process here </think> <answer> "
    "[{'frame_idx': 5, 'object description': 'the red triangular stone on the far left'}] </answer>."
)

# The paper's two turns cut to what they ask for, with the same answer formats (so the same
# parsers and rewards apply): a quarter of the paper's turn-1 tokens. For models trained
# from scratch at small scale (the CPU learning benchmark), where every prompt token costs
# compute on every rollout and carries nothing a random model can use.
_COMPACT_P1 = (
    "Find '{question}' in these {nframes} frames and pick the frame (0-{nframes-1}) where it is largest. "
    "Answer <think> ... </think> <answer> [{'frame_idx': 7, 'object description': 'the red square'}] </answer>."
)
_COMPACT_P2 = "Detect '{object description}' with a bbox in JSON format."

PROMPT_SETS: dict[str, PromptSet] = {
    PAPER_PROMPT_SET: PromptSet(name=PAPER_PROMPT_SET, interpret=_PAPER_P1, ground=_PAPER_P2),
    COMPACT_PROMPT_SET: PromptSet(name=COMPACT_PROMPT_SET, interpret=_COMPACT_P1, ground=_COMPACT_P2),
    LOOK_AGAIN_PROMPT_SET: LookAgainPromptSet(
        name=LOOK_AGAIN_PROMPT_SET,
        interpret=_LOOK_P1,
        ground=_PAPER_P2,
        zoom=_LOOK_ZOOM,
        verify=_LOOK_VERIFY,
        reselect=_LOOK_RESELECT,
    ),
}


def get_prompt_set(name: str) -> PromptSet:
    """The prompt set registered under ``name``; SpecError naming the known sets otherwise."""
    try:
        return PROMPT_SETS[name]
    except KeyError:
        known = ", ".join(sorted(PROMPT_SETS))
        raise SpecError(
            f"unknown prompt set {name!r}; known prompt sets: {known} "
            "(register a new one in revseg.policies.prompts.PROMPT_SETS)"
        ) from None


def get_look_again_prompts(name: str) -> LookAgainPromptSet:
    """The look-again prompt set ``name``; SpecError when it is unknown or has no action prompts."""
    prompts = get_prompt_set(name)
    if not isinstance(prompts, LookAgainPromptSet):
        looks = ", ".join(sorted(n for n, p in PROMPT_SETS.items() if isinstance(p, LookAgainPromptSet)))
        raise SpecError(
            f"prompt set {name!r} has no zoom, verify and reselect prompts, which program 'look_again' needs; "
            f"use one of: {looks}"
        )
    return prompts
