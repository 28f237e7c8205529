"""A synthetic reasoning-segmentation task: clips of coloured shapes, exact masks, implicit queries.

Each :class:`ShapeClip` is a short clip (default 8 frames of 112 x 112) of two or three
flat-coloured shapes (square, circle, triangle; red, green, blue) on a plain background (or a
pale colour ramp, see :data:`BACKGROUNDS`).
Shapes move, grow or shrink, and some hide: they leave the frame or another shape moves
over them. Frames are rasterised here pixel by pixel, without anti-aliasing, so the
per-frame masks are exact: a shape's mask is precisely the pixels of its colour.

Every clip carries one query with a unique answer, of one of :data:`QUERY_KINDS`:

- ``name``: a plain referring query, "the red circle" or "the blue shape";
- ``grows`` / ``shrinks``: "the shape that grows" (no other shape grows), and the reverse;
- ``disappears``: "the shape that disappears" (it leaves the frame or is covered by
  another shape in the last frames; every other shape stays in full view);
- ``moves``: "the shape that moves" (every other shape stands still).

:class:`ShapesTeacher` is a policy that answers the chain's two turns from the ground truth
in the exact format the parsers call strict (keyframe = largest ground-truth box among
the sampled frames, so the soft temporal reward is 1; box = the ground-truth box on it),
for supervised warm-up data and for checking that a clip's ground truth scores 3.0.
"""

from __future__ import annotations

import asyncio
import dataclasses
import math
import zlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from revseg.policies.base import Generation, ImagePart, Message
from revseg.policies.parsing import parse_keyframe_answer
from revseg.settings import SamplingParams
from revseg.tools.boxes import box_area, mask_to_box
from revseg.tools.frames import sample_indices
from revseg.trajectory import BoxXYXY, PolicyInfo

COLOURS: dict[str, tuple[int, int, int]] = {"red": (220, 40, 40), "green": (40, 170, 60), "blue": (40, 80, 220)}
BACKGROUND = (235, 235, 235)
KINDS = ("square", "circle", "triangle")
QUERY_KINDS = ("name", "grows", "shrinks", "disappears", "moves")
QUERIES = {
    "grows": "the shape that grows",
    "shrinks": "the shape that shrinks",
    "disappears": "the shape that disappears",
    "moves": "the shape that moves",
}
SIZE = (112, 112)
"""(width, height) of the clips' frames."""
BACKGROUNDS = ("plain", "gradient")
"""``plain``: one flat grey. ``gradient``: a pale colour ramp, red rising left to right and green top
to bottom, so every background pixel tells where it is. A vision tower with rotary positions
only (Qwen2.5-VL's) sees a flat background the same everywhere; on the ramp even a tiny one
can read a shape's position off the background around it."""


@dataclass(frozen=True)
class ShapeTrack:
    """One shape over a clip: its look, and per frame its centre (x, y) and half-extent in pixels."""

    kind: str
    colour: str
    centres: tuple[tuple[float, float], ...]
    sizes: tuple[float, ...]

    @property
    def name(self) -> str:
        """``"red circle"``."""
        return f"{self.colour} {self.kind}"

    def coverage(self, t: int, size: tuple[int, int]) -> np.ndarray:
        """(H, W) bool: the pixels whose centres fall inside the shape on frame ``t`` (ignoring others)."""
        width, height = size
        ys, xs = np.mgrid[0:height, 0:width]
        px, py = xs + 0.5, ys + 0.5
        (cx, cy), s = self.centres[t], self.sizes[t]
        if self.kind == "square":
            return (np.abs(px - cx) <= s) & (np.abs(py - cy) <= s)
        if self.kind == "circle":
            return (px - cx) ** 2 + (py - cy) ** 2 <= s * s
        # An upright isosceles triangle: apex (cx, cy - s), base from (cx - s, cy + s) to (cx + s, cy + s).
        inside_base = py <= cy + s
        half_width = (py - (cy - s)) / 2.0  # the edges widen by 1/2 px per px downwards
        return inside_base & (py >= cy - s) & (np.abs(px - cx) <= half_width)


@dataclass(frozen=True)
class ShapeClip:
    """A clip of shapes drawn in list order (later shapes cover earlier ones), with one query."""

    name: str
    shapes: tuple[ShapeTrack, ...]
    target: int
    query: str
    query_kind: str
    size: tuple[int, int] = SIZE
    background: str = "plain"

    @property
    def num_frames(self) -> int:
        """Frames in the clip."""
        return len(self.shapes[0].sizes)

    @property
    def description(self) -> str:
        """The target in plain words, ``"the red circle"``: what turn 1 should describe."""
        return f"the {self.shapes[self.target].name}"

    def labels(self, t: int) -> np.ndarray:
        """(H, W) int16: the index of the shape visible at each pixel of frame ``t``, -1 for background."""
        width, height = self.size
        out = np.full((height, width), -1, dtype=np.int16)
        for index, shape in enumerate(self.shapes):
            out[shape.coverage(t, self.size)] = index
        return out

    def frame(self, t: int) -> np.ndarray:
        """(H, W, 3) uint8 RGB frame ``t``."""
        palette = np.array([*(COLOURS[s.colour] for s in self.shapes), BACKGROUND], dtype=np.uint8)
        labels = self.labels(t)
        out = palette[labels]  # label -1 picks the last row, the background
        if self.background == "gradient":
            ramp = background_ramp(self.size)
            out[labels < 0] = ramp[labels < 0]
        return out

    def mask(self, t: int, shape: int | None = None) -> np.ndarray:
        """(H, W) bool: where ``shape`` (default: the target) is visible on frame ``t``."""
        return self.labels(t) == (self.target if shape is None else shape)

    def target_mask(self, t: int) -> np.ndarray | None:
        """The target's mask on frame ``t``; None outside the clip (a ``MaskGroundTruth`` source)."""
        return self.mask(t) if 0 <= t < self.num_frames else None

    def target_box(self, t: int) -> BoxXYXY | None:
        """The target's ground-truth box on frame ``t`` (exclusive right/bottom), None when hidden."""
        return mask_to_box(self.mask(t))

    def write(self, folder: str | Path) -> Path:
        """Write the frames as ``00000.png``, ``00001.png``, ... (lossless, so masks stay exact); return the folder."""
        from PIL import Image

        out = Path(folder)
        out.mkdir(parents=True, exist_ok=True)
        for t in range(self.num_frames):
            Image.fromarray(self.frame(t)).save(out / f"{t:05d}.png")
        return out


def background_ramp(size: tuple[int, int]) -> np.ndarray:
    """(H, W, 3) uint8 of the ``gradient`` background: red 150-250 left to right, green 150-250 top to bottom, blue 200.

    Pale enough that no shape colour (each has two channels at 80 or below) is near it.
    """
    width, height = size
    ys, xs = np.mgrid[0:height, 0:width]
    red = 150 + 100 * (xs + 0.5) / width
    green = 150 + 100 * (ys + 0.5) / height
    return np.stack([red, green, np.full_like(red, 200.0)], axis=-1).round().astype(np.uint8)


# --------------------------------------------------------------------------- generation


def make_clips(
    seed: int,
    count: int,
    *,
    num_frames: int = 8,
    size: tuple[int, int] = SIZE,
    background: str = "plain",
    shape_scale: float = 1.0,
    max_shapes: int = 3,
) -> list[ShapeClip]:
    """``count`` clips from ``seed``, cycling through :data:`QUERY_KINDS`; the same seed gives the same clips.

    ``background`` (one of :data:`BACKGROUNDS`) changes only how frames are drawn: the
    layouts, queries and masks of a seed are the same on either. ``shape_scale`` and
    ``max_shapes`` make the task easier to see: larger shapes (sizes times ``shape_scale``)
    and 2 to ``max_shapes`` of them per clip (at most 3); the defaults draw the same clips
    as before these options existed.
    """
    if background not in BACKGROUNDS:
        raise ValueError(f"unknown background {background!r}; use one of {', '.join(BACKGROUNDS)}")
    rng = np.random.default_rng(seed)
    clips = [
        make_clip(
            rng,
            QUERY_KINDS[i % len(QUERY_KINDS)],
            f"s{seed}-{i:04d}",
            num_frames=num_frames,
            size=size,
            shape_scale=shape_scale,
            max_shapes=max_shapes,
        )
        for i in range(count)
    ]
    return [dataclasses.replace(clip, background=background) for clip in clips]


def make_clip(
    rng: np.random.Generator,
    query_kind: str,
    name: str,
    *,
    num_frames: int = 8,
    size: tuple[int, int] = SIZE,
    shape_scale: float = 1.0,
    max_shapes: int = 3,
) -> ShapeClip:
    """One clip whose query, of ``query_kind``, has exactly one answer (its ``target``).

    Layouts are drawn at random until no two shapes touch (apart from an occluder over
    its target); raises RuntimeError if none is found, which the default sizes never hit.
    """
    if query_kind not in QUERY_KINDS:
        raise ValueError(f"unknown query kind {query_kind!r}; use one of {', '.join(QUERY_KINDS)}")
    if num_frames < 4:
        raise ValueError(f"clips need at least 4 frames to show motion, got {num_frames}")
    if max_shapes not in (2, 3) or not 0.5 <= shape_scale <= 2.0:
        raise ValueError(f"max_shapes must be 2 or 3 and shape_scale in [0.5, 2], got {max_shapes}, {shape_scale}")
    for _ in range(500):
        clip = _try_clip(rng, query_kind, name, num_frames, size, shape_scale, max_shapes)
        if clip is not None:
            return clip
    raise RuntimeError(f"no layout without overlaps found for a {query_kind!r} clip of size {size}")


def _try_clip(
    rng: np.random.Generator,
    query_kind: str,
    name: str,
    num_frames: int,
    size: tuple[int, int],
    shape_scale: float = 1.0,
    max_shapes: int = 3,
) -> ShapeClip | None:
    width, height = size
    scale = min(width, height) / 112.0
    count = int(rng.integers(2, max_shapes + 1))
    kinds = rng.permutation(KINDS)[:count]
    colours = rng.permutation(list(COLOURS))[:count]
    target = int(rng.integers(count))
    ts = np.linspace(0.0, 1.0, num_frames)
    hide = query_kind == "disappears" or (query_kind == "name" and rng.random() < 0.3)
    # Only a square or a circle can cover another shape without outgrowing the frame.
    occluders = [i for i in range(count) if i != target and kinds[i] in ("square", "circle")]
    occluder = int(rng.choice(occluders)) if hide and occluders and rng.random() < 0.5 else None

    tracks: list[tuple[np.ndarray, np.ndarray]] = []  # per shape: centres (T, 2), sizes (T,)
    for i in range(count):
        is_target = i == target
        s0 = rng.uniform(10, 16) * scale * shape_scale
        if query_kind in ("grows", "shrinks"):
            direction = 1.0 if query_kind == "grows" else -1.0
            if not is_target:  # distractors stay the same size or change the other way
                direction = -direction if rng.random() < 0.5 else 0.0
        else:  # a named or moving target grows or shrinks too, so the best keyframe depends on the frames
            direction = float(rng.choice([-1.0, 1.0])) if (is_target and query_kind in ("name", "moves")) else 0.0
        if direction > 0:
            sizes = np.interp(ts, [0, 1], [s0 * 0.7, s0 * 1.6])
        elif direction < 0:
            sizes = np.interp(ts, [0, 1], [s0 * 1.6, s0 * 0.7])
        else:
            sizes = np.full(num_frames, s0)
        margin = float(np.max(sizes)) + 1
        start = rng.uniform([margin, margin], [width - margin, height - margin])
        if query_kind == "moves" and not is_target:  # only the target of "the shape that moves" moves
            end = start
        else:
            step = rng.uniform(18, 40) * scale
            angle = rng.uniform(0, 2 * math.pi)
            end = np.clip(
                start + step * np.array([math.cos(angle), math.sin(angle)]), margin, [width - margin, height - margin]
            )
        centres = start[None, :] + ts[:, None] * (end - start)[None, :]
        tracks.append((centres, sizes))

    order = list(range(count))
    if occluder is not None:
        _cover(tracks, target, occluder, str(kinds[occluder]), num_frames)
        order = [i for i in order if i != occluder] + [occluder]  # the occluder is drawn last, on top
    elif hide:
        _leave(tracks[target], num_frames, size, rng)
    shapes = tuple(
        ShapeTrack(
            kind=str(kinds[i]),
            colour=str(colours[i]),
            centres=tuple((float(x), float(y)) for x, y in tracks[i][0]),
            sizes=tuple(float(s) for s in tracks[i][1]),
        )
        for i in order
    )
    target_at = order.index(target)
    if query_kind == "name":
        shape = shapes[target_at]
        query = f"the {shape.name}" if rng.random() < 0.5 else f"the {shape.colour} shape"
    else:
        query = QUERIES[query_kind]
    clip = ShapeClip(name=name, shapes=shapes, target=target_at, query=query, query_kind=query_kind, size=size)
    return clip if _valid(clip, hide) else None


def _cover(tracks: list[tuple[np.ndarray, np.ndarray]], target: int, occluder: int, kind: str, num_frames: int) -> None:
    """Make ``occluder`` slide onto ``target`` and cover it whole from 3/4 of the clip on."""
    centres, sizes = tracks[target]
    reach = float(sizes.max())  # the target lies inside the square of this half-extent around its centre
    cover = reach + 1 if kind == "square" else reach * math.sqrt(2) + 1
    sizes_o = np.full(num_frames, cover)
    hidden_from = max(2, (3 * num_frames) // 4)
    start = tracks[occluder][0][0]
    path = np.stack([start + (k / hidden_from) * (centres[hidden_from] - start) for k in range(hidden_from)])
    tracks[occluder] = (np.concatenate([path, centres[hidden_from:]]), sizes_o)


def _leave(
    track: tuple[np.ndarray, np.ndarray], num_frames: int, size: tuple[int, int], rng: np.random.Generator
) -> None:
    """Make a shape slide out of the frame so that it is gone from 3/4 of the clip on."""
    centres, sizes = track
    width, height = size
    gone_from = max(2, (3 * num_frames) // 4)
    start = centres[0].copy()
    s = float(sizes.max()) + 2
    exits = [(-s, start[1]), (width + s, start[1]), (start[0], -s), (start[0], height + s)]
    exit_point = np.array(exits[int(rng.integers(len(exits)))])
    for t in range(num_frames):
        centres[t] = exit_point if t >= gone_from else start + (t / gone_from) * (exit_point - start)


def _valid(clip: ShapeClip, hide: bool) -> bool:
    """Every shape the query does not hide is whole on every frame; a hiding target does hide.

    Whole = its visible pixels equal its own coverage, so nothing covers it and it is inside
    the frame. The target, when it hides, is visible on the first frame and hidden on the last.
    """
    for t in range(clip.num_frames):
        labels = clip.labels(t)
        for index, shape in enumerate(clip.shapes):
            if hide and index == clip.target:
                continue
            coverage = shape.coverage(t, clip.size)
            (cx, cy), s = shape.centres[t], shape.sizes[t]
            inside = s < cx < clip.size[0] - s and s < cy < clip.size[1] - s
            if not inside or not np.array_equal(labels == index, coverage):
                return False
    if hide:
        first, last = clip.mask(0), clip.mask(clip.num_frames - 1)
        return bool(first.sum() > 0.8 * clip.shapes[clip.target].coverage(0, clip.size).sum()) and not last.any()
    return True


# --------------------------------------------------------------------------- answers


KEYFRAME_RULES = ("largest", "visible", "clear")
"""How :class:`ShapesTeacher` picks turn 1's keyframe."""
CLEAR_FRACTION = 0.5
"""``clear`` keyframes: the target's box is at least this fraction of its largest among the sampled frames."""


def target_areas(clip: ShapeClip, sampled: Sequence[int]) -> list[float]:
    """The target's ground-truth box area on each sampled frame (0 where it is hidden)."""
    return [0.0 if (b := clip.target_box(t)) is None else box_area(b) for t in sampled]


def keyframe_index(clip: ShapeClip, sampled: Sequence[int]) -> int:
    """The position in ``sampled`` with the largest ground-truth box (first on ties): soft temporal reward 1."""
    return int(np.argmax(target_areas(clip, sampled)))


def visible_indices(clip: ShapeClip, sampled: Sequence[int], min_fraction: float = 0.0) -> list[int]:
    """The positions in ``sampled`` where the target is visible: binary temporal reward 1.

    With ``min_fraction`` > 0, only those where its box is at least that fraction of the
    largest box among ``sampled`` (a frame where it is clearly in view, not a sliver).
    """
    areas = target_areas(clip, sampled)
    largest = max(areas)
    return [i for i, area in enumerate(areas) if area > 0 and area >= min_fraction * largest]


def turn1_answer(clip: ShapeClip, sample_idx: int) -> str:
    """Turn 1 in the strict format: a short think block, then keyframe and description."""
    return (
        f"<think> {clip.description} </think> "
        f"<answer> [{{'frame_idx': {sample_idx}, 'object description': '{clip.description}'}}] </answer>"
    )


def turn2_answer(box: Sequence[float], seen: tuple[int, int], size: tuple[int, int], grid: int = 1) -> str:
    """Turn 2 in the strict format: ``box`` (original pixels) in the pixels of the image the model saw.

    ``grid`` rounds each coordinate to a multiple of it: a coarser grid has fewer distinct
    numbers for a small student to learn, at the cost of a looser box.
    """
    sx, sy = seen[0] / size[0], seen[1] / size[1]
    x1, y1, x2, y2 = (grid * round(v / grid) for v in (box[0] * sx, box[1] * sy, box[2] * sx, box[3] * sy))
    # A box thinner than the grid would round to zero width: keep one grid step, inside the image.
    if x2 <= x1:
        x1, x2 = (x1, x1 + grid) if x1 + grid <= seen[0] else (x2 - grid, x2)
    if y2 <= y1:
        y1, y2 = (y1, y1 + grid) if y1 + grid <= seen[1] else (y2 - grid, y2)
    return f'[{{"bbox_2d": [{x1}, {y1}, {x2}, {y2}]}}]'


class ShapesTeacher:
    """A policy that answers one clip's chain from its ground truth, in the strict format.

    Turn 1 names a sampled frame and describes the target by colour and kind: with
    ``keyframe="largest"`` the frame with the largest ground-truth box (the best choice under
    the soft temporal reward), with ``"visible"`` any frame that shows the target, drawn from
    ``seed`` and the clip's name (a teacher that knows where the target is but not which frame
    is best), with ``"clear"`` any frame where the target's box is at least
    :data:`CLEAR_FRACTION` of the largest (no slivers, whose boxes teach nothing). Turn 2 reads
    the keyframe back from the history and gives the ground-truth box, its coordinates rounded
    to multiples of ``grid``. ``seen_size`` must be the student's (the pixels a Qwen2.5-VL sees
    after its own resize; the identity suits sizes that are multiples of 28), so the boxes it
    writes are the ones the student should learn. Returns text only: its records are training
    data for supervised fine-tuning (``algorithm="rft"``), not GRPO.
    """

    def __init__(
        self,
        clip: ShapeClip,
        seen_size: Callable[[int, int], tuple[int, int]] | None = None,
        *,
        keyframe: str = "largest",
        seed: int = 0,
        grid: int = 1,
    ) -> None:
        if keyframe not in KEYFRAME_RULES:
            raise ValueError(f"unknown keyframe rule {keyframe!r}; use one of {', '.join(KEYFRAME_RULES)}")
        self.clip = clip
        self.keyframe = keyframe
        self.grid = grid
        self._seen = seen_size or (lambda w, h: (w, h))
        self._rng = np.random.default_rng([seed, zlib.crc32(clip.name.encode())])

    @property
    def info(self) -> PolicyInfo:
        """A fixed identity, distinct from any model's."""
        return PolicyInfo(spec="shapes-teacher", backend="teacher", model="ground-truth", box_convention="absolute")

    def seen_size(self, width: int, height: int) -> tuple[int, int]:
        """As the student sees an image of this size."""
        return self._seen(width, height)

    def generate(self, messages: Sequence[Message], sampling: SamplingParams) -> Generation:
        """Turn 1 when the conversation has one message, turn 2 when it holds turn 1's answer."""
        sampled = sample_indices(self.clip.num_frames, sum(isinstance(p, ImagePart) for p in messages[0].parts))
        if len(messages) == 1:
            if self.keyframe == "largest":
                index = keyframe_index(self.clip, sampled)
            else:
                least = CLEAR_FRACTION if self.keyframe == "clear" else 0.0
                index = int(self._rng.choice(visible_indices(self.clip, sampled, least) or [0]))
            return Generation(text=turn1_answer(self.clip, index), finish_reason="stop")
        first = parse_keyframe_answer(messages[1].text, len(sampled))
        frame = sampled[first.objects[0].sample_idx] if first.ok and first.objects else sampled[0]
        keyframe = next(p for p in messages[-1].parts if isinstance(p, ImagePart)).image
        box = self.clip.target_box(frame) or (0.0, 0.0, 1.0, 1.0)
        seen = self.seen_size(*keyframe.size)
        return Generation(text=turn2_answer(box, seen, self.clip.size, self.grid), finish_reason="stop")

    async def agenerate(self, messages: Sequence[Message], sampling: SamplingParams) -> Generation:
        """As :meth:`generate`."""
        await asyncio.sleep(0)
        return self.generate(messages, sampling)
