"""Synthetic benchmarks in each public layout, and a policy that answers from the query: for eval tests.

Each ``write_*`` function writes a tiny dataset (small JPEG frames, static rectangular
objects) in exactly the layout the benchmark's release ships, from the same description
(a list of :class:`SyntheticVideo`), so tests of readers, the runner and the scorers run
on real files. :class:`QueryBoxPolicy` reads its answers from the query text (``"box x1
y1 x2 y2"``, several joined by ``and``; ``"nothing"`` for no target; anything else does not
parse), so with :class:`~revseg.testing.fakes.BoxTracker` the predicted masks, and hence
the scores, are known in advance; :func:`query_box_responder` gives the same answers
through :mod:`revseg.testing.chat_server` for runs with the real ``openai`` policy.
"""

from __future__ import annotations

import asyncio
import json
import os
import re
import time
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np

from revseg.policies.base import Generation, ImagePart, Message
from revseg.settings import SamplingParams
from revseg.trajectory import PolicyInfo

Box = tuple[int, int, int, int]
SIZE = (64, 48)
"""(width, height) of synthetic frames."""

_BOX = re.compile(r"box (\d+) (\d+) (\d+) (\d+)")
_QUERY = re.compile(r"find '(.*?)' with temporal", re.S)
_DESCRIPTION = re.compile(r"detect '(.*?)' with bbox", re.S)


@dataclass(frozen=True)
class SyntheticExpression:
    """An expression: its id, the query text, the objects (indices into the video's boxes) it refers to.

    ``type_id`` is ReVOS' (0 referring, 1 reasoning, 2 no target).
    """

    exp_id: str
    query: str
    objects: tuple[int, ...]
    type_id: int = 0


@dataclass(frozen=True)
class SyntheticVideo:
    """A video of ``num_frames`` frames with static rectangular objects (x1, y1, x2, y2; exclusive ends)."""

    name: str
    num_frames: int
    boxes: tuple[Box, ...]
    expressions: tuple[SyntheticExpression, ...] = ()
    size: tuple[int, int] = SIZE

    def frame_names(self) -> list[str]:
        """``00000``, ``00001``, ..."""
        return [f"{i:05d}" for i in range(self.num_frames)]

    def object_mask(self, index: int) -> np.ndarray:
        """(H, W) bool mask of one object."""
        width, height = self.size
        mask = np.zeros((height, width), dtype=bool)
        x1, y1, x2, y2 = self.boxes[index]
        mask[y1:y2, x1:x2] = True
        return mask

    def union_mask(self, objects: Sequence[int]) -> np.ndarray:
        """(H, W) bool union of several objects (empty for none)."""
        width, height = self.size
        mask = np.zeros((height, width), dtype=bool)
        for index in objects:
            mask |= self.object_mask(index)
        return mask


def box_query(*boxes: Box) -> str:
    """The query :class:`QueryBoxPolicy` answers with these boxes."""
    return " and ".join(f"box {x1} {y1} {x2} {y2}" for x1, y1, x2, y2 in boxes)


def default_videos() -> list[SyntheticVideo]:
    """Three small videos with single-object, multi-object, no-target and failing expressions.

    Per video (``objects`` indexes ``boxes``; queries name the true boxes unless noted):

    - ``cat``: 8 frames, 2 objects. ``0`` referring to object 0; ``1`` reasoning, both
      objects (multi-object); ``2`` no target, answered with no target.
    - ``dog``: 6 frames, 1 object. ``0`` referring, answered with the wrong box (J = 0);
      ``1`` reasoning, unparseable turn 1 (scores 0).
    - ``rain/street``: 7 frames, 2 objects, a nested video id. ``0`` referring to object 1;
      ``1`` reasoning to object 0, answered with an unparseable box (turn 2 fails); ``2``
      no target, answered with object 0's box.
    """
    cat = SyntheticVideo("cat", 8, ((8, 8, 24, 32), (40, 12, 56, 40)))
    dog = SyntheticVideo("dog", 6, ((16, 16, 48, 40),))
    street = SyntheticVideo("rain/street", 7, ((0, 0, 16, 16), (32, 24, 64, 48)))
    return [
        SyntheticVideo(
            cat.name,
            cat.num_frames,
            cat.boxes,
            (
                SyntheticExpression("0", box_query(cat.boxes[0]), (0,), 0),
                SyntheticExpression("1", box_query(*cat.boxes), (0, 1), 1),
                SyntheticExpression("2", "nothing like a giraffe", (), 2),
            ),
        ),
        SyntheticVideo(
            dog.name,
            dog.num_frames,
            dog.boxes,
            (
                SyntheticExpression("0", box_query((0, 0, 8, 8)), (0,), 0),
                SyntheticExpression("1", "the dog that is about to jump", (0,), 1),
            ),
        ),
        SyntheticVideo(
            street.name,
            street.num_frames,
            street.boxes,
            (
                SyntheticExpression("0", box_query(street.boxes[1]), (1,), 0),
                SyntheticExpression("1", "badbox the umbrella", (0,), 1),
                SyntheticExpression("2", box_query(street.boxes[0]), (), 2),
            ),
        ),
    ]


# --- frames and annotations --------------------------------------------------------------------


def write_frames(folder: Path, video: SyntheticVideo, names: Sequence[str] | None = None) -> None:
    """JPEG frames: a grey background with each object a flat coloured rectangle whose shade changes per frame.

    Flat colours keep the PNG-encoded images the policy receives small and quick to make.
    """
    from PIL import Image

    folder.mkdir(parents=True, exist_ok=True)
    width, height = video.size
    for index, name in enumerate(names or video.frame_names()):
        frame = np.full((height, width, 3), 96, dtype=np.uint8)
        for number, (x1, y1, x2, y2) in enumerate(video.boxes):
            frame[y1:y2, x1:x2] = ((70 * (number + 1)) % 256, 200 - 40 * number, (40 + 30 * index) % 200)
        Image.fromarray(frame).save(folder / f"{name}.jpg", quality=92)


def _rle(mask: np.ndarray) -> dict[str, Any]:
    from revseg.tools.masks import encode_rle

    return encode_rle(mask)


def _write_json(path: Path, data: Any) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(data))


def _mask_dict_entries(videos: Sequence[SyntheticVideo]) -> tuple[dict[str, list[Any]], dict[tuple[str, int], int]]:
    """``mask_dict.json`` content (one anno id per object) and the (video, object) -> anno id map."""
    masks: dict[str, list[Any]] = {}
    ids: dict[tuple[str, int], int] = {}
    for video in videos:
        for number in range(len(video.boxes)):
            anno_id = len(ids) + 100
            ids[(video.name, number)] = anno_id
            rle = _rle(video.object_mask(number))
            masks[str(anno_id)] = [rle] * video.num_frames
    return masks, ids


def _meta(videos: Sequence[SyntheticVideo], ids: dict[tuple[str, int], int], *, revos: bool) -> dict[str, Any]:
    meta: dict[str, Any] = {}
    for video in videos:
        expressions = {}
        for exp in video.expressions:
            entry: dict[str, Any] = {
                "exp": exp.query,
                "obj_id": list(exp.objects),
                "anno_id": [ids[(video.name, o)] for o in exp.objects],
            }
            if revos:
                entry["type_id"] = exp.type_id
            expressions[exp.exp_id] = entry
        meta[video.name] = {"vid_id": len(meta), "frames": video.frame_names(), "expressions": expressions}
    return {"videos": meta}


def write_revos(root: Path, videos: Sequence[SyntheticVideo] | None = None, split: str = "valid") -> Path:
    """ReVOS: ``JPEGImages/``, ``mask_dict.json``, ``mask_dict_foreground.json``, ``meta_expressions_<split>_.json``."""
    videos = list(videos or default_videos())
    for video in videos:
        write_frames(root / "JPEGImages" / video.name, video)
    masks, ids = _mask_dict_entries(videos)
    _write_json(root / "mask_dict.json", masks)
    foreground = {v.name: {"masks_rle": [_rle(v.union_mask(range(len(v.boxes))))] * v.num_frames} for v in videos}
    _write_json(root / "mask_dict_foreground.json", foreground)
    _write_json(root / f"meta_expressions_{split}_.json", _meta(videos, ids, revos=True))
    return root


def write_mevis(
    root: Path,
    videos: Sequence[SyntheticVideo] | None = None,
    split: str = "valid_u",
    *,
    version: str = "v2",
    meta_name: str | None = None,
) -> Path:
    """MeViS: ``<split>/JPEGImages/``, the split's meta file, ``<split>/mask_dict.json`` (not for valid).

    ``v2`` keeps no-target expressions (empty ``anno_id``); ``v1``, which has none, leaves them out.
    The meta file has the release's name (v1 ``meta_expressions.json``; v2
    ``meta_expressions_v2.json``, ``meta_expressions_v2_release.json`` in ``valid``) unless
    ``meta_name`` gives another.
    """
    if meta_name is None:
        meta_name = "meta_expressions.json" if version == "v1" else "meta_expressions_v2.json"
        meta_name = "meta_expressions_v2_release.json" if version == "v2" and split == "valid" else meta_name
    videos = list(videos or default_videos())
    if version == "v1":
        videos = [replace(v, expressions=tuple(e for e in v.expressions if e.objects)) for v in videos]
    for video in videos:
        write_frames(root / split / "JPEGImages" / video.name, video)
    masks, ids = _mask_dict_entries(videos)
    if split != "valid":
        _write_json(root / split / "mask_dict.json", masks)
    _write_json(root / split / meta_name, _meta(videos, ids, revos=False))
    return root


def write_refytvos(root: Path, videos: Sequence[SyntheticVideo] | None = None, *, every: int = 2) -> Path:
    """Ref-YouTube-VOS valid: all frames in ``valid/JPEGImages``, the meta file listing every ``every``-th one.

    A test video listed in ``meta_expressions/test`` is added to the valid meta too, as in
    the competition's files, so readers must drop it.
    """
    videos = list(videos or default_videos())
    meta: dict[str, Any] = {}
    for video in videos:
        write_frames(root / "valid" / "JPEGImages" / video.name, video)
        expressions = {e.exp_id: {"exp": e.query} for e in video.expressions}
        meta[video.name] = {"expressions": expressions, "frames": video.frame_names()[::every]}
    meta["test-only"] = {"expressions": {"0": {"exp": "a test video"}}, "frames": ["00000"]}
    _write_json(root / "meta_expressions" / "valid" / "meta_expressions.json", {"videos": meta})
    test = {"videos": {"test-only": meta["test-only"]}}
    _write_json(root / "meta_expressions" / "test" / "meta_expressions.json", test)
    return root


def write_refytvos_train(root: Path, videos: Sequence[SyntheticVideo] | None = None, *, every: int = 2) -> Path:
    """Ref-YouTube-VOS train: ``train/JPEGImages``, palette ``train/Annotations`` (value = object id + 1), meta.

    Only single-object expressions are kept (train expressions refer to one object each).
    """
    from PIL import Image

    videos = list(videos or default_videos())
    meta: dict[str, Any] = {}
    for video in videos:
        write_frames(root / "train" / "JPEGImages" / video.name, video)
        ids = np.zeros(video.size[::-1], dtype=np.uint8)
        for index in range(len(video.boxes)):
            ids[video.object_mask(index)] = index + 1
        folder = root / "train" / "Annotations" / video.name
        folder.mkdir(parents=True, exist_ok=True)
        for name in video.frame_names():
            Image.fromarray(ids, mode="L").convert("P").save(folder / f"{name}.png")
        expressions = {
            e.exp_id: {"exp": e.query, "obj_id": str(e.objects[0] + 1)}
            for e in video.expressions
            if len(e.objects) == 1
        }
        meta[video.name] = {"expressions": expressions, "frames": video.frame_names()[::every]}
    _write_json(root / "meta_expressions" / "train" / "meta_expressions.json", {"videos": meta})
    return root


def write_reasonvos(root: Path, videos: Sequence[SyntheticVideo] | None = None, source: str = "MOSE") -> Path:
    """ReasonVOS: ``JPEGImages/``, ``Annotations/<source>_<video>_<obj_id>/`` (0/255 PNGs), ``meta_expressions.json``.

    Expression ``n`` gets ``obj_id`` n (its mask folder holds the union of its objects),
    so predictions live at ``<video>/<n>/``. Nested video ids are not used by ReasonVOS;
    their ``/`` becomes ``_`` here.
    """
    from PIL import Image

    videos = list(videos or default_videos())
    meta: dict[str, Any] = {}
    for video in videos:
        name = video.name.replace("/", "_")
        write_frames(root / "JPEGImages" / name, video)
        expressions = {}
        for number, exp in enumerate(video.expressions):
            obj_id = int(exp.exp_id)
            expressions[str(number)] = {"exp_text": exp.query, "obj_id": obj_id}
            folder = root / "Annotations" / f"{source.lower()}_{name}_{obj_id}"
            folder.mkdir(parents=True, exist_ok=True)
            mask = video.union_mask(exp.objects).astype(np.uint8) * 255
            for frame in video.frame_names():
                Image.fromarray(mask, mode="L").save(folder / f"{frame}.png")
        meta[name] = {"source": source, "frames": video.frame_names(), "is_sent": True, "expressions": expressions}
    _write_json(root / "meta_expressions.json", {"videos": meta})
    return root


LONGRVOS_TYPES = ("static", "dynamic", "static+dynamic")
LONGRVOS_ABSENT: dict[str, dict[int, tuple[int, ...]]] = {"cat": {0: (6, 7)}}
"""Frames on which an object is out of view in :func:`write_longrvos` by default: ``cat``'s object 0 leaves
for its last two frames (no mask files there), so its ground truth is empty on them."""


def write_longrvos(
    root: Path,
    videos: Sequence[SyntheticVideo] | None = None,
    split: str = "valid",
    *,
    absent: dict[str, dict[int, tuple[int, ...]]] | None = None,
    annotations: bool = True,
) -> Path:
    """Long-RVOS: ``<split>/JPEGImages/``, ``<split>/Annotations/<video>/<obj_id>/<frame>.png``, meta file.

    Only single-object expressions are kept (a Long-RVOS expression refers to one object); the
    object with index n has ``obj_id`` n + 1, and the kept expressions take the description
    types static, dynamic, static+dynamic in turn. Masks are 0/255 PNGs written only for the
    frames the object is in: ``absent`` (default :data:`LONGRVOS_ABSENT`) maps a video to the
    frames each of its objects is out of view. ``annotations=False`` leaves the masks out, as
    the public release does for ``test``.
    """
    from PIL import Image

    videos = list(videos or default_videos())
    absent = LONGRVOS_ABSENT if absent is None else absent
    meta: dict[str, Any] = {}
    kept = 0
    for video in videos:
        write_frames(root / split / "JPEGImages" / video.name, video)
        expressions = {}
        for exp in video.expressions:
            if len(exp.objects) != 1:
                continue
            number = exp.objects[0]
            entry = {"exp": exp.query, "obj_id": number + 1, "type": LONGRVOS_TYPES[kept % 3]}
            expressions[exp.exp_id], kept = entry, kept + 1
        meta[video.name] = {"frames": video.frame_names(), "expressions": expressions}
        if not annotations:
            continue
        for number in range(len(video.boxes)):
            folder = root / split / "Annotations" / video.name / str(number + 1)
            folder.mkdir(parents=True, exist_ok=True)
            mask = Image.fromarray(video.object_mask(number).astype(np.uint8) * 255, mode="L")
            hidden = absent.get(video.name, {}).get(number, ())
            for index, name in enumerate(video.frame_names()):
                if index not in hidden:
                    mask.save(folder / f"{name}.png")
    _write_json(root / split / "meta_expressions.json", {"videos": meta})
    return root


def refdavis_queries(video: SyntheticVideo) -> list[tuple[int, str]]:
    """Ref-DAVIS17 expressions of a video in ReferFormer's order: per object, 4 (object id, query) pairs.

    Annotators 0 and 2 name the object's true box, annotator 1 the box shifted by 8 pixels to
    the right, annotator 3 gives an unparseable answer.
    """
    queries = []
    for number, (x1, y1, x2, y2) in enumerate(video.boxes, start=1):
        width = video.size[0]
        shifted = (min(x1 + 8, width - 1), y1, min(x2 + 8, width), y2)
        queries += [
            (number, box_query((x1, y1, x2, y2))),
            (number, box_query(shifted)),
            (number, box_query((x1, y1, x2, y2))),
            (number, f"the object number {number}"),
        ]
    return queries


def write_refdavis(root: Path, videos: Sequence[SyntheticVideo] | None = None, *, layout: str = "converted") -> Path:
    """Ref-DAVIS17 val, in ReferFormer's converted layout or as the official downloads (``layout="official"``)."""
    from PIL import Image

    from revseg.tools.masks import davis_palette

    videos = list(videos or default_videos())
    videos = [SyntheticVideo(v.name.replace("/", "-"), v.num_frames, v.boxes, v.expressions, v.size) for v in videos]
    if layout == "converted":
        images, annotations = root / "valid" / "JPEGImages", root / "valid" / "Annotations"
    else:
        images = root / "DAVIS" / "JPEGImages" / "480p"
        annotations = root / "DAVIS" / "Annotations_unsupervised" / "480p"
    meta: dict[str, Any] = {}
    texts: list[list[str]] = [[], [], [], []]
    for video in videos:
        write_frames(images / video.name, video)
        labels = np.zeros(video.size[::-1], dtype=np.uint8)
        for number in range(len(video.boxes)):
            labels[video.object_mask(number)] = number + 1
        (annotations / video.name).mkdir(parents=True, exist_ok=True)
        for frame in video.frame_names():
            image = Image.fromarray(labels, mode="P")
            image.putpalette(davis_palette())
            image.save(annotations / video.name / f"{frame}.png")
        queries = refdavis_queries(video)
        expressions = {str(n): {"exp": q, "obj_id": str(o)} for n, (o, q) in enumerate(queries)}
        meta[video.name] = {"expressions": expressions, "frames": video.frame_names()}
        for n, (obj, query) in enumerate(queries):
            texts[n % 4].append(f'{video.name} {obj} "{query}"')
    if layout == "converted":
        _write_json(root / "meta_expressions" / "valid" / "meta_expressions.json", {"videos": meta})
    else:
        sets = root / "DAVIS" / "ImageSets" / "2017"
        sets.mkdir(parents=True, exist_ok=True)
        (sets / "val.txt").write_text("".join(f"{v.name}\n" for v in videos))
        folder = root / "davis_text_annotations"
        folder.mkdir(parents=True, exist_ok=True)
        names = ["Davis17_annot1.txt", "Davis17_annot1_full_video.txt", "Davis17_annot2.txt",
                 "Davis17_annot2_full_video.txt"]  # fmt: skip
        for name, lines, encoding in zip(names, texts, ["utf-8", "utf-8", "latin-1", "latin-1"], strict=True):
            (folder / name).write_text("\n".join(lines) + "\n", encoding=encoding)
    return root


# --- a policy that answers from the query ----------------------------------------------------------


def _answers(query: str) -> tuple[str, list[str]]:
    """Turn 1's answer to a query, and the descriptions it names."""
    if "nothing" in query:
        return "<think>Nothing in the video matches.</think> <answer>[]</answer>", []
    if query.startswith("badbox"):
        descriptions = ["a thing without a box"]
    else:
        descriptions = [f"box {a} {b} {c} {d}" for a, b, c, d in _BOX.findall(query)]
    if not descriptions:
        return "I am not sure what the question is about.", []
    objects = ", ".join(f"{{'frame_idx': 0, 'object description': '{d}'}}" for d in descriptions)
    return f"<think>The query names {len(descriptions)} object(s).</think> <answer>[{objects}]</answer>", descriptions


def _box_answer(description: str, scale: tuple[float, float] = (1.0, 1.0)) -> str:
    match = _BOX.search(description)
    if match is None:
        return "I cannot find it in this frame."
    x1, y1, x2, y2 = (int(v) for v in match.groups())
    sx, sy = scale
    return f'[{{"bbox_2d": [{x1 * sx:g}, {y1 * sy:g}, {x2 * sx:g}, {y2 * sy:g}], "label": "target"}}]'


@dataclass
class QueryBoxPolicy:
    """A policy whose answers are written in the query (see the module docstring); boxes in original pixels.

    ``frame_size`` is the videos' (width, height): it is what the policy claims to see, so
    boxes pass through unscaled. ``delay_s`` adds latency per turn, like a real model.
    """

    frame_size: tuple[int, int] = SIZE
    delay_s: float = 0.0
    calls: int = field(default=0, compare=False)

    @property
    def info(self) -> PolicyInfo:
        """A fixed identity."""
        return PolicyInfo(spec="query-box:test", backend="query-box", model="query-box")

    def seen_size(self, width: int, height: int) -> tuple[int, int]:
        """The original frame size: boxes in the query are in original pixels."""
        return self.frame_size

    def generate(self, messages: Sequence[Message], sampling: SamplingParams) -> Generation:
        """Answer turn 1 (several images) from the query, turn 2 (one image) from the description."""
        if self.delay_s:
            time.sleep(self.delay_s)
        return self._answer(messages)

    async def agenerate(self, messages: Sequence[Message], sampling: SamplingParams) -> Generation:
        """The same answer, sleeping ``delay_s`` without blocking the event loop."""
        if self.delay_s:
            await asyncio.sleep(self.delay_s)
        return self._answer(messages)

    def _answer(self, messages: Sequence[Message]) -> Generation:
        self.calls += 1
        last = messages[-1]
        images = sum(isinstance(p, ImagePart) for p in last.parts)
        if images > 1:
            match = _QUERY.search(last.text)
            text = _answers(match.group(1) if match else "")[0]
        else:
            match = _DESCRIPTION.search(last.text)
            text = _box_answer(match.group(1) if match else "")
        ids = list(range(len(text.split())))
        return Generation(text=text, token_ids=ids, logprobs=[-0.1] * len(ids))


@dataclass(frozen=True)
class QueryBoxAgent:
    """A picklable agent factory (QueryBoxPolicy + BoxTracker), so worker processes and Ray actors can build it."""

    delay_s: float = 0.0
    frame_size: tuple[int, int] = SIZE
    start_together: str | None = None
    """A folder: each process building an agent waits there until ``parties`` processes have, so work
    spreads over every worker whatever the machine's load (a test that checks the spread can rely on it)."""
    parties: int = 1

    def __call__(self) -> Any:
        """A fresh ReVSegAgent that writes no overlay or HTML report."""
        from revseg.agents import ReVSegAgent
        from revseg.testing.fakes import BoxTracker

        if self.start_together is not None:
            _wait_for_parties(Path(self.start_together), self.parties)
        policy = QueryBoxPolicy(self.frame_size, self.delay_s)
        return ReVSegAgent(policy, BoxTracker(), overlay=False, report=False, progress=False)


def _wait_for_parties(folder: Path, parties: int, timeout_s: float = 120.0) -> None:
    """Mark this process as arrived in ``folder`` and wait until ``parties`` processes have (a file barrier)."""
    folder.mkdir(parents=True, exist_ok=True)
    (folder / str(os.getpid())).touch()
    deadline = time.monotonic() + timeout_s
    while sum(1 for _ in folder.iterdir()) < parties:
        if time.monotonic() > deadline:
            raise TimeoutError(f"only {sum(1 for _ in folder.iterdir())} of {parties} processes reached {folder}")
        time.sleep(0.02)


def query_box_responder(frame_size: tuple[int, int] = SIZE, seen_size: tuple[int, int] = (840, 840)) -> Any:
    """A :func:`~revseg.testing.chat_server.chat_server` responder giving QueryBoxPolicy's answers.

    The ``openai`` policy sends 840 x 840 keyframes and reads boxes as pixels of that image,
    so boxes are scaled from ``frame_size`` to ``seen_size``.
    """
    from revseg.testing.chat_server import count_images

    scale = (seen_size[0] / frame_size[0], seen_size[1] / frame_size[1])

    def respond(request: dict[str, Any]) -> str:
        last = request["messages"][-1]
        content = last.get("content")
        text = "".join(p.get("text", "") for p in content if isinstance(p, dict)) if isinstance(content, list) else ""
        if count_images(last) > 1:
            match = _QUERY.search(text)
            return _answers(match.group(1) if match else "")[0]
        match = _DESCRIPTION.search(text)
        return _box_answer(match.group(1) if match else "", scale)

    return respond
