"""``folder``: a folder of JPEG/PNG frames, sorted naturally by the number in the file name."""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path
from typing import ClassVar

import numpy as np

from revseg.errors import VideoError
from revseg.tools.readers.base import FRAME_EXTENSIONS, BaseReader, one_line
from revseg.trajectory import VideoRef


def natural_key(name: str) -> tuple[tuple[int, int | str], ...]:
    """Sort key that orders ``2.jpg`` before ``10.jpg``: digit runs compare as numbers, text case-insensitively.

    The one natural order of revseg: frame folders, benchmark videos, expressions and frame
    lists all sort with it, so orders computed in different places agree. Names equal but
    for case end with the name itself, so the order stays total and deterministic.
    """
    parts = re.split(r"(\d+)", name)
    return (*((0, int(p)) if p.isdigit() else (1, p.lower()) for p in parts if p), (2, name))


class FolderReader(BaseReader):
    """A folder of JPEG/PNG frames, the way benchmarks ship videos.

    Files are sorted naturally by name (hidden files such as macOS ``._00000.jpg`` are
    skipped); every frame must have the same size, checked from the image headers at
    open so a bad folder fails before any model runs. ``frame_names`` are the file
    stems, so outputs can be named like the source frames.
    """

    backend: ClassVar[str] = "folder"

    def __init__(self, path: str | Path) -> None:
        from PIL import Image, UnidentifiedImageError

        folder = Path(path)
        if not folder.is_dir():
            raise VideoError(f"{folder}: the folder backend reads a folder of frames, not a file")
        files = sorted(
            (p for p in folder.iterdir() if p.suffix.lower() in FRAME_EXTENSIONS and not p.name.startswith(".")),
            key=lambda p: natural_key(p.name),
        )
        if not files:
            subfolders = sum(1 for p in folder.iterdir() if p.is_dir())
            hint = f"; it holds {subfolders} subfolders: pass one video's folder" if subfolders else ""
            raise VideoError(f"{folder}: no frames in folder (expected {', '.join(FRAME_EXTENSIONS)} files){hint}")
        size: tuple[int, int] | None = None
        for file in files:
            try:
                with Image.open(file) as image:
                    file_size = image.size
            except (OSError, UnidentifiedImageError) as exc:
                raise VideoError(f"{file}: not a readable image ({one_line(exc)})") from exc
            if size is None:
                size = file_size
            elif file_size != size:
                raise VideoError(
                    f"{file}: frame size {file_size[0]}x{file_size[1]} differs from {size[0]}x{size[1]}"
                    f" of {files[0].name}; all frames of a video must have one size"
                )
        assert size is not None
        self._files = files
        super().__init__(
            VideoRef(
                path=str(folder), num_frames=len(files), width=size[0], height=size[1], fps=None, backend=self.backend
            )
        )

    @property
    def frame_names(self) -> list[str]:
        """File stems in frame order (``00000`` for ``00000.jpg``)."""
        return [p.stem for p in self._files]

    def _load(self, index: int) -> np.ndarray:
        from PIL import Image, UnidentifiedImageError

        file = self._files[index]
        try:
            with Image.open(file) as image:
                frame = np.array(image.convert("RGB"))  # writable, like the decoders' frames
        except (OSError, UnidentifiedImageError) as exc:
            raise VideoError(f"{file}: cannot decode frame {index} ({one_line(exc)})") from exc
        if frame.shape[:2] != (self._ref.height, self._ref.width):
            raise VideoError(f"{file}: decoded size {frame.shape[1]}x{frame.shape[0]} differs from its header")
        return frame

    def _read_sorted(self, indices: list[int]) -> dict[int, np.ndarray]:
        return {i: self._load(i) for i in indices}

    def _iter_range(self, start: int, stop: int) -> Iterator[np.ndarray]:
        for index in range(start, stop):
            yield self._load(index)
