"""The local transformers backend: a Qwen-VL-style model run with ``generate`` (spec ``hf:MODEL``).

It returns, besides the text, the generated token ids and each token's log-probability
under the distribution it was *sampled from* (after temperature, top-k and top-p), which
is what off-policy GRPO needs as the behaviour log-prob (DESIGN.md 1.5, 2.3b).

Two choices worth knowing:

- Sampling is fully determined by :class:`~revseg.settings.SamplingParams`. The sampling
  defaults a checkpoint ships in ``generation_config.json`` (Qwen2.5-VL-7B-Instruct ships
  ``top_k=1, top_p=0.001, repetition_penalty=1.05``), and transformers' own global
  ``top_k=50``, are dropped at load time, so a recorded trajectory says everything that
  shaped its tokens. Only the end-of-sequence ids are kept from the checkpoint.
- ``token_ids`` end with the end-of-turn token (``<|im_end|>``) when the model stopped by
  itself (``finish_reason == "stop"``); it is one of the model's actions and gets its
  log-prob like any other, and it is exactly the token the chat template writes after an
  assistant message, so the next turn's prompt continues the same sequence. ``text`` is
  decoded without special tokens. A turn cut by ``max_new_tokens`` has
  ``finish_reason == "length"`` and no end token.
- Assistant history that carries its generated ``token_ids`` (the graph passes turn 1's)
  enters the prompt as those ids, closed by ``<|im_end|>``, not as its text re-tokenised:
  turn 2 is generated in exactly the context training rebuilds and scores it in.

torch and transformers are imported when a policy is built, not when this module is.
"""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from revseg.devices import pick_device
from revseg.errors import ModelLoadError, PolicyError, SpecError
from revseg.hub import resolve_model_dir
from revseg.policies.base import Generation, Message
from revseg.policies.tokens import closed_turn, end_of_turn_id, placeholder_token_ids, splice_history
from revseg.policies.wire import wire_messages
from revseg.provenance import model_revision, template_sha256
from revseg.settings import SamplingParams
from revseg.trajectory import BoxConvention, PolicyInfo

if TYPE_CHECKING:
    import torch

logger = logging.getLogger(__name__)

# How each model family writes boxes (DESIGN.md 2.3b), keyed by ``config.model_type``.
BOX_CONVENTIONS: dict[str, BoxConvention] = {
    "qwen2_5_vl": "absolute",
    "qwen2_vl": "norm1000",
    "qwen3_vl": "norm1000",
    "qwen3_vl_moe": "norm1000",
}

_DTYPES = {
    "bfloat16": "bfloat16",
    "bf16": "bfloat16",
    "float16": "float16",
    "fp16": "float16",
    "half": "float16",
    "float32": "float32",
    "fp32": "float32",
    "float": "float32",
}
_LOAD_HINT = "--policy hf:/path/to/Qwen2.5-VL-7B-Instruct (or REVSEG_POLICY)"


def chat_messages(messages: Sequence[Message]) -> list[dict[str, Any]]:
    """Turn our messages into the content-block dicts that transformers chat templates read.

    Images become ``{"type": "image", "image": PIL}`` blocks in place; assistant history is
    passed as a plain string, which every Qwen template renders verbatim.
    """
    return wire_messages(messages, lambda part: {"type": "image", "image": part.image})


def pick_dtype(dtype: str | None, device: str) -> torch.dtype:
    """bfloat16 on CUDA and float32 elsewhere unless ``dtype`` names one (``bf16``, ``float16``, ...)."""
    import torch

    if dtype in (None, "", "auto"):
        return torch.bfloat16 if device.startswith("cuda") else torch.float32
    name = _DTYPES.get(dtype.lower())
    if name is None:
        raise SpecError(f"unknown dtype '{dtype}' for the hf policy; use one of bfloat16, float16, float32")
    return getattr(torch, name)


def pick_attn_implementation(attn_implementation: str | None, device: str, dtype: torch.dtype) -> str:
    """FlashAttention-2 on CUDA in half precision when ``flash_attn`` imports, else PyTorch SDPA."""
    import torch

    if attn_implementation:
        return attn_implementation
    if device.startswith("cuda") and dtype in (torch.bfloat16, torch.float16):
        try:
            import flash_attn  # noqa: F401
        except Exception:  # noqa: BLE001 - a missing or ABI-broken build both mean "not available"
            return "sdpa"
        return "flash_attention_2"
    return "sdpa"


class HFPolicy:
    """A transformers vision-language model behind the :class:`~revseg.policies.base.Policy` protocol."""

    def __init__(self, model: Any, processor: Any, info: PolicyInfo) -> None:
        """Wrap a loaded model and processor; most callers want :meth:`from_spec`.

        The model's generation config is replaced by one holding only its end and pad ids.
        ``info`` gains the processor's chat-template hash when it has none.
        """
        self.model = model
        self.processor = processor
        # The template that renders every prompt is part of what a rebuild must match (revseg.provenance).
        template = template_sha256(getattr(processor, "chat_template", None))
        self._info = info if info.chat_template_sha256 else info.model_copy(update={"chat_template_sha256": template})
        self._lock = threading.Lock()
        tokenizer = processor.tokenizer
        eos = model.generation_config.eos_token_id
        eos_ids = [eos] if isinstance(eos, int) else list(eos or [tokenizer.eos_token_id])
        pad = model.generation_config.pad_token_id
        self._eos_ids = frozenset(int(i) for i in eos_ids)
        self._pad_id = int(pad if pad is not None else eos_ids[0])
        # Keep only the stop ids from the checkpoint's generation config: SamplingParams decides the rest.
        from transformers import GenerationConfig

        model.generation_config = GenerationConfig(eos_token_id=eos_ids, pad_token_id=self._pad_id)
        self._suppressed = placeholder_token_ids(tokenizer)

    @classmethod
    def from_spec(
        cls,
        ref: str,
        *,
        device: str | None = None,
        dtype: str | None = None,
        box_convention: str | None = None,
        attn_implementation: str | None = None,
        spec: str | None = None,
    ) -> HFPolicy:
        """Load a policy from a hub id or a local folder, failing fast and in one line.

        The reference is resolved first (no hub and no cache means ModelLoadError within
        seconds), then the config is read to pick the box convention before any weights
        load. ``device``/``dtype``/``attn_implementation`` default to CUDA + bfloat16 +
        FlashAttention-2 (or SDPA) when a GPU is visible, else CPU + float32 + SDPA.
        ``spec`` is recorded in trajectories; it defaults to ``hf:<ref>``.
        """
        path = resolve_model_dir(ref, what="policy", hint=_LOAD_HINT)
        from transformers import AutoConfig, AutoModelForImageTextToText, AutoProcessor

        try:
            config = AutoConfig.from_pretrained(path)
        except Exception as exc:  # transformers raises OSError, ValueError, KeyError...
            raise ModelLoadError(
                f"policy folder {path} has no readable model config ({_one_line(exc)}); "
                f"point at a transformers checkpoint: {_LOAD_HINT}"
            ) from exc
        from transformers.models.auto.modeling_auto import MODEL_FOR_IMAGE_TEXT_TO_TEXT_MAPPING_NAMES

        if config.model_type not in MODEL_FOR_IMAGE_TEXT_TO_TEXT_MAPPING_NAMES:
            raise ModelLoadError(
                f"policy folder {path} holds a '{config.model_type}' model, which does not take images; "
                f"the hf policy needs a vision-language checkpoint: {_LOAD_HINT}"
            )
        convention = _box_convention(config.model_type, box_convention)
        device = str(pick_device(device, what="policy"))
        torch_dtype = pick_dtype(dtype, device)
        attn = pick_attn_implementation(attn_implementation, device, torch_dtype)
        started = time.perf_counter()
        try:
            processor = AutoProcessor.from_pretrained(path)
            model = AutoModelForImageTextToText.from_pretrained(
                path, dtype=torch_dtype, attn_implementation=attn, device_map=device
            )
        except Exception as exc:  # report any load failure as one line naming the folder
            raise ModelLoadError(f"could not load policy '{ref}' from {path}: {_one_line(exc)}") from exc
        model.eval()
        logger.info("loaded %s (%s, %s, %s) in %.1fs", path, device, torch_dtype, attn, time.perf_counter() - started)
        info = PolicyInfo(
            spec=spec or f"hf:{ref}", backend="hf", model=ref, box_convention=convention, revision=model_revision(path)
        )
        return cls(model, processor, info)

    @property
    def info(self) -> PolicyInfo:
        """Identity and box convention, recorded in every trajectory."""
        return self._info

    @property
    def device(self) -> torch.device:
        """Where the model's inputs must go."""
        return self.model.device

    def seen_size(self, width: int, height: int) -> tuple[int, int]:
        """The (width, height) after the processor's smart resize: multiples of patch * merge within its pixel budget.

        Processors without Qwen-style patch settings are assumed to keep the size.
        """
        image_processor = getattr(self.processor, "image_processor", None)
        patch = getattr(image_processor, "patch_size", None)
        merge = getattr(image_processor, "merge_size", None)
        size = getattr(image_processor, "size", None)
        min_pixels = _size_field(size, "shortest_edge")
        max_pixels = _size_field(size, "longest_edge")
        if not (patch and merge and min_pixels and max_pixels):
            return width, height
        from transformers.models.qwen2_vl.image_processing_qwen2_vl import smart_resize

        h, w = smart_resize(height, width, factor=patch * merge, min_pixels=min_pixels, max_pixels=max_pixels)
        return w, h

    def build_inputs(self, messages: Sequence[Message]) -> Any:
        """The exact model inputs (token ids, pixel values, grids) for a prompt ending in a generation cue.

        Assistant messages that carry ``token_ids`` enter as those ids, not as their text
        re-tokenised: the conversation is rendered, then each such answer's span is swapped
        for its ids by :func:`~revseg.policies.tokens.splice_history`, the splice training
        applies when it rebuilds a recorded rollout. Public so that training can rebuild
        the behaviour policy's inputs and re-score its tokens.
        """
        rendered = self._render(messages)
        end: int | None = None
        # Last answer first: a splice changes lengths only after its own span, so earlier spans stay put.
        for index in reversed(range(len(messages))):
            ids = messages[index].token_ids
            if messages[index].role != "assistant" or ids is None:
                continue
            end = end_of_turn_id(self.processor.tokenizer) if end is None else end
            prefix = self._render(messages[:index])["input_ids"]
            try:
                rendered = splice_history(rendered, prefix, closed_turn(ids, end), end)
            except PolicyError as exc:
                raise PolicyError(f"{self._info.spec}: {exc}") from exc
        return rendered

    def _render(self, messages: Sequence[Message]) -> Any:
        """The processor's batch for ``messages`` as the chat template writes them (history as text)."""
        return self.processor.apply_chat_template(
            chat_messages(messages),
            add_generation_prompt=True,
            tokenize=True,
            return_dict=True,
            return_tensors="pt",
        ).to(self.device)

    def generate(self, messages: Sequence[Message], sampling: SamplingParams) -> Generation:
        """Answer the last user message; returns text, token ids and their sampling log-probs."""
        import torch

        if not messages or messages[-1].role != "user":
            raise PolicyError("the conversation must end with a user message for the hf policy to answer")
        inputs = self.build_inputs(messages)
        prompt_len = int(inputs["input_ids"].shape[1])
        kwargs = _generate_kwargs(sampling, self._suppressed)
        started = time.perf_counter()
        try:
            # One call at a time: the model keeps per-call state (Qwen's rope deltas) and seeding forks a global RNG.
            with self._lock, torch.inference_mode(), torch.random.fork_rng(devices=self._rng_devices()):
                if sampling.seed is not None:
                    torch.manual_seed(sampling.seed)
                out = self.model.generate(**inputs, **kwargs)
        except torch.OutOfMemoryError as exc:
            raise PolicyError(
                f"{self._info.spec} ran out of memory on a {prompt_len}-token prompt; "
                "use fewer or smaller frames, a smaller model, or a larger device"
            ) from exc
        token_ids = [int(i) for i in out.sequences[0, prompt_len:].tolist()]
        if len(out.scores) != len(token_ids):
            raise PolicyError(f"transformers returned {len(out.scores)} scores for {len(token_ids)} generated tokens")
        # Log-softmax of the processed scores = the distribution each token was drawn from (greedy:
        # the model's own, as no warper runs). One step at a time: a stacked copy costs vocab x tokens floats.
        steps = zip(out.scores, token_ids, strict=True)
        chosen = [torch.log_softmax(step[0].float(), dim=-1)[tok] for step, tok in steps]
        logprobs = [float(x) for x in torch.stack(chosen).tolist()] if chosen else []
        del out
        stopped = bool(token_ids) and token_ids[-1] in self._eos_ids
        text = self.processor.tokenizer.decode(token_ids, skip_special_tokens=True)
        logger.debug("%s: %d tokens in %.2fs", self._info.spec, len(token_ids), time.perf_counter() - started)
        return Generation(
            text=text,
            token_ids=token_ids,
            logprobs=logprobs,
            logprobs_approximate=False,
            token_source="generated",
            finish_reason="stop" if stopped else "length",
            usage={"prompt_tokens": prompt_len, "completion_tokens": len(token_ids)},
        )

    async def agenerate(self, messages: Sequence[Message], sampling: SamplingParams) -> Generation:
        """:meth:`generate` in a worker thread; concurrent callers queue on the model's lock, not the event loop."""
        return await asyncio.to_thread(self.generate, messages, sampling)

    def _rng_devices(self) -> list[int]:
        """CUDA devices whose RNG a seeded call must fork (and so leave untouched for others)."""
        device = self.device
        if device.type != "cuda":
            return []
        return [device.index if device.index is not None else 0]


def _box_convention(model_type: str, override: str | None) -> BoxConvention:
    """The family's box convention, or the override; unknown families must say which they use."""
    if override is not None:
        if override not in ("absolute", "norm1000"):
            raise SpecError(f"unknown box convention '{override}'; use 'absolute' or 'norm1000'")
        return override  # type: ignore[return-value]
    convention = BOX_CONVENTIONS.get(model_type)
    if convention is None:
        raise SpecError(
            f"cannot tell how model type '{model_type}' writes boxes; pass box_convention='absolute' "
            "(pixels of the image it saw) or 'norm1000' (a 0-1000 grid)"
        )
    return convention


def _one_line(exc: BaseException, limit: int = 300) -> str:
    """An exception as ``Type: first line``, cut to ``limit`` characters (transformers' messages run long)."""
    lines = str(exc).strip().splitlines()
    text = f"{type(exc).__name__}: {lines[0] if lines else ''}"
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _size_field(size: Any, key: str) -> int | None:
    """Read ``shortest_edge``/``longest_edge`` from a SizeDict or a plain dict."""
    value = size.get(key) if isinstance(size, dict) else getattr(size, key, None)
    return int(value) if value else None


def _generate_kwargs(sampling: SamplingParams, suppressed: Sequence[int] = ()) -> dict[str, Any]:
    """Map SamplingParams onto ``generate`` kwargs, spelling out every knob so no default sneaks in.

    ``suppressed`` ids (the vision placeholders) are never sampled; the recorded scores are
    the processed ones, so the log-probs are those of the distribution actually sampled.
    """
    kwargs: dict[str, Any] = {
        "max_new_tokens": sampling.max_new_tokens,
        "num_beams": 1,
        "repetition_penalty": 1.0,
        "output_scores": True,
        "return_dict_in_generate": True,
    }
    if suppressed:
        kwargs["suppress_tokens"] = list(suppressed)
    if sampling.greedy:
        return kwargs | {"do_sample": False}  # no warper runs, so temperature/top-k/top-p cannot matter
    return kwargs | {
        "do_sample": True,
        "temperature": sampling.temperature,
        "top_p": sampling.top_p,
        "top_k": sampling.top_k or 0,  # None means no top-k; transformers would otherwise apply 50
    }
