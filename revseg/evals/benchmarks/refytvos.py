"""Ref-YouTube-VOS (URVOS, ECCV 2020): the ``valid`` split, scored by the benchmark's server.

Layout of the public release (the CodaLab competition's download, organised as ReferFormer's
``docs/data.md`` describes), the data root being ``ref-youtube-vos/``::

    valid/JPEGImages/<video>/<frame>.jpg
    meta_expressions/valid/meta_expressions.json   {"videos": {"<video>": {"frames": [...],
                                                       "expressions": {"<exp_id>": {"exp": str}}}}}
    meta_expressions/test/meta_expressions.json    (optional: the test videos, see below)

The competition's valid expressions file also lists the 305 test videos; ReferFormer (and
everyone after it) drops the videos that appear in ``meta_expressions/test`` to keep the 202
valid ones. We do the same when that file is there, and say so in a note when it is not.
Only the frames the meta file lists (every fifth frame of ``valid``) are segmented.

There is no local ground truth: ``revseg eval ref-youtube-vos`` writes ``submission.zip``
holding ``Annotations/<video>/<exp_id>/<frame>.png`` (0/255 greyscale PNGs), the layout the
server expects.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import ClassVar

from revseg.evals.base import (
    Benchmark,
    PaperRow,
    Sample,
    expression_text,
    expressions_of,
    inside,
    meta_videos,
    safe_name,
)

VALID_VIDEOS = 202


class RefYouTubeVOS(Benchmark):
    """Ref-YouTube-VOS ``valid`` (202 videos, scored by the server)."""

    name: ClassVar[str] = "ref-youtube-vos"
    title: ClassVar[str] = "Ref-YouTube-VOS"
    splits: ClassVar[tuple[str, ...]] = ("valid",)
    default_split: ClassVar[str] = "valid"
    split_aliases: ClassVar[dict[str, str]] = {"val": "valid"}
    server_splits: ClassVar[frozenset[str]] = frozenset({"valid"})
    submission_prefix: ClassVar[str] = "Annotations"
    paper: ClassVar[tuple[PaperRow, ...]] = (PaperRow("valid", J=71.1, F=75.2, JF=73.1),)

    def read_samples(self) -> Iterator[Sample]:
        """One sample per expression of the valid videos (test videos removed when the test meta is present)."""
        meta_path = self.root / "meta_expressions" / self.split / "meta_expressions.json"
        videos = meta_videos(meta_path, "Ref-YouTube-VOS valid meta expressions")
        test_path = self.root / "meta_expressions" / "test" / "meta_expressions.json"
        if test_path.is_file():
            test_videos = set(meta_videos(test_path, "Ref-YouTube-VOS test meta expressions"))
            videos = {k: v for k, v in videos.items() if k not in test_videos}
        else:
            self.notes.append(
                f"{test_path} not found: every video of the valid meta file is used ({len(videos)}); the "
                f"server's valid split has {VALID_VIDEOS} (the file also lists the test videos)."
            )
        images = self.root / self.split / "JPEGImages"
        for video_id, entry in videos.items():
            where = f"meta_expressions/{self.split}/meta_expressions.json, video {video_id!r}"
            video = safe_name(video_id, where, "video id", nested=True)
            frames = self.frame_files_for(inside(images, video), entry.get("frames"), where)
            for exp_id, expression in expressions_of(video, entry, meta_path).items():
                here = f"{where}, expression {exp_id!r}"
                yield Sample(
                    video=video,
                    expression=safe_name(exp_id, here, "expression id"),
                    query=expression_text(expression, here),
                    subset="all",
                    frames_dir=inside(images, video),
                    frame_files=frames,
                )
