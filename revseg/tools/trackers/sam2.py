"""The ``sam2:`` tracker: Meta's ``sam2`` package (SAM 2 / SAM 2.1 video predictor).

Specs:

- ``sam2:OWNER/NAME``: a hub id that sam2 itself knows (``facebook/sam2.1-hiera-large`` is
  the paper's model); the config comes from sam2's own table, the ``.pt`` from the local
  Hugging Face cache, or is downloaded when the hub is reachable. The same form takes a
  local folder or ``.pt`` file carrying one of those checkpoint names.
- ``sam2:CONFIG:CHECKPOINT``: CONFIG is a config inside the sam2 package
  (``configs/sam2.1/sam2.1_hiera_l.yaml``) or a yaml file on disk; CHECKPOINT a local
  ``.pt`` holding ``{"model": state_dict}``.

Both config kinds are read with OmegaConf and instantiated with hydra's ``instantiate``,
with the video-inference settings that sam2's ``build_sam2_video_predictor`` adds. We do
not go through ``hydra.compose``: it cannot take a path on disk, and it depends on the
process-wide hydra search path that ``import sam2`` sets up (and that an application with
its own hydra config would already own).

Input pixels: sam2's ``init_state`` reads only an ``.mp4`` (through decord, resizing
inside the decoder) or a folder of ``<integer>.jpg`` frames (through PIL). Any other
input (PNG folders, mkv/webm/avi, JPEG names that are not integers, an mp4 that
revseg's decord reader declines, such as a rotated one) is first exported
from the FrameReader to a temporary JPEG folder (quality 95, 4:4:4 chroma), so masks on
such input come from re-encoded pixels and may differ slightly from masks on the same
frames given as ``.jpg`` or ``.mp4``. sam2 keeps every frame of the video in memory at
the model's input size (``offload_video_to_cpu`` keeps them in host memory), and every
tracked frame's outputs (``offload_state_to_cpu`` likewise).

Options ride in the spec after ``?`` (recorded with it in trajectories) or come as
keyword arguments: ``offload_video_to_cpu``, ``offload_state_to_cpu``, ``window``
(frames per stretch, for bounded memory on long videos; see :class:`Sam2Tracker`) and
``image_size`` (the tracking pass's input size, e.g. 512 on a CPU: about a quarter of the
work of the released 1024; masks come back at the video's size either way), e.g.
``sam2:facebook/sam2.1-hiera-large?window=300&offload_video_to_cpu=true``.
"""

from __future__ import annotations

import importlib.util
import logging
import shutil
import tempfile
import threading
from collections.abc import Callable, Iterator, Sequence
from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

from revseg.errors import ModelLoadError, RevsegError, SpecError, TrackerError, VideoError
from revseg.hub import resolve_model_dir
from revseg.tools.frames import reads_exactly
from revseg.tools.trackers import PAPER_TRACKER
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

__all__ = [
    "SCHEME",
    "Sam2Tracker",
    "Sam2Weights",
    "build_sam2_video_model",
    "check_prompt",
    "export_jpeg_frames",
    "image_predictor",
    "instantiate_sam2",
    "native_input",
    "pick_device",
    "resolve_sam2_spec",
]

log = logging.getLogger(__name__)

SCHEME = "sam2"

# Settings sam2's build_sam2_video_predictor adds on top of every config for inference:
# fall back to multimask output when a single mask is unstable, binarize prompted masks
# before they enter memory, fill small holes in the low-res masks.
_VIDEO_PREDICTOR = "sam2.sam2_video_predictor.SAM2VideoPredictor"
_VIDEO_OVERRIDES: dict[str, Any] = {
    "sam_mask_decoder_extra_args.dynamic_multimask_via_stability": True,
    "sam_mask_decoder_extra_args.dynamic_multimask_stability_delta": 0.05,
    "sam_mask_decoder_extra_args.dynamic_multimask_stability_thresh": 0.98,
    "binarize_mask_from_pts_for_mem_enc": True,
    "fill_hole_area": 8,
}
_JPEG_SUFFIXES = frozenset({".jpg", ".jpeg", ".JPG", ".JPEG"})  # exactly what sam2's loader lists
_MP4_SUFFIXES = frozenset({".mp4", ".MP4"})
_EXPORT_JPEG_QUALITY = 95
_INSTALL_HINT = "install it with: SAM2_BUILD_CUDA=0 pip install --no-build-isolation 'sam2==1.1.0' hydra-core iopath"

T = TypeVar("T")


@dataclass(frozen=True)
class Sam2Weights:
    """A resolved ``sam2:`` spec: which config to build and which checkpoint to load into it."""

    config: Path
    checkpoint: Path


def _sam2_package_dir() -> Path:
    """The installed sam2 package folder, found without importing it (importing sets up hydra)."""
    spec = importlib.util.find_spec("sam2")
    if spec is None or not spec.submodule_search_locations:
        raise ModelLoadError(f"the sam2: tracker needs the 'sam2' package, which is not installed; {_INSTALL_HINT}")
    return Path(next(iter(spec.submodule_search_locations)))


def _hub_models() -> dict[str, tuple[str, str]]:
    """sam2's own table of hub id -> (config name, checkpoint file name)."""
    _sam2_package_dir()
    from sam2.build_sam import HF_MODEL_ID_TO_FILENAMES

    return dict(HF_MODEL_ID_TO_FILENAMES)


def _local_hint(config: str = "configs/sam2.1/sam2.1_hiera_l.yaml", ckpt: str = "sam2.1_hiera_large.pt") -> str:
    return f"--tracker {SCHEME}:{config}:/path/to/{ckpt}"


def _resolve_config(config: str) -> Path:
    """A yaml file on disk, else a config name inside the sam2 package (".yaml" optional)."""
    path = Path(config).expanduser()
    if path.is_file():
        return path
    package = _sam2_package_dir()
    for name in (config, f"{config}.yaml"):
        candidate = package / name
        if not Path(name).is_absolute() and candidate.is_file():
            return candidate
    known = sorted(str(p.relative_to(package)) for p in (package / "configs").glob("sam2*/*.yaml"))
    raise ModelLoadError(
        f"sam2 config '{config}' not found: it is neither a yaml file on disk nor a config inside the sam2 "
        f"package ({', '.join(known)})"
    )


def _resolve_checkpoint(checkpoint: str) -> Path:
    path = Path(checkpoint).expanduser()
    if not path.is_file():
        raise ModelLoadError(f"sam2 checkpoint '{checkpoint}' not found (expected a local .pt file)")
    return path


def _resolve_named(ref: str) -> Sam2Weights:
    """``sam2:REF`` without a config: a known hub id, or a local folder/.pt with a known checkpoint name."""
    models = _hub_models()
    if ref in models:
        config, ckpt_name = models[ref]
        folder = resolve_model_dir(ref, what="tracker", hint=_local_hint(config, ckpt_name), allow_patterns=[ckpt_name])
        checkpoint = folder / ckpt_name
        if not checkpoint.is_file():
            raise ModelLoadError(
                f"tracker '{ref}' resolved to {folder}, which has no {ckpt_name}; pass the weights explicitly: "
                f"{_local_hint(config, ckpt_name)}"
            )
        return Sam2Weights(_resolve_config(config), checkpoint)
    by_file = {ckpt_name: config for config, ckpt_name in models.values()}
    path = Path(ref).expanduser()
    if path.is_file() and path.name in by_file:
        return Sam2Weights(_resolve_config(by_file[path.name]), path)
    if path.is_dir():
        found = [name for name in by_file if (path / name).is_file()]
        if len(found) == 1:
            return Sam2Weights(_resolve_config(by_file[found[0]]), path / found[0])
    raise SpecError(
        f"tracker spec '{SCHEME}:{ref}': not a sam2 hub id ({', '.join(models)}) nor a local folder or .pt "
        f"with one of their checkpoint names; give the config explicitly: {SCHEME}:CONFIG:CHECKPOINT, "
        f"e.g. {_local_hint()}"
    )


def resolve_sam2_spec(spec: str) -> Sam2Weights:
    """Turn a ``sam2:`` spec into a config file and a checkpoint file, both checked to exist.

    Raises SpecError for a malformed spec and ModelLoadError, naming the file, when a
    config or checkpoint cannot be found (fast, with a hint, when the hub is unreachable).
    """
    spec, _options = split_spec_options(spec)
    scheme, sep, rest = spec.partition(":")
    if scheme != SCHEME or not sep or not rest.strip():
        raise SpecError(
            f"tracker spec '{spec}' is not a sam2 spec; expected {SCHEME}:HUB_ID (e.g. {PAPER_TRACKER}) "
            f"or {SCHEME}:CONFIG:CHECKPOINT"
        )
    config, sep, checkpoint = rest.partition(":")
    if not sep:
        return _resolve_named(rest.strip())
    if not config.strip() or not checkpoint.strip():
        raise SpecError(f"tracker spec '{spec}': both CONFIG and CHECKPOINT are needed, e.g. {_local_hint()}")
    return Sam2Weights(_resolve_config(config.strip()), _resolve_checkpoint(checkpoint.strip()))


def instantiate_sam2(config: Path, image_size: int | None = None) -> Any:
    """sam2's ``SAM2VideoPredictor`` as a config file describes it, randomly initialised (on cpu).

    Adds the video-inference settings that sam2's ``build_sam2_video_predictor`` adds.
    ``image_size`` overrides the model's input size (a multiple of 64, e.g. 512 for a
    1024-px model): the weights do not depend on it (Hiera interpolates its position
    embedding and the memory attention recomputes its RoPE for the feature size), and
    the work per frame falls with its square.
    """
    _sam2_package_dir()
    from hydra.utils import instantiate
    from omegaconf import OmegaConf

    try:
        cfg = OmegaConf.load(config)
    except Exception as exc:
        raise ModelLoadError(f"sam2 config '{config}' could not be read: {exc}") from exc
    if not OmegaConf.is_dict(cfg) or "model" not in cfg:
        raise ModelLoadError(f"sam2 config '{config}' has no top-level 'model' section")
    overrides = dict(_VIDEO_OVERRIDES)
    if importlib.util.find_spec("sam2._C") is None:
        # Without sam2's CUDA extension, hole filling fails and sam2 skips it anyway, with a
        # warning on every frame; turning it off gives the same masks without the noise.
        overrides["fill_hole_area"] = 0
    if image_size is not None:
        overrides["image_size"] = image_size
    OmegaConf.update(cfg, "model._target_", _VIDEO_PREDICTOR, force_add=True)
    for key, value in overrides.items():
        OmegaConf.update(cfg, f"model.{key}", value, force_add=True)
    try:
        OmegaConf.resolve(cfg)
        return instantiate(cfg.model, _recursive_=True)
    except Exception as exc:
        raise ModelLoadError(f"sam2 config '{config}' does not build a model: {_first_lines(exc)}") from exc


def build_sam2_video_model(weights: Sam2Weights, device: torch.device, image_size: int | None = None) -> Any:
    """Build sam2's ``SAM2VideoPredictor`` from a config file and load its checkpoint strictly.

    Missing or unexpected checkpoint keys raise ModelLoadError listing them (sam2's own
    loader logs them and raises an empty RuntimeError). ``image_size`` as in :func:`instantiate_sam2`.
    """
    import torch

    model = instantiate_sam2(weights.config, image_size)
    try:
        state = torch.load(weights.checkpoint, map_location="cpu", weights_only=True)
    except Exception as exc:
        raise ModelLoadError(f"sam2 checkpoint '{weights.checkpoint}' could not be read: {_first_lines(exc)}") from exc
    if not isinstance(state, dict) or "model" not in state:
        raise ModelLoadError(f"sam2 checkpoint '{weights.checkpoint}' has no 'model' entry (expected sam2's format)")
    try:
        model.load_state_dict(state["model"], strict=True)
    except RuntimeError as exc:
        raise ModelLoadError(
            f"sam2 checkpoint '{weights.checkpoint}' does not fit config '{weights.config}': {_first_lines(exc)}"
        ) from exc
    try:
        return model.to(device).eval()
    except RuntimeError as exc:  # an invalid device ordinal, or out of memory while moving weights
        raise ModelLoadError(
            f"sam2 model from '{weights.checkpoint}' cannot move to {device}: {_first_lines(exc)}"
        ) from exc


def image_predictor(model: Any) -> Any:
    """sam2's ``SAM2ImagePredictor`` over an already built SAM2 model (the video predictor is a SAM2Base too).

    The predictor hard-codes backbone feature sizes for 1024-px models (256, 128, 64 at
    strides 4, 8, 16); they are set from the model's own input size here, so smaller
    models (the tests' 128 px) work. Weights are shared, not copied.
    """
    import warnings

    from sam2.sam2_image_predictor import SAM2ImagePredictor

    with warnings.catch_warnings():  # its transforms call torch.jit.script, deprecated in recent torch
        warnings.filterwarnings("ignore", message=r".*torch\.jit\.script.*", category=FutureWarning)
        predictor = SAM2ImagePredictor(model)
    size = int(model.image_size)
    predictor._bb_feat_sizes = [(size // stride, size // stride) for stride in (4, 8, 16)]
    return predictor


def _counted(frames: Iterator[FrameMasks], bar: Any) -> Iterator[FrameMasks]:
    """Pass frames through, advancing ``bar`` by one for each; close it however the iteration ends."""
    try:
        for item in frames:
            yield item
            bar.update()
    finally:
        bar.close()


def _first_lines(exc: BaseException, n: int = 4, width: int = 400) -> str:
    text = " ".join(str(exc).splitlines()[:n])
    return text if len(text) <= width else text[: width - 3] + "..."


# sam2 draws tqdm bars while loading frames and propagating, with no switch to turn them off.
# Its modules get a tqdm that honours a per-thread flag we set around our own calls only,
# so other users of sam2 in the process see no change.
_progress = threading.local()
_tqdm_installed = False
_tqdm_lock = threading.Lock()


def _install_quiet_tqdm() -> None:
    global _tqdm_installed
    with _tqdm_lock:
        if _tqdm_installed:
            return
        import sam2.sam2_video_predictor
        import sam2.utils.misc
        from tqdm import tqdm

        def sam2_tqdm(*args: Any, **kwargs: Any) -> Any:
            if not getattr(_progress, "show", True):
                kwargs["disable"] = True
            return tqdm(*args, **kwargs)

        for module in (sam2.sam2_video_predictor, sam2.utils.misc):
            if getattr(module, "tqdm", None) is tqdm:
                module.tqdm = sam2_tqdm
        _tqdm_installed = True


def native_input(ref: VideoRef) -> str | None:
    """The path to hand sam2's ``init_state`` directly, or None when frames must be exported.

    Direct input: an ``.mp4`` that revseg's decord reader accepts, whichever reader the
    caller opened it with (sam2 decodes mp4 with decord, and revseg's decord reader only
    opens files where decord agrees with a full PyAV probe and that need no rotation;
    files decord gets wrong are exported here), or a folder of ``<integer>.jpg`` frames
    whose numeric order is also their name order (so every reader agrees on it) and
    whose count matches the reader's.
    """
    path = Path(ref.path)
    if path.is_file():
        if path.suffix not in _MP4_SUFFIXES:
            return None
        return str(path) if ref.backend == "decord" or reads_exactly(path, "decord") else None
    if not path.is_dir():
        return None
    names = sorted(p.name for p in path.iterdir() if p.suffix in _JPEG_SUFFIXES)
    stems = [Path(n).stem for n in names]
    if not names or len(names) != ref.num_frames or not all(s.isascii() and s.isdigit() for s in stems):
        return None
    return str(path) if stems == sorted(stems, key=int) else None


def export_jpeg_frames(
    video: FrameReader, folder: Path, *, progress: bool = False, start: int = 0, stop: int | None = None
) -> int:
    """Write frames ``start`` .. ``stop - 1`` of ``video`` to ``folder/00000.jpg`` ..., streaming; return the count.

    JPEG quality 95 with 4:4:4 chroma: close to the source pixels at about a tenth of a
    PNG's size, and what sam2's frame-folder loader accepts. Files are numbered from 0
    whatever ``start`` is, as sam2 numbers the frames of a folder.
    """
    from PIL import Image

    from revseg.tools.frames import stream_frames

    ref = video.ref
    stop = ref.num_frames if stop is None else stop
    count = 0
    frames = stream_frames(video, start, stop, progress=progress, desc="sam2: export frames")
    for count, frame in enumerate(frames, start=1):
        Image.fromarray(frame).save(folder / f"{count - 1:05d}.jpg", quality=_EXPORT_JPEG_QUALITY, subsampling=0)
    if count != stop - start:
        raise VideoError(
            f"video '{ref.path}' yielded {count} frames in [{start}, {stop}), but its reader reported {ref.num_frames}"
        )
    return count


def _next_masks(frames: Iterator[tuple[int, list[int], torch.Tensor]]) -> FrameMasks | None:
    """The next frame from sam2's propagation as bool masks (logits > 0), or None at the end."""
    item = next(frames, None)
    if item is None:
        return None
    frame_index, _obj_ids, logits = item
    return FrameMasks(int(frame_index), (logits[:, 0] > 0.0).cpu().numpy())


@dataclass(frozen=True)
class _Window:
    """One stretch of frames tracked in its own sam2 state, and how it is prompted.

    ``prompt`` is the window-local frame carrying the prompt: the keyframe's boxes for
    the first window, else the mask the previous window ended with (the window overlaps
    its neighbour by that one frame, which is not yielded again).
    """

    start: int
    stop: int
    prompt: int
    boxes: list[BoxXYXY] | None = None
    masks: np.ndarray | None = None


class Sam2Tracker:
    """Box prompts on one keyframe, propagated forwards to the end and backwards to the start.

    Several boxes are several objects (ids 1..K) tracked jointly in one inference state;
    every frame's masks come out once as a (K, H, W) bool array at the video's size.
    ``offload_video_to_cpu`` / ``offload_state_to_cpu`` keep sam2's frame cache and
    per-frame outputs in host memory (slower, but long videos fit on a GPU).

    ``window`` bounds memory on long videos: sam2's ``init_state`` holds every frame at the
    model's input size (12 MB a frame at 1024 px) and propagation keeps every frame's
    outputs, so memory grows with the video. With ``window=W`` the video is tracked in
    stretches of W frames, each in a fresh state: first the W frames around the keyframe
    (box prompt, both directions, exactly as without a window), then outwards, each next
    stretch overlapping the previous one by one frame and prompted there with that
    frame's mask. Accuracy trade-off: a later stretch remembers only that one mask, not
    the box prompt, the keyframe or the previous frames' memories, so errors at a seam
    carry on, and an object lost (empty mask) at a seam stays lost for the rest of the
    video in that direction. A video of at most W frames is tracked exactly as without.
    """

    def __init__(
        self,
        config: str | Path,
        checkpoint: str | Path,
        *,
        device: str | None = None,
        offload_video_to_cpu: bool = False,
        offload_state_to_cpu: bool = False,
        window: int | None = None,
        image_size: int | None = None,
        spec: str | None = None,
    ) -> None:
        if window is not None and (isinstance(window, bool) or not isinstance(window, int) or window < 2):
            raise SpecError(f"sam2 window must be an integer of at least 2 frames (or None), got {window!r}")
        if image_size is not None and (
            isinstance(image_size, bool) or not isinstance(image_size, int) or image_size < 64 or image_size % 64
        ):
            raise SpecError(f"sam2 image_size must be a multiple of 64 pixels (e.g. 512), got {image_size!r}")
        weights = Sam2Weights(_resolve_config(str(config)), _resolve_checkpoint(str(checkpoint)))
        self._spec = spec or f"{SCHEME}:{config}:{checkpoint}"
        self._device = pick_device(device)
        self._model = build_sam2_video_model(weights, self._device, image_size)
        self.weights = weights
        self.offload_video_to_cpu = bool(offload_video_to_cpu)
        self.offload_state_to_cpu = bool(offload_state_to_cpu)
        self.window = window
        self._image: Any = None  # sam2's SAM2ImagePredictor over self._model, built on first segment_boxes
        self._image_lock = threading.Lock()
        _install_quiet_tqdm()

    @classmethod
    def from_spec(cls, spec: str, *, device: str | None = None, **options: Any) -> Sam2Tracker:
        """Build from a ``sam2:`` spec (see the module docstring); ``options`` go to the constructor.

        Options may also ride in the spec (``sam2:ID?window=300&offload_video_to_cpu=true``);
        keyword options win over spec options of the same name.
        """
        bare, spec_options = split_spec_options(spec)
        merged = bind_options(cls.__init__, {**spec_options, **options}, spec)
        weights = resolve_sam2_spec(bare)
        return cls(weights.config, weights.checkpoint, device=device, spec=spec, **merged)

    @property
    def spec(self) -> str:
        """The spec string this tracker was built from (recorded in trajectories)."""
        return self._spec

    @property
    def device(self) -> str:
        """The torch device the model runs on, e.g. "cpu" or "cuda:0"."""
        return str(self._device)

    def track(
        self, video: FrameReader, keyframe_index: int, boxes: Sequence[BoxXYXY], *, progress: bool = False
    ) -> Iterator[FrameMasks]:
        """Yield masks for every frame of ``video`` exactly once: keyframe to end, then backwards to 0.

        The prompt is checked before anything runs (TrackerError); sam2's own failures are
        raised as TrackerError naming the video while the iterator is consumed. With a
        ``window`` shorter than the video, frames come window by window (see the class).
        """
        prompts = check_prompt(video.ref, keyframe_index, boxes)
        if self.window is None or video.ref.num_frames <= self.window:
            frames = self._propagate(video, keyframe_index, prompts, progress)
        else:
            frames = self._propagate_windowed(video, keyframe_index, prompts, progress, self.window)
        return _counted(frames, tracking_bar(progress, video.ref, SCHEME))

    def segment_boxes(self, frames: Sequence[np.ndarray], boxes: Sequence[Sequence[BoxXYXY]]) -> list[np.ndarray]:
        """Each frame's box masks from sam2's image predictor over this tracker's model (see BoxSegmenter).

        Image mode, as ``SAM2ImagePredictor`` does it: one backbone pass for the batch, then
        the mask decoder per frame with all its boxes, single-mask output (sam2 falls back
        to its best multimask answer when that mask is unstable). No memory, no propagation.
        bf16 autocast on CUDA, as for tracking. The predictor holds one batch's features,
        so calls are serialised.
        """
        import numpy as np

        prompts = check_box_prompts(frames, boxes)
        result = [np.zeros((0, *frame.shape[:2]), dtype=bool) for frame in frames]
        todo = [i for i, frame_boxes in enumerate(prompts) if frame_boxes]
        if todo:
            with self._image_lock:
                masks = self._segment([frames[i] for i in todo], [prompts[i] for i in todo])
            for i, frame_masks in zip(todo, masks, strict=True):
                result[i] = frame_masks
        return result

    def _segment(self, frames: list[np.ndarray], prompts: list[list[BoxXYXY]]) -> list[np.ndarray]:
        import numpy as np
        import torch

        autocast: AbstractContextManager[Any] = (
            torch.autocast("cuda", dtype=torch.bfloat16) if self._device.type == "cuda" else nullcontext()
        )
        try:
            if self._image is None:
                self._image = image_predictor(self._model)
            with autocast:
                # torchvision warns on read-only arrays (decoded frames often are), so those are copied
                self._image.set_image_batch([f if f.flags.writeable else f.copy() for f in frames])
                masks, _, _ = self._image.predict_batch(
                    box_batch=[np.asarray(p, dtype=np.float32) for p in prompts], multimask_output=False
                )
        except RevsegError:
            raise
        except Exception as exc:
            raise TrackerError(
                f"sam2 failed on box prompts for a batch of {len(frames)} frames: {type(exc).__name__}: "
                f"{_first_lines(exc)}"
            ) from exc
        finally:
            if self._image is not None:
                self._image.reset_predictor()  # drop the batch's features
        # predict_batch squeezes a leading 1: (1, H, W) for one box, (N, 1, H, W) for several
        return [m.reshape(len(p), *f.shape[:2]) > 0.5 for m, p, f in zip(masks, prompts, frames, strict=True)]

    def _propagate(
        self, video: FrameReader, keyframe: int, boxes: list[BoxXYXY], progress: bool
    ) -> Iterator[FrameMasks]:
        state = self._init_state(video, progress)
        yield from self._run(video.ref, state, keyframe, progress, boxes=boxes)

    def _run(
        self,
        ref: VideoRef,
        state: dict[str, Any],
        prompt_frame: int,
        progress: bool,
        *,
        boxes: list[BoxXYXY] | None = None,
        masks: np.ndarray | None = None,
    ) -> Iterator[FrameMasks]:
        """Prompt one frame of a state with boxes or masks, then propagate forwards and backwards from it."""
        model = self._model
        if boxes is not None:
            for obj_id, box in enumerate(boxes, start=1):
                add_box = model.add_new_points_or_box
                self._call(ref, progress, add_box, state, frame_idx=prompt_frame, obj_id=obj_id, box=box)
        else:
            assert masks is not None
            for obj_id, mask in enumerate(masks, start=1):
                self._call(ref, progress, model.add_new_mask, state, frame_idx=prompt_frame, obj_id=obj_id, mask=mask)
        directions = [False] if prompt_frame == 0 else [False, True]
        for reverse in directions:
            # sam2's own bar per direction stays off: track() draws one over the whole video, with its ETA
            frames = self._call(
                ref, False, self._model.propagate_in_video, state, start_frame_idx=prompt_frame, reverse=reverse
            )
            while (item := self._call(ref, False, _next_masks, frames)) is not None:
                if reverse and item.frame_index == prompt_frame:
                    continue  # the forward pass already yielded it
                yield item

    def _propagate_windowed(
        self, video: FrameReader, keyframe: int, boxes: list[BoxXYXY], progress: bool, window: int
    ) -> Iterator[FrameMasks]:
        """Track the window around the keyframe, then stretches outwards, each seeded with its neighbour's last mask."""
        total = video.ref.num_frames
        start = min(max(keyframe - window // 2, 0), total - window)
        stop = start + window
        ends: dict[int, np.ndarray] = {}
        for item in self._track_window(video, _Window(start, stop, keyframe - start, boxes=boxes), progress):
            if item.frame_index in (start, stop - 1):
                ends[item.frame_index] = item.masks
            yield item
        seed = ends[stop - 1]
        while stop < total:  # forwards: [stop - 1, stop - 1 + window), prompted on its first frame
            part = _Window(stop - 1, min(stop - 1 + window, total), 0, masks=seed)
            for item in self._track_window(video, part, progress):
                if item.frame_index == part.start:
                    continue
                if item.frame_index == part.stop - 1:
                    seed = item.masks
                yield item
            stop = part.stop
        seed = ends[start]
        while start > 0:  # backwards: [start + 1 - window, start + 1), prompted on its last frame
            lo = max(start + 1 - window, 0)
            part = _Window(lo, start + 1, start - lo, masks=seed)
            for item in self._track_window(video, part, progress):
                if item.frame_index == part.start + part.prompt:
                    continue
                if item.frame_index == part.start:
                    seed = item.masks
                yield item
            start = lo

    def _track_window(self, video: FrameReader, part: _Window, progress: bool) -> Iterator[FrameMasks]:
        """Export one window's frames, track them in a fresh state, yield masks with video frame indices."""
        ref = video.ref
        folder = Path(tempfile.mkdtemp(prefix="revseg-sam2-window-"))
        try:
            export_jpeg_frames(video, folder, progress=progress, start=part.start, stop=part.stop)
            state = self._call(ref, progress, self._init_from, str(folder))
        finally:
            shutil.rmtree(folder, ignore_errors=True)
        got = (state["num_frames"], state["video_height"], state["video_width"])
        if got != (part.stop - part.start, ref.height, ref.width):
            raise TrackerError(f"sam2 read window [{part.start}, {part.stop}) of '{ref.path}' as {got}")
        for item in self._run(ref, state, part.prompt, progress, boxes=part.boxes, masks=part.masks):
            yield FrameMasks(part.start + item.frame_index, item.masks)

    def _init_state(self, video: FrameReader, progress: bool) -> dict[str, Any]:
        """sam2's inference state for ``video``: read natively when sam2 can, else via a JPEG export."""
        ref = video.ref
        source = native_input(ref)
        if source is not None:
            state = self._call(ref, progress, self._load_native, source)
            got = (state["num_frames"], state["video_height"], state["video_width"])
            if got == (ref.num_frames, ref.height, ref.width):
                return state
            log.warning(
                "sam2 read %s as %d frames of %dx%d, the frame reader as %d of %dx%d; tracking exported frames instead",
                ref.path,
                got[0],
                got[2],
                got[1],
                ref.num_frames,
                ref.width,
                ref.height,
            )
            del state
        folder = Path(tempfile.mkdtemp(prefix="revseg-sam2-"))
        try:
            export_jpeg_frames(video, folder, progress=progress)
            # init_state reads every frame eagerly, so the folder can go as soon as it returns.
            return self._call(ref, progress, self._init_from, str(folder))
        finally:
            shutil.rmtree(folder, ignore_errors=True)

    def _load_native(self, source: str) -> dict[str, Any]:
        if not Path(source).is_file():
            return self._init_from(source)
        # sam2's mp4 loader switches decord's (thread-local) bridge to torch and leaves it
        # there, which breaks decord readers that expect numpy; put it back afterwards.
        import decord.bridge

        previous = getattr(decord.bridge._CURRENT_BRIDGE, "type", "native")
        try:
            return self._init_from(source)
        finally:
            decord.bridge.set_bridge(previous)

    def _init_from(self, source: str) -> dict[str, Any]:
        state: dict[str, Any] = self._model.init_state(
            source,
            offload_video_to_cpu=self.offload_video_to_cpu,
            offload_state_to_cpu=self.offload_state_to_cpu,
        )
        return state

    def _call(self, ref: VideoRef, progress: bool, fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
        """Run one sam2 step: bf16 autocast on CUDA, sam2's bars only when asked, errors as TrackerError.

        Autocast and the progress flag are entered per call, never held across a yield,
        so nothing leaks into the caller's code between frames.
        """
        import torch

        autocast: AbstractContextManager[Any] = (
            torch.autocast("cuda", dtype=torch.bfloat16) if self._device.type == "cuda" else nullcontext()
        )
        previous = getattr(_progress, "show", True)
        _progress.show = progress
        try:
            with autocast:
                return fn(*args, **kwargs)
        except RevsegError:
            raise
        except Exception as exc:
            hint = ""
            if "out of memory" in str(exc).lower():
                hint = " (try offload_video_to_cpu=True and offload_state_to_cpu=True, or a smaller model)"
            raise TrackerError(
                f"sam2 failed on video '{ref.path}': {type(exc).__name__}: {_first_lines(exc)}{hint}"
            ) from exc
        finally:
            _progress.show = previous
