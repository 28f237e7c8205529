"""The ``hf-sam2:`` tracker: transformers' ``Sam2VideoModel`` in streaming mode, with bounded memory.

Specs: ``hf-sam2:OWNER/NAME`` (a hub id such as ``facebook/sam2.1-hiera-tiny``, from the
local Hugging Face cache or downloaded when the hub is reachable) or ``hf-sam2:PATH`` (a
folder written by ``save_pretrained`` holding the model and its ``Sam2VideoProcessor``).
CUDA runs in bfloat16, CPU in float32. Options ride in the spec after ``?`` or come as
keyword arguments: ``bounded`` (default true; false keeps every frame's outputs, as
transformers does by itself) and ``dtype`` (``float32``, ``bfloat16``, ``float16``).

How it streams. transformers' streaming inference session takes one frame at a time
(``model(session, frame_idx=t, frame=pixels)``), so frames are decoded one by one from
the FrameReader, preprocessed, tracked and their masks yielded at once; nothing of the
video is held. Forwards, frames come from ``iter_frames(keyframe)``; backwards, from
chunks of a few dozen frames decoded forwards and walked in reverse.

Why memory stays bounded. Left alone, the session keeps every processed frame: its
pixels at the model's input size (12 MB a frame at 1024 px), its outputs (memory
features, object pointer, low- and high-resolution masks: 1.8 MB a frame even for a tiny
256-px model), 4.9 GB after 3,000 frames. Tracking frame t only reads the conditioning
frames (the prompted keyframe) and the non-conditioning outputs of the ``window`` frames
before t in the direction of travel (``num_maskmem - 1`` memory frames and
``max_object_pointers_in_encoder - 1`` object pointers). So after each frame we drop its
pixels and high-resolution masks (used once, for its own memory encoding) and every
non-conditioning output farther back than that window; the outputs just after the
keyframe are kept until the backward pass has started, because sam2 lets the first
backward frames attend to them, as the ``sam2`` package does. Masks are identical to an
unbounded session (``bounded=False``), which the tests pin down.

One difference from the ``sam2`` package: in streaming mode transformers normalises
object-pointer distances by ``max_object_pointers_in_encoder - 1`` whatever the video's
length, where offline propagation uses ``min(num_frames, max_object_pointers_in_encoder)``;
for videos shorter than that (16 frames in released models) masks may differ slightly.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

from revseg.errors import ModelLoadError, RevsegError, SpecError, TrackerError, VideoError
from revseg.hub import resolve_model_dir
from revseg.tools.trackers.base import (
    FrameMasks,
    bind_options,
    check_box_prompts,
    check_prompt,
    pick_device,
    split_spec_options,
    tracking_bar,
)
from revseg.trajectory import BoxXYXY

if TYPE_CHECKING:
    import numpy as np
    import torch

    from revseg.tools.frames import FrameReader
    from revseg.trajectory import VideoRef

__all__ = ["SCHEME", "HFSam2Tracker", "bound_session", "image_model", "memory_window", "reverse_frames"]

SCHEME = "hf-sam2"
_HINT = f"--tracker {SCHEME}:/path/to/sam2.1-hiera-tiny (a folder with config.json and processor_config.json)"
_REVERSE_CHUNK_BYTES = 64 * 2**20
"""Decoded frames held at once while walking backwards (64 MB: 69 frames at 640x480)."""
_REVERSE_CHUNK_MAX = 128
_DTYPES = ("float32", "bfloat16", "float16")

T = TypeVar("T")


def memory_window(config: Any) -> int:
    """How many frames back (in the direction of travel) tracking one frame may read outputs from.

    ``num_maskmem - 1`` spatial memories and ``max_object_pointers_in_encoder - 1`` object
    pointers, at offsets 1.. from the current frame (transformers' ``_gather_memory_frame_outputs``
    and ``_get_object_pointers``).
    """
    return max(int(config.num_maskmem) - 1, int(config.max_object_pointers_in_encoder) - 1, 1)


def reverse_frames(video: FrameReader, stop: int, *, chunk: int) -> Iterator[tuple[int, np.ndarray]]:
    """(index, frame) for frames ``stop - 1`` down to 0, decoding ``chunk`` frames forwards at a time.

    Decoders only run forwards; holding one chunk keeps memory bounded at the price of
    decoding from a keyframe once per chunk.
    """
    high = stop
    while high > 0:
        low = max(0, high - chunk)
        frames: list[np.ndarray | None] = list(video.iter_frames(low, high))
        if len(frames) != high - low:
            raise VideoError(f"video '{video.ref.path}' yielded {len(frames)} frames in [{low}, {high})")
        for index in range(high - 1, low - 1, -1):
            frame = frames[index - low]
            frames[index - low] = None  # release as we go
            assert frame is not None
            yield index, frame
        high = low


def _first_lines(exc: BaseException, n: int = 4, width: int = 400) -> str:
    text = " ".join(str(exc).splitlines()[:n])
    return text if len(text) <= width else text[: width - 3] + "..."


class HFSam2Tracker:
    """transformers' SAM2 video model: box prompts on a keyframe, streamed forwards then backwards.

    Several boxes are several objects (ids 1..K) tracked jointly in one session; every
    frame's masks come out once as a (K, H, W) bool array at the video's size. With
    ``bounded`` (the default) memory does not grow with the video's length (see the
    module docstring); ``bounded=False`` keeps transformers' own behaviour, for comparison.
    """

    def __init__(
        self,
        model_dir: str | Path,
        *,
        device: str | None = None,
        dtype: str | None = None,
        bounded: bool = True,
        spec: str | None = None,
    ) -> None:
        import torch

        if dtype is not None and dtype not in _DTYPES:
            raise SpecError(f"hf-sam2 dtype must be one of {', '.join(_DTYPES)}, got {dtype!r}")
        self._device = pick_device(device)
        default = "bfloat16" if self._device.type == "cuda" else "float32"
        self._dtype: torch.dtype = getattr(torch, dtype or default)
        self._spec = spec or f"{SCHEME}:{model_dir}"
        self.model_dir = Path(model_dir)
        self.bounded = bool(bounded)
        self._model, self._processor = _load(self.model_dir, self._device, self._dtype)
        self.window = memory_window(self._model.config)
        self._image: Any = None  # Sam2Model sharing self._model's weights, built on first segment_boxes
        self._image_lock = threading.Lock()

    @classmethod
    def from_spec(cls, spec: str, *, device: str | None = None, **options: Any) -> HFSam2Tracker:
        """Build from ``hf-sam2:HUB_ID_OR_PATH[?options]``; keyword options win over spec options."""
        bare, spec_options = split_spec_options(spec)
        scheme, sep, ref = bare.partition(":")
        if scheme != SCHEME or not sep or not ref.strip():
            raise SpecError(f"tracker spec '{spec}' is not an hf-sam2 spec; expected {SCHEME}:HUB_ID_OR_PATH")
        merged = bind_options(cls.__init__, {**spec_options, **options}, spec)
        folder = resolve_model_dir(ref.strip(), what="tracker", hint=_HINT)
        return cls(folder, device=device, spec=spec, **merged)

    @property
    def spec(self) -> str:
        """The spec string this tracker was built from (recorded in trajectories)."""
        return self._spec

    @property
    def device(self) -> str:
        """The torch device the model runs on, e.g. "cpu" or "cuda:0"."""
        return str(self._device)

    @property
    def dtype(self) -> str:
        """The dtype of weights and session, e.g. "float32"."""
        return str(self._dtype).removeprefix("torch.")

    def track(
        self, video: FrameReader, keyframe_index: int, boxes: Sequence[BoxXYXY], *, progress: bool = False
    ) -> Iterator[FrameMasks]:
        """Yield masks for every frame exactly once: keyframe to the end, then keyframe - 1 down to 0.

        The prompt is checked before anything runs (TrackerError); the model's failures
        are raised as TrackerError naming the video while the iterator is consumed.
        """
        prompts = check_prompt(video.ref, keyframe_index, boxes)
        return self._stream(video, keyframe_index, prompts, progress)

    def segment_boxes(self, frames: Sequence[np.ndarray], boxes: Sequence[Sequence[BoxXYXY]]) -> list[np.ndarray]:
        """Each frame's box masks from transformers' image model over this tracker's weights (see BoxSegmenter).

        Image mode: ``Sam2Model`` (see :func:`image_model`) on the whole batch in one
        forward, single-mask output, masks resized to each frame by the processor. Frames
        with fewer boxes than the batch's most are padded with their own first box, whose
        extra masks are dropped. Runs in the tracker's dtype (bf16 on CUDA).
        """
        import numpy as np

        prompts = check_box_prompts(frames, boxes)
        result = [np.zeros((0, *frame.shape[:2]), dtype=bool) for frame in frames]
        todo = [i for i, frame_boxes in enumerate(prompts) if frame_boxes]
        if todo:
            masks = self._segment([frames[i] for i in todo], [prompts[i] for i in todo])
            for i, frame_masks in zip(todo, masks, strict=True):
                result[i] = frame_masks
        return result

    def _segment(self, frames: list[np.ndarray], prompts: list[list[BoxXYXY]]) -> list[np.ndarray]:
        import torch

        most = max(len(p) for p in prompts)
        padded = [[list(box) for box in p] + [list(p[0])] * (most - len(p)) for p in prompts]
        with _library_errors(f"box prompts for a batch of {len(frames)} frames", "a smaller batch"):
            with self._image_lock:
                if self._image is None:
                    self._image = image_model(self._model)
            writable = [f if f.flags.writeable else f.copy() for f in frames]  # torch warns on read-only arrays
            inputs = self._processor(images=writable, input_boxes=padded, return_tensors="pt")
            with torch.inference_mode():
                out = self._image(
                    pixel_values=inputs["pixel_values"].to(self._device, self._dtype),
                    input_boxes=inputs["input_boxes"].to(self._device, self._dtype),
                    multimask_output=False,
                )
                # (B, N, 1, h, w) low-resolution logits -> per frame (N, 1, H, W) bool at the frame's size
                masks = self._processor.post_process_masks(out.pred_masks.float(), inputs["original_sizes"])
        return [m[: len(p), 0].cpu().numpy() for m, p in zip(masks, prompts, strict=True)]

    def _stream(self, video: FrameReader, keyframe: int, boxes: list[BoxXYXY], progress: bool) -> Iterator[FrameMasks]:
        ref = video.ref
        session = self._processor.init_video_session(inference_device=self._device, dtype=self._dtype)
        bar = tracking_bar(progress, ref, SCHEME)
        try:
            done = keyframe
            for index, frame in enumerate(video.iter_frames(keyframe), start=keyframe):
                if index == keyframe:
                    self._call(ref, self._prompt, session, keyframe, boxes, (ref.height, ref.width))
                yield self._step(ref, session, index, frame, keyframe, reverse=False)
                bar.update()
                done = index + 1
            if done != ref.num_frames:
                raise VideoError(
                    f"video '{ref.path}' yielded frames up to {done - 1}, but its reader reported {ref.num_frames}"
                )
            chunk = max(1, min(_REVERSE_CHUNK_MAX, _REVERSE_CHUNK_BYTES // max(ref.width * ref.height * 3, 1)))
            for index, frame in reverse_frames(video, keyframe, chunk=chunk):
                yield self._step(ref, session, index, frame, keyframe, reverse=True)
                bar.update()
        finally:
            bar.close()
            session.reset_inference_session()

    def _prompt(self, session: Any, keyframe: int, boxes: list[BoxXYXY], size: tuple[int, int]) -> None:
        self._processor.add_inputs_to_inference_session(
            session,
            frame_idx=keyframe,
            obj_ids=list(range(1, len(boxes) + 1)),
            input_boxes=[[list(box) for box in boxes]],
            original_size=size,
        )

    def _step(
        self, ref: VideoRef, session: Any, index: int, frame: np.ndarray, keyframe: int, *, reverse: bool
    ) -> FrameMasks:
        """Track one frame and return its masks at the video's size; then trim the session."""
        masks = self._call(ref, self._infer, session, index, frame, reverse)
        if self.bounded:
            bound_session(session, index, keyframe, self.window, reverse=reverse)
        return FrameMasks(index, masks)

    def _infer(self, session: Any, index: int, frame: np.ndarray, reverse: bool) -> np.ndarray:
        import torch

        processor = self._processor
        pixels = processor.image_processor(images=frame, return_tensors="pt", device=self._device)["pixel_values"]
        with torch.inference_mode():
            out = self._model(inference_session=session, frame_idx=index, frame=pixels[0], reverse=reverse)
            # (K, 1, h, w) low-resolution logits -> (K, 1, H, W) bool at the video's size
            masks = processor.post_process_masks([out.pred_masks.float()], original_sizes=[frame.shape[:2]])[0]
        result: np.ndarray = masks[:, 0].cpu().numpy()
        return result

    def _call(self, ref: VideoRef, fn: Callable[..., T], *args: Any) -> T:
        """Run one model step, turning library failures into TrackerError naming the video."""
        with _library_errors(f"video '{ref.path}'", "a smaller model"):
            return fn(*args)


@contextmanager
def _library_errors(what: str, smaller: str) -> Iterator[None]:
    """Re-raise a transformers/torch failure as one TrackerError line naming ``what`` (and a hint on out of memory)."""
    try:
        yield
    except RevsegError:
        raise
    except Exception as exc:
        hint = f" (try {smaller} or --device cpu)" if "out of memory" in str(exc).lower() else ""
        raise TrackerError(f"hf-sam2 failed on {what}: {type(exc).__name__}: {_first_lines(exc)}{hint}") from exc


def image_model(video_model: Any) -> Any:
    """transformers' ``Sam2Model`` (single images) whose weights are those of a loaded ``Sam2VideoModel``.

    The video model holds the image model's modules under the same names (vision encoder,
    prompt encoder, mask decoder, no-memory embedding), so the image model is built on the
    meta device and given the video model's tensors with ``load_state_dict(assign=True)``:
    no second copy in memory, outputs equal to ``Sam2Model.from_pretrained`` on the same
    folder. Raises ModelLoadError when a weight the image model needs is missing.
    """
    import torch
    from transformers import Sam2Config, Sam2Model

    config = video_model.config
    image_config = Sam2Config(
        vision_config=config.vision_config.to_dict(),
        prompt_encoder_config=config.prompt_encoder_config.to_dict(),
        mask_decoder_config=config.mask_decoder_config.to_dict(),
    )
    with torch.device("meta"):
        model = Sam2Model(image_config)
    loaded = model.load_state_dict(video_model.state_dict(), strict=False, assign=True)
    if loaded.missing_keys:
        raise ModelLoadError(
            f"hf-sam2: the video model lacks image-model weights {', '.join(loaded.missing_keys[:5])}; "
            "box prompts on single frames need a SAM2 checkpoint with the image heads"
        )
    return model.eval()


def bound_session(session: Any, index: int, keyframe: int, window: int, *, reverse: bool) -> None:
    """Drop from a streaming session everything that tracking later frames will not read.

    After frame ``index``: its pixels and its high-resolution masks (read once, by its
    own memory encoding, before this runs), and the non-conditioning outputs more than
    ``window`` frames behind it in the direction of travel. Going forwards, the outputs of
    the ``window`` frames after the keyframe stay, as the backward pass reads them first.
    """
    if session.processed_frames is not None:
        session.processed_frames.pop(index, None)
    for obj_idx, outputs in session.output_dict_per_obj.items():
        for kind in ("cond_frame_outputs", "non_cond_frame_outputs"):
            entry = outputs[kind].get(index)
            if entry is not None:
                entry.pop("high_res_masks", None)
        stored = outputs["non_cond_frame_outputs"]
        if reverse:
            stale = [f for f in stored if f > index + window]
        else:
            stale = [f for f in stored if f < index - window and not keyframe < f <= keyframe + window]
        for frame_idx in stale:
            del stored[frame_idx]
        tracked = session.frames_tracked_per_obj.get(obj_idx)
        if tracked is not None:
            for frame_idx in stale:
                tracked.pop(frame_idx, None)


@contextmanager
def _quiet_transformers_bars() -> Iterator[None]:
    """transformers draws a "Loading weights" bar on stderr, which ``--quiet`` must not show; restore it after."""
    from transformers.utils import logging as hf_logging

    was_enabled = hf_logging.is_progress_bar_enabled()
    hf_logging.disable_progress_bar()
    try:
        yield
    finally:
        if was_enabled:
            hf_logging.enable_progress_bar()


def _load(folder: Path, device: torch.device, dtype: torch.dtype) -> tuple[Any, Any]:
    """``Sam2VideoModel`` and ``Sam2VideoProcessor`` from a local folder; ModelLoadError naming it."""
    if not (folder / "config.json").is_file():
        raise ModelLoadError(f"hf-sam2 weights '{folder}' have no config.json; expected a save_pretrained folder")
    try:
        from transformers import Sam2VideoModel, Sam2VideoProcessor
    except ImportError as exc:
        raise ModelLoadError(f"hf-sam2 needs transformers with SAM2 video support (>= 4.56): {exc}") from exc
    try:
        with _quiet_transformers_bars():
            model = Sam2VideoModel.from_pretrained(str(folder), dtype=dtype)
    except Exception as exc:  # transformers raises OSError, ValueError, KeyError, ... for bad folders
        raise ModelLoadError(
            f"hf-sam2 model in '{folder}' could not be loaded: {type(exc).__name__}: {_first_lines(exc)}"
        ) from exc
    try:
        processor = Sam2VideoProcessor.from_pretrained(str(folder))
    except Exception as exc:  # a folder with weights but no processor_config.json
        raise ModelLoadError(
            f"hf-sam2 processor in '{folder}' could not be loaded (processor_config.json missing?): "
            f"{type(exc).__name__}: {_first_lines(exc)}"
        ) from exc
    try:
        model = model.to(device).eval()  # type: ignore[arg-type]  # transformers' stub types .to() narrowly
    except RuntimeError as exc:
        raise ModelLoadError(f"hf-sam2 model from '{folder}' cannot move to {device}: {_first_lines(exc)}") from exc
    return model, processor
