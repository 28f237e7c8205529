"""Render a run for people: the video with each object's mask tinted and the keyframe box drawn.

The overlay is for looking, not scoring, so it trades fidelity for size and speed:
H.264 in yuv420p (plays in every browser), long edge capped at 1280 by default, and
streamed frame by frame so a long video never sits in memory.
"""

from __future__ import annotations

import contextlib
from collections.abc import Sequence
from fractions import Fraction
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

import numpy as np

from revseg.errors import OutputError, VideoError
from revseg.tools.frames import FrameReader, stream_frames
from revseg.tools.masks import MAX_OBJECTS, davis_palette, read_masks_json
from revseg.trajectory import BoxXYXY

if TYPE_CHECKING:
    from PIL.Image import Image as PILImage

DEFAULT_FPS = 24.0
"""Frame rate for frame folders, which carry none (DAVIS is 24 fps)."""

BOX_COLOUR = (255, 255, 0)


class MaskSource(Protocol):
    """Per-frame object masks, read one frame at a time (``revseg.tools.masks.MaskSequence`` is one)."""

    num_frames: int
    height: int
    width: int

    def object_masks(self, frame_index: int) -> np.ndarray:
        """The (K, H, W) bool masks of one frame."""
        ...


def object_colours(num_objects: int) -> np.ndarray:
    """(K, 3) uint8 tints: the DAVIS palette colours of ids 1..K, brightened to show on video.

    Object k has the hue of its id in the mask PNGs, so the overlay and the PNGs agree.
    """
    palette = np.asarray(davis_palette(), dtype=np.int32).reshape(256, 3)
    return np.clip(palette[1 : num_objects + 1] * 2, 0, 255).astype(np.uint8)


def tint(frame: np.ndarray, masks: np.ndarray, colours: np.ndarray, alpha: float = 0.5) -> np.ndarray:
    """Blend each object's colour into its mask pixels; later objects are drawn over earlier ones."""
    out = frame.copy()
    for mask, colour in zip(masks, colours, strict=False):
        if mask.any():
            blended = out[mask].astype(np.float32) * (1.0 - alpha) + colour.astype(np.float32) * alpha
            out[mask] = np.clip(blended + 0.5, 0, 255).astype(np.uint8)
    return out


def draw_mask(image: PILImage, mask: np.ndarray, alpha: float = 0.5) -> PILImage:
    """``image`` with ``mask`` (any size, bool) tinted in object 1's colour (red); a new image.

    The mask is resized to the image with nearest-neighbour sampling, so the same frame
    and mask always give the same pixels: the look_again program's verify turn shows
    these images, and training rebuilds them from the recorded masks.
    """
    from PIL import Image

    mask = np.asarray(mask, dtype=bool)
    if mask.shape != (image.height, image.width):
        small = Image.fromarray(mask.astype(np.uint8) * 255).resize(image.size, Image.Resampling.NEAREST)
        mask = np.asarray(small) > 127
    tinted = tint(np.asarray(image.convert("RGB")), mask[None], object_colours(1), alpha)
    return Image.fromarray(tinted)


def output_size(width: int, height: int, max_long_edge: int | None) -> tuple[int, int]:
    """Even (width, height) for yuv420p: scaled so the long edge is at most ``max_long_edge``, else cropped by 1 px."""
    scale = 1.0
    if max_long_edge is not None and max(width, height) > max_long_edge:
        scale = max_long_edge / max(width, height)
    out_w = max(2, round(width * scale) // 2 * 2)
    out_h = max(2, round(height * scale) // 2 * 2)
    return out_w, out_h


def _draw_boxes(frame: np.ndarray, boxes: list[BoxXYXY], thickness: int, label: str | None) -> np.ndarray:
    from PIL import Image, ImageDraw, ImageFont

    image = Image.fromarray(frame)
    draw = ImageDraw.Draw(image)
    for x1, y1, x2, y2 in boxes:
        draw.rectangle((x1, y1, x2, y2), outline=BOX_COLOUR, width=thickness)
    if label and boxes:
        x1, y1 = boxes[0][0], boxes[0][1]
        font = ImageFont.load_default(size=max(10, 6 * thickness))
        draw.text((x1 + thickness + 2, y1 + thickness + 2), label, fill=BOX_COLOUR, font=font)
    return np.asarray(image)


def _as_boxes(box: BoxXYXY | Sequence[BoxXYXY] | None) -> list[BoxXYXY]:
    if box is None or len(box) == 0:
        return []
    first = box[0]
    if isinstance(first, int | float | np.number):
        x1, y1, x2, y2 = (float(v) for v in box)  # type: ignore[arg-type]
        return [(x1, y1, x2, y2)]
    return [(float(b[0]), float(b[1]), float(b[2]), float(b[3])) for b in box]  # type: ignore[index]


def write_overlay(
    reader: FrameReader,
    masks: str | Path | MaskSource,
    out_path: str | Path,
    box: BoxXYXY | Sequence[BoxXYXY] | None = None,
    keyframe_index: int | None = None,
    fps: float | None = None,
    *,
    max_long_edge: int | None = 1280,
    alpha: float = 0.5,
    label: str | None = "keyframe",
    progress: bool = False,
) -> Path:
    """Write an H.264 mp4 of ``reader``'s video with every object's mask tinted in its own colour.

    ``masks`` is a ``masks.json`` path (or its folder) or any :class:`MaskSource`.
    ``box`` (one box or several, original-frame pixels) is drawn on ``keyframe_index``
    only, with a small ``label``. ``fps`` defaults to the video's, or 24 for frame
    folders. Frames are downscaled so the long edge is at most ``max_long_edge``
    (None keeps the size) and cropped to even dimensions. The file appears atomically.
    Raises VideoError when masks and video disagree, OutputError when it cannot write.
    """
    source: MaskSource = read_masks_json(masks) if isinstance(masks, str | Path) else masks
    ref = reader.ref
    if source.num_frames != ref.num_frames or (source.height, source.width) != (ref.height, ref.width):
        raise VideoError(
            f"{ref.path}: masks hold {source.num_frames} frames of {source.width}x{source.height} but the video"
            f" has {ref.num_frames} frames of {ref.width}x{ref.height}"
        )
    boxes = _as_boxes(box)
    if boxes and keyframe_index is None:
        raise ValueError("a box needs the keyframe_index it belongs to")
    out_w, out_h = output_size(ref.width, ref.height, max_long_edge)
    scaled = (out_w, out_h) != (ref.width - ref.width % 2, ref.height - ref.height % 2)
    thickness = max(2, round(2 * max(ref.width / out_w, ref.height / out_h)))
    colours = object_colours(MAX_OBJECTS)
    out = Path(out_path)
    tmp = out.with_name(f".{out.stem}.tmp{out.suffix or '.mp4'}")
    try:
        container, stream = _open_encoder(tmp, out_w, out_h, fps or ref.fps or DEFAULT_FPS)
    except OutputError:
        raise
    except Exception as exc:  # PyAV raises FFmpegError, OSError, ValueError, ...
        raise OutputError(f"cannot write overlay {out}: {exc}") from exc
    try:
        for index, frame in enumerate(stream_frames(reader, progress=progress, desc="overlay")):
            image = tint(frame, source.object_masks(index), colours, alpha)
            if boxes and index == keyframe_index:
                image = _draw_boxes(image, boxes, thickness, label)
            _encode(container, stream, image, out_w, out_h, scaled)
        for packet in stream.encode():
            container.mux(packet)
        container.close()
        tmp.replace(out)
    except (VideoError, OutputError):
        _discard(container, tmp)
        raise
    except Exception as exc:  # encoder and file-system errors come in many types; report one line
        _discard(container, tmp)
        raise OutputError(f"cannot write overlay {out}: {type(exc).__name__}: {exc}") from exc
    return out


def _open_encoder(path: Path, width: int, height: int, fps: float) -> tuple[Any, Any]:
    """An mp4 container with one H.264 yuv420p stream; x264 when PyAV's ffmpeg has it."""
    import av

    if not path.parent.is_dir():
        raise OutputError(f"cannot write overlay: folder {path.parent} does not exist")
    try:
        av.codec.Codec("libx264", "w")
        codec = "libx264"
    except av.error.FFmpegError:
        codec = "h264"
    container = av.open(str(path), "w", format="mp4", options={"movflags": "+faststart"})
    try:
        stream: Any = container.add_stream(codec, rate=Fraction(fps).limit_denominator(1001))
        stream.width, stream.height, stream.pix_fmt = width, height, "yuv420p"
        stream.options = {"crf": "23", "preset": "veryfast"}
    except Exception:
        _discard(container, path)
        raise
    return container, stream


def _encode(container: Any, stream: Any, image: np.ndarray, width: int, height: int, scaled: bool) -> None:
    import av

    if not scaled:
        image = np.ascontiguousarray(image[:height, :width])  # crop odd sizes by one pixel
    frame = av.VideoFrame.from_ndarray(image, format="rgb24")
    frame = frame.reformat(width=width, height=height, format="yuv420p", interpolation="BILINEAR")
    for packet in stream.encode(frame):
        container.mux(packet)


def _discard(container: Any, tmp: Path) -> None:
    """Best-effort cleanup after a failed write: the half-written file must not linger."""
    with contextlib.suppress(Exception):
        container.close()
    tmp.unlink(missing_ok=True)
