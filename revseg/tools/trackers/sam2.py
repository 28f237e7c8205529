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
input (PNG folders, mkv/webm/avi, JPEG names that are not integers, an mp4 that the
frame reader had to leave to PyAV) is first exported
from the FrameReader to a temporary JPEG folder (quality 95, 4:4:4 chroma), so masks on
such input come from re-encoded pixels and may differ slightly from masks on the same
frames given as ``.jpg`` or ``.mp4``. sam2 keeps every frame of the video in memory at
the model's input size (``offload_video_to_cpu`` keeps them in host memory), and every
tracked frame's outputs (``offload_state_to_cpu`` likewise).
"""

from __future__ import annotations

import importlib.util
import logging
import math
import numbers
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
from revseg.tools.trackers import DEFAULT_TRACKER
from revseg.tools.trackers.base import FrameMasks
from revseg.trajectory import BoxXYXY

if TYPE_CHECKING:
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
    scheme, sep, rest = spec.partition(":")
    if scheme != SCHEME or not sep or not rest.strip():
        raise SpecError(
            f"tracker spec '{spec}' is not a sam2 spec; expected {SCHEME}:HUB_ID (e.g. {DEFAULT_TRACKER}) "
            f"or {SCHEME}:CONFIG:CHECKPOINT"
        )
    config, sep, checkpoint = rest.partition(":")
    if not sep:
        return _resolve_named(rest.strip())
    if not config.strip() or not checkpoint.strip():
        raise SpecError(f"tracker spec '{spec}': both CONFIG and CHECKPOINT are needed, e.g. {_local_hint()}")
    return Sam2Weights(_resolve_config(config.strip()), _resolve_checkpoint(checkpoint.strip()))


def pick_device(device: str | None) -> torch.device:
    """``None``/"auto" -> cuda when available, else cpu; anything else as torch spells it.

    sam2 defaults to "cuda" everywhere, so the device is always passed explicitly.
    """
    import torch

    if device is None or device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        chosen = torch.device(device)
    except (RuntimeError, ValueError) as exc:
        raise ModelLoadError(f"unknown tracker device '{device}': {exc}") from exc
    if chosen.type == "cuda" and not torch.cuda.is_available():
        raise ModelLoadError(f"tracker device '{device}' requested but CUDA is not available; use --device cpu")
    return chosen


def instantiate_sam2(config: Path) -> Any:
    """sam2's ``SAM2VideoPredictor`` as a config file describes it, randomly initialised (on cpu).

    Adds the video-inference settings that sam2's ``build_sam2_video_predictor`` adds.
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
    OmegaConf.update(cfg, "model._target_", _VIDEO_PREDICTOR, force_add=True)
    for key, value in overrides.items():
        OmegaConf.update(cfg, f"model.{key}", value, force_add=True)
    try:
        OmegaConf.resolve(cfg)
        return instantiate(cfg.model, _recursive_=True)
    except Exception as exc:
        raise ModelLoadError(f"sam2 config '{config}' does not build a model: {_first_lines(exc)}") from exc


def build_sam2_video_model(weights: Sam2Weights, device: torch.device) -> Any:
    """Build sam2's ``SAM2VideoPredictor`` from a config file and load its checkpoint strictly.

    Missing or unexpected checkpoint keys raise ModelLoadError listing them (sam2's own
    loader logs them and raises an empty RuntimeError).
    """
    import torch

    model = instantiate_sam2(weights.config)
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


def check_prompt(ref: VideoRef, keyframe_index: int, boxes: Sequence[BoxXYXY]) -> list[BoxXYXY]:
    """Validate a box prompt and clip each box to the frame; raise TrackerError naming the fault.

    A box with no area after clipping (a point, a line, or a box wholly outside the frame)
    is an error rather than being widened to one pixel: a 1-pixel prompt makes SAM2 return
    an arbitrary mask, and a silent wrong mask is worse than a failure the caller can record.
    """
    if not 0 <= keyframe_index < ref.num_frames:
        raise TrackerError(
            f"keyframe {keyframe_index} is out of range for video '{ref.path}' ({ref.num_frames} frames)"
        )
    if len(boxes) == 0:
        raise TrackerError(f"no boxes to track on keyframe {keyframe_index} of video '{ref.path}'")
    clipped: list[BoxXYXY] = []
    for i, box in enumerate(boxes):
        if len(box) != 4 or not all(isinstance(v, numbers.Real) and math.isfinite(v) for v in box):
            raise TrackerError(
                f"box {i} {tuple(box)!r} for video '{ref.path}' is not four finite numbers x1, y1, x2, y2"
            )
        x1, y1, x2, y2 = (float(v) for v in box)
        x1, x2 = min(max(x1, 0.0), ref.width), min(max(x2, 0.0), ref.width)
        y1, y2 = min(max(y1, 0.0), ref.height), min(max(y2, 0.0), ref.height)
        if x2 <= x1 or y2 <= y1:
            raise TrackerError(
                f"box {i} {tuple(box)!r} has no area inside the {ref.width}x{ref.height} frames of video "
                f"'{ref.path}' (x1 < x2 and y1 < y2 needed after clipping)"
            )
        clipped.append((x1, y1, x2, y2))
    return clipped


def native_input(ref: VideoRef) -> str | None:
    """The path to hand sam2's ``init_state`` directly, or None when frames must be exported.

    Direct input: an ``.mp4`` opened by the decord frame reader (sam2 decodes mp4 with
    decord, and revseg's decord reader only opens files where decord agrees with a full
    PyAV probe; files decord gets wrong are left to PyAV and exported here), or a folder
    of ``<integer>.jpg`` frames whose numeric order is also their name order (so every
    reader agrees on it) and whose count matches the reader's.
    """
    path = Path(ref.path)
    if path.is_file():
        return str(path) if path.suffix in _MP4_SUFFIXES and ref.backend == "decord" else None
    if not path.is_dir():
        return None
    names = sorted(p.name for p in path.iterdir() if p.suffix in _JPEG_SUFFIXES)
    stems = [Path(n).stem for n in names]
    if not names or len(names) != ref.num_frames or not all(s.isascii() and s.isdigit() for s in stems):
        return None
    return str(path) if stems == sorted(stems, key=int) else None


def export_jpeg_frames(video: FrameReader, folder: Path, *, progress: bool = False) -> int:
    """Write every frame of ``video`` to ``folder/00000.jpg`` ..., streaming; return the count.

    JPEG quality 95 with 4:4:4 chroma: close to the source pixels at about a tenth of a
    PNG's size, and what sam2's frame-folder loader accepts.
    """
    from PIL import Image

    from revseg.tools.frames import stream_frames

    ref = video.ref
    count = 0
    for count, frame in enumerate(stream_frames(video, progress=progress, desc="sam2: export frames"), start=1):
        Image.fromarray(frame).save(folder / f"{count - 1:05d}.jpg", quality=_EXPORT_JPEG_QUALITY, subsampling=0)
    if count != ref.num_frames:
        raise VideoError(f"video '{ref.path}' yielded {count} frames, but its reader reported {ref.num_frames}")
    return count


def _next_masks(frames: Iterator[tuple[int, list[int], torch.Tensor]]) -> FrameMasks | None:
    """The next frame from sam2's propagation as bool masks (logits > 0), or None at the end."""
    item = next(frames, None)
    if item is None:
        return None
    frame_index, _obj_ids, logits = item
    return FrameMasks(int(frame_index), (logits[:, 0] > 0.0).cpu().numpy())


class Sam2Tracker:
    """Box prompts on one keyframe, propagated forwards to the end and backwards to the start.

    Several boxes are several objects (ids 1..K) tracked jointly in one inference state;
    every frame's masks come out once as a (K, H, W) bool array at the video's size.
    ``offload_video_to_cpu`` / ``offload_state_to_cpu`` keep sam2's frame cache and
    per-frame outputs in host memory (slower, but long videos fit on a GPU).
    """

    def __init__(
        self,
        config: str | Path,
        checkpoint: str | Path,
        *,
        device: str | None = None,
        offload_video_to_cpu: bool = False,
        offload_state_to_cpu: bool = False,
        spec: str | None = None,
    ) -> None:
        weights = Sam2Weights(_resolve_config(str(config)), _resolve_checkpoint(str(checkpoint)))
        self._spec = spec or f"{SCHEME}:{config}:{checkpoint}"
        self._device = pick_device(device)
        self._model = build_sam2_video_model(weights, self._device)
        self.weights = weights
        self.offload_video_to_cpu = offload_video_to_cpu
        self.offload_state_to_cpu = offload_state_to_cpu
        _install_quiet_tqdm()

    @classmethod
    def from_spec(cls, spec: str, *, device: str | None = None, **options: Any) -> Sam2Tracker:
        """Build from a ``sam2:`` spec (see the module docstring); ``options`` go to the constructor."""
        weights = resolve_sam2_spec(spec)
        return cls(weights.config, weights.checkpoint, device=device, spec=spec, **options)

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
        raised as TrackerError naming the video while the iterator is consumed.
        """
        prompts = check_prompt(video.ref, keyframe_index, boxes)
        return self._propagate(video, keyframe_index, prompts, progress)

    def _propagate(
        self, video: FrameReader, keyframe: int, boxes: list[BoxXYXY], progress: bool
    ) -> Iterator[FrameMasks]:
        ref = video.ref
        state = self._init_state(video, progress)
        for obj_id, box in enumerate(boxes, start=1):
            self._call(
                ref, progress, self._model.add_new_points_or_box, state, frame_idx=keyframe, obj_id=obj_id, box=box
            )
        directions = [False] if keyframe == 0 else [False, True]
        for reverse in directions:
            frames = self._call(
                ref, progress, self._model.propagate_in_video, state, start_frame_idx=keyframe, reverse=reverse
            )
            while (masks := self._call(ref, progress, _next_masks, frames)) is not None:
                if reverse and masks.frame_index == keyframe:
                    continue  # the forward pass already yielded it
                yield masks

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
