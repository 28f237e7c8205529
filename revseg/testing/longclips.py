"""A synthetic long-clip set where looking once is not enough, with an oracle policy and tracker.

Each :class:`LongClip` is a long clip (default 240 frames) of flat-coloured shapes, drawn
by :mod:`revseg.testing.shapes` so its masks are exact:

- the **target** is on screen only briefly: it crosses the frame during a short window
  (default 2-8 % of the clip), so the 16 frames the paper's chain spreads over the whole
  clip (one every 16 frames at 240) often never show it;
- a **look-alike** of the same kind, another colour, is on screen the whole time: a
  first box is often put on it (the oracle's ``first_box_error``), and a tracker prompted
  with that box tracks it faithfully over the whole clip;
- a third shape of another kind stands still.

The query is ``"the <kind> that appears only briefly"``. :func:`write_revos_layout` writes
the set in ReVOS' layout (``JPEGImages/``, ``mask_dict.json``, ``meta_expressions_<split>_.json``)
so the eval harness reads it as the benchmark ``revos`` and scores it with J&F.

:class:`LongClipOracle` answers every turn of both chain programs from the ground truth,
as a model would that sees exactly the frames it is shown (it finds its clip by matching
the first image it gets). It names the keyframe where the target is largest among the
frames shown; where none shows the target it zooms onto the window where the target is
(``look_again``) or, in the paper's chain, which has no second look, names the look-alike
(``missed="distractor"``) or no target (``missed="none"``). Its first box of a run lands on
the look-alike with probability ``first_box_error``; later boxes are right. Its verify
verdict is the truth: accept when the box it gave covers the target. :class:`LongClipTracker`
returns the ground-truth masks of whichever shape a box prompt lands on, the way SAM2
tracks whatever it was given.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import re
import zlib
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from revseg.policies.actions import parse_look_answer
from revseg.policies.base import Generation, ImagePart, Message
from revseg.policies.parsing import parse_box_answer
from revseg.settings import SamplingParams
from revseg.testing.shapes import COLOURS, KINDS, ShapeClip, ShapeTrack, turn1_answer, turn2_answer
from revseg.tools.boxes import box_area, box_iou
from revseg.tools.frames import sample_indices
from revseg.tools.trackers.base import FrameMasks
from revseg.trajectory import BoxXYXY, PolicyInfo

if TYPE_CHECKING:
    from PIL.Image import Image

    from revseg.tools.readers.base import FrameReader

SIZE = (112, 84)
"""(width, height) of the clips' frames."""
QUERY = "the {kind} that appears only briefly"
_OFF = (-1000.0, -1000.0)  # a centre far outside the frame: the shape draws no pixel
# What each turn's prompt says, in both prompt sets (revseg-paper-v1, revseg-look-again-v1).
_GROUND = "extracted keyframe"
_VERIFY = "tracked mask"
_RESELECT = "mask was rejected"
_ZOOM_TURN = re.compile(r"new frames, taken between frames (\d+) and (\d+)")
_ZOOM_OFFERED = "'action': 'zoom'"


@dataclass(frozen=True)
class LongClip:
    """A long clip: its shapes (target last, drawn on top), the target's on-screen window and the look-alike."""

    clip: ShapeClip
    window: tuple[int, int]  # [start, stop): frames where the target is on screen
    lookalike: int  # index into clip.shapes

    @property
    def name(self) -> str:
        """The video's name (its folder in the written layout)."""
        return self.clip.name

    @property
    def query(self) -> str:
        """What to segment."""
        return self.clip.query

    @property
    def num_frames(self) -> int:
        """Frames in the clip."""
        return self.clip.num_frames

    def box(self, t: int, shape: int | None = None) -> BoxXYXY | None:
        """The ground-truth box of ``shape`` (default: the target) on frame ``t``; None when not visible."""
        from revseg.tools.boxes import mask_to_box

        return mask_to_box(self.clip.mask(t, shape))

    def write(self, folder: str | Path, *, quality: int = 95) -> Path:
        """The frames as ``00000.jpg``, ... (JPEG, as ReVOS ships them; masks come from the truth, not the pixels)."""
        from PIL import Image

        out = Path(folder)
        out.mkdir(parents=True, exist_ok=True)
        for t in range(self.num_frames):
            Image.fromarray(self.clip.frame(t)).save(out / f"{t:05d}.jpg", quality=quality)
        return out


def make_long_clips(
    seed: int,
    count: int,
    *,
    num_frames: int = 240,
    size: tuple[int, int] = SIZE,
    on_screen: tuple[float, float] = (0.02, 0.08),
) -> list[LongClip]:
    """``count`` long clips from ``seed`` (the same seed, the same clips); the target is on screen for a
    fraction of the clip drawn from ``on_screen``."""
    rng = np.random.default_rng(seed)
    return [_make_clip(rng, f"long{seed}-{i:03d}", num_frames, size, on_screen) for i in range(count)]


def _make_clip(
    rng: np.random.Generator, name: str, num_frames: int, size: tuple[int, int], on_screen: tuple[float, float]
) -> LongClip:
    width, height = size
    kind, other = (str(k) for k in rng.permutation(KINDS)[:2])
    target_colour, lookalike_colour, third_colour = (str(c) for c in rng.permutation(list(COLOURS)))
    scale = min(width, height) / 84.0
    length = max(3, round(num_frames * rng.uniform(*on_screen)))
    start = int(rng.integers(0, num_frames - length + 1))
    ts = np.arange(num_frames)

    def still(s: float, x: float, y: float) -> ShapeTrack:
        return ShapeTrack(other, third_colour, ((x, y),) * num_frames, (s,) * num_frames)

    # The look-alike drifts across the left half, the third shape stands in the bottom right corner;
    # the target crosses the top right, entering and leaving within its window, never touching them.
    s_look = float(rng.uniform(9, 12) * scale)
    drift = np.interp(ts, [0, num_frames - 1], [s_look + 2, width / 2 - s_look - 2])
    y_look = float(rng.uniform(s_look + 2, height - s_look - 2))
    lookalike = ShapeTrack(kind, lookalike_colour, tuple((float(x), y_look) for x in drift), (s_look,) * num_frames)
    s_third = 8 * scale
    third = still(s_third, width - s_third - 2, height - s_third - 2)
    s_target = float(rng.uniform(8, 11) * scale)
    y_target = s_target + 2
    xs = np.interp(ts, [start, start + length - 1], [width / 2 + s_target, width - s_target - 2])
    centres = tuple((float(x), y_target) if start <= t < start + length else _OFF for t, x in zip(ts, xs, strict=True))
    target = ShapeTrack(kind, target_colour, centres, (s_target,) * num_frames)
    clip = ShapeClip(
        name=name,
        shapes=(lookalike, third, target),
        target=2,
        query=QUERY.format(kind=kind),
        query_kind="briefly",
        size=size,
    )
    return LongClip(clip=clip, window=(start, start + length), lookalike=0)


# --------------------------------------------------------------------------- as a benchmark


def write_revos_layout(root: str | Path, clips: Sequence[LongClip], split: str = "valid") -> Path:
    """Write ``clips`` in ReVOS' layout under ``root`` (one reasoning expression each); return ``root``.

    ``revseg.evals.benchmarks.get_benchmark("revos", root, split)`` then reads them, and
    the eval harness scores predictions against the exact shape masks.
    """
    from revseg.tools.masks import encode_rle

    root = Path(root)
    masks: dict[str, list[Any]] = {}
    foreground: dict[str, Any] = {}
    meta: dict[str, Any] = {}
    for number, clip in enumerate(clips):
        clip.write(root / "JPEGImages" / clip.name)
        anno_id = str(1000 + number)
        track = [clip.clip.mask(t) for t in range(clip.num_frames)]
        masks[anno_id] = [encode_rle(m) if m.any() else None for m in track]
        union = [clip.clip.labels(t) >= 0 for t in range(clip.num_frames)]
        foreground[clip.name] = {"masks_rle": [encode_rle(m) for m in union]}
        frames = [f"{t:05d}" for t in range(clip.num_frames)]
        expression = {"exp": clip.query, "obj_id": [clip.clip.target], "anno_id": [int(anno_id)], "type_id": 1}
        meta[clip.name] = {"vid_id": number, "frames": frames, "expressions": {"0": expression}}
    for name, data in (
        ("mask_dict.json", masks),
        ("mask_dict_foreground.json", foreground),
        (f"meta_expressions_{split}_.json", {"videos": meta}),
    ):
        (root / name).write_text(json.dumps(data))
    return root


# --------------------------------------------------------------------------- oracle tracker


@dataclass
class LongClipTracker:
    """Tracks whichever shape each box prompt lands on (IoU >= 0.3 on the keyframe), with its true masks.

    ``frames_tracked`` counts the frames every call propagated over: the tracking cost a
    real tracker would pay, in frames.
    """

    clips: Sequence[LongClip]
    calls: list[tuple[str, int, int | None]] = field(default_factory=list)  # (clip, keyframe, shape tracked)
    frames_tracked: int = 0

    @property
    def spec(self) -> str:
        """A fixed identity."""
        return "longclip-oracle"

    def track(
        self, video: FrameReader, keyframe_index: int, boxes: Sequence[BoxXYXY], *, progress: bool = False
    ) -> Iterator[FrameMasks]:
        """The true masks of the shapes the boxes land on, every frame once, keyframe first."""
        clip = _by_name(self.clips, Path(video.ref.path).name)
        shapes = [_landed_on(clip, keyframe_index, box) for box in boxes]
        self.calls.append((clip.name, keyframe_index, shapes[0] if shapes else None))
        self.frames_tracked += clip.num_frames
        order = [keyframe_index, *range(keyframe_index - 1, -1, -1), *range(keyframe_index + 1, clip.num_frames)]
        width, height = clip.clip.size
        for t in order:
            labels = clip.clip.labels(t)
            masks = np.zeros((len(boxes), height, width), dtype=bool)
            for k, shape in enumerate(shapes):
                if shape is not None:
                    masks[k] = labels == shape
            yield FrameMasks(frame_index=t, masks=masks)


def _by_name(clips: Sequence[LongClip], name: str) -> LongClip:
    for clip in clips:
        if clip.name == name:
            return clip
    raise KeyError(f"no long clip named {name!r}")


def _landed_on(clip: LongClip, t: int, box: Sequence[float]) -> int | None:
    scores = [(box_iou(box, b), i) for i in range(len(clip.clip.shapes)) if (b := clip.box(t, i)) is not None]
    best = max(scores, default=(0.0, None))
    return best[1] if best[0] >= 0.3 else None


# --------------------------------------------------------------------------- oracle policy


class LongClipOracle:
    """Answers each turn of either chain program from the clips' ground truth (see the module docstring).

    ``first_box_error`` is the probability that a run's first box lands on the look-alike,
    drawn once per (seed, clip): every run of a clip errs alike, so both programs face the
    same first boxes. ``missed`` is what the paper's chain answers when no frame it was
    shown has the target: ``"distractor"`` (the look-alike) or ``"none"`` (no target).
    ``grid`` rounds its box coordinates (pixels of the image the policy saw) to multiples of
    it, as :class:`~revseg.testing.shapes.ShapesTeacher` does: when the oracle's answers are
    a small student's warm-up data, a coarser grid leaves it fewer distinct numbers to learn.
    """

    def __init__(
        self,
        clips: Sequence[LongClip],
        *,
        first_box_error: float = 0.3,
        seed: int = 0,
        missed: str = "distractor",
        grid: int = 1,
    ) -> None:
        if missed not in ("distractor", "none"):
            raise ValueError(f"missed must be 'distractor' or 'none', not {missed!r}")
        if grid < 1:
            raise ValueError(f"grid must be a positive number of pixels, not {grid!r}")
        self.clips = list(clips)
        self.first_box_error = first_box_error
        self.seed = seed
        self.missed = missed
        self.grid = grid
        self._thumbs: dict[tuple[int, int], list[np.ndarray]] = {}
        self._known: dict[bytes, LongClip] = {}

    @property
    def info(self) -> PolicyInfo:
        """A fixed identity, distinct from any model's."""
        return PolicyInfo(spec="longclip-oracle", backend="oracle", model="ground-truth", box_convention="absolute")

    def seen_size(self, width: int, height: int) -> tuple[int, int]:
        """It sees what it is sent."""
        return width, height

    async def agenerate(self, messages: Sequence[Message], sampling: SamplingParams) -> Generation:
        """As :meth:`generate`."""
        await asyncio.sleep(0)
        return self.generate(messages, sampling)

    def generate(self, messages: Sequence[Message], sampling: SamplingParams) -> Generation:
        """The answer to the last user message, from the truth."""
        images = [p.image for p in messages[0].parts if isinstance(p, ImagePart)]
        clip = self._identify(images[0])
        seen = _replay(clip, messages, len(images))
        prompt = messages[-1].text
        if _GROUND in prompt:
            text = self._ground(clip, messages, seen.keyframes[-1][0], len(seen.boxes))
        elif _VERIFY in prompt:
            right = bool(seen.boxes) and seen.boxes[-1] == clip.clip.target
            why = f"the mask follows the {clip.clip.shapes[clip.lookalike].name}, which is on screen all along"
            verdict = "{'verdict': 'accept'}" if right else f"{{'verdict': 'reject', 'reason': '{why}'}}"
            text = f"<think> {'right' if right else 'wrong'} object </think> <answer> {verdict} </answer>"
        else:
            # A rejected keyframe stays excluded in every later view, zoomed ones too (as the graph has it).
            rejected = [
                k for (k, _), shape in zip(seen.keyframes, seen.boxes, strict=False) if shape != clip.clip.target
            ]
            text = self._look(clip, seen.views[-1], rejected, zoom=_ZOOM_OFFERED in messages[0].text)
        return Generation(text=text, finish_reason="stop")

    # ---- turns

    def _look(self, clip: LongClip, view: list[int], rejected: Sequence[int], *, zoom: bool) -> str:
        """A keyframe among ``view`` (none rejected before), or a zoom onto the target's window, or the miss."""
        areas = [0.0 if (t in rejected or (b := clip.box(t)) is None) else box_area(b) for t in view]
        if max(areas) > 0:
            return turn1_answer(clip.clip, int(np.argmax(areas)))
        if zoom:
            start, stop = clip.window
            first = max([i for i, t in enumerate(view) if t <= start] or [0])
            last = min([i for i, t in enumerate(view) if t >= stop - 1] or [len(view) - 1])
            first, last = (first, last) if first < last else (max(0, last - 1), max(1, last))
            action = f"{{'action': 'zoom', 'first': {first}, 'last': {last}}}"
            return f"<think> not in these frames </think> <answer> {action} </answer>"
        if self.missed == "none":
            return "<think> no such object in these frames </think> <answer> [] </answer>"
        lookalike = clip.clip.shapes[clip.lookalike]
        look_areas = [box_area(b) if (b := clip.box(t, clip.lookalike)) else 0.0 for t in view]
        index = int(np.argmax(look_areas))
        return (
            f"<think> the {lookalike.name} </think> "
            f"<answer> [{{'frame_idx': {index}, 'object description': 'the {lookalike.name}'}}] </answer>"
        )

    def _ground(self, clip: LongClip, messages: Sequence[Message], keyframe: int, attempt: int) -> str:
        """The target's box on the keyframe; the look-alike's on a run's first attempt with ``first_box_error``."""
        image = next(p.image for p in messages[-1].parts if isinstance(p, ImagePart))
        described = messages[-1].text
        wrong = attempt == 0 and self.first_box_wrong(clip)
        shape = clip.lookalike if wrong or clip.clip.shapes[clip.lookalike].colour in described else clip.clip.target
        box = clip.box(keyframe, shape) or clip.box(keyframe, clip.lookalike) or (0.0, 0.0, 1.0, 1.0)
        return turn2_answer(box, self.seen_size(*image.size), clip.clip.size, self.grid)

    def first_box_wrong(self, clip: LongClip) -> bool:
        """Whether a run's first box on ``clip`` lands on the look-alike (drawn from the seed and the clip)."""
        draw = float(np.random.default_rng([self.seed, zlib.crc32(clip.name.encode())]).random())
        return draw < self.first_box_error

    def _identify(self, image: Image) -> LongClip:
        """The clip whose first frame, resized like ``image``, is nearest to it."""
        from revseg.tools.frames import resize_frame

        key = hashlib.sha1(image.tobytes()).digest()  # a run shows its first frame every turn: look it up once
        known = self._known.get(key)
        if known is not None:
            return known
        thumbs = self._thumbs.get(image.size)
        if thumbs is None:
            thumbs = [np.asarray(resize_frame(c.clip.frame(0), image.size), dtype=np.int16) for c in self.clips]
            self._thumbs[image.size] = thumbs
        seen = np.asarray(image.convert("RGB"), dtype=np.int16)
        found = self.clips[int(np.argmin([np.abs(seen - t).mean() for t in thumbs]))]
        self._known[key] = found
        return found


@dataclass
class _Seen:
    """What the conversation so far holds: every view shown, every keyframe chosen (with the view it was
    chosen in), and the shape every box given landed on."""

    views: list[list[int]]
    keyframes: list[tuple[int, int]] = field(default_factory=list)
    boxes: list[int | None] = field(default_factory=list)


def _replay(clip: LongClip, messages: Sequence[Message], first_view: int) -> _Seen:
    """Follow the conversation as the graph built it.

    Turn 1 spreads ``first_view`` frames over the clip; a zoom spreads as many between two
    frames of the last view (``revseg.graphs.looks.zoom_indices``).
    """
    from revseg.graphs.looks import zoom_indices
    from revseg.tools.boxes import rescale_box

    seen = _Seen(views=[sample_indices(clip.num_frames, first_view)])
    for index in range(1, len(messages)):
        message = messages[index]
        if message.role == "user":
            window = _ZOOM_TURN.search(message.text)
            if window is not None:
                seen.views.append(zoom_indices(seen.views[-1], (int(window[1]), int(window[2])), first_view))
            continue
        asked = messages[index - 1]
        if _GROUND in asked.text:
            image = next(p.image for p in asked.parts if isinstance(p, ImagePart))
            answer = parse_box_answer(message.text)
            if answer.ok and answer.first is not None:
                box = rescale_box(
                    answer.first.coords, convention="absolute", original_size=clip.clip.size, seen_size=image.size
                )
                seen.boxes.append(_landed_on(clip, seen.keyframes[-1][0], box))
            continue
        if _VERIFY in asked.text:
            continue
        look = parse_look_answer(message.text, len(seen.views[-1]))
        if look.ok and look.action == "select" and look.objects:
            seen.keyframes.append((seen.views[-1][look.objects[0].sample_idx], len(seen.views) - 1))
    return seen


def oracle_responder(oracle: LongClipOracle) -> Any:
    """A :mod:`revseg.testing.chat_server` responder that answers as ``oracle`` does, from the request alone.

    Each request's messages (base64 images and text) are decoded back into the messages
    the graph built, so an ``openai:`` run against the chat server takes the same turns
    as a run with the oracle in-process: for per-turn latency over HTTP.
    """
    import base64
    import io

    from PIL import Image

    from revseg.policies.base import TextPart

    def part(block: dict[str, Any]) -> ImagePart | TextPart:
        if block.get("type") == "image_url":
            data = block["image_url"]["url"].split(",", 1)[1]
            return ImagePart(Image.open(io.BytesIO(base64.b64decode(data))))  # lazy: pixels decode on first use
        return TextPart(block.get("text", ""))

    def respond(request: dict[str, Any]) -> str:
        messages = []
        for message in request["messages"]:
            content = message["content"]
            parts = (TextPart(content),) if isinstance(content, str) else tuple(part(b) for b in content)
            messages.append(Message(role=message["role"], parts=parts))
        return oracle.generate(messages, SamplingParams()).text

    return respond
