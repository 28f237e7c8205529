"""The GRPO objective on recorded groups (DESIGN.md 1.5), as plain tensor functions.

For rollout ``i`` of a group with total reward ``r_i`` and for each of its own answer tokens
``t`` (turn 1 and turn 2 answers; prompts, images and the second prompt are masked)::

    A_i     = (r_i - mean(r)) / (std(r) + eps)                      group-normalised advantage
    rho_t   = exp(log pi_theta(o_t) - log pi_behaviour(o_t))        token-level importance ratio
    pg_t    = -min(rho_t * A_i, clip(rho_t, 1 - eps_low, 1 + eps_high) * A_i)
    kl_t    = exp(log pi_ref(o_t) - log pi_theta(o_t)) - (log pi_ref(o_t) - log pi_theta(o_t)) - 1   (k3)
    loss    = sum_i sum_t w_{i,t} * (pg_t + beta * kl_t)

with ``w_{i,t} = 1 / (N * |o_i|)`` (``loss_aggregation="sequence"``: mean over a rollout's
tokens, then over the N rollouts, as in DeepSeekMath's GRPO and TRL's ``loss_type="grpo"``)
or ``1 / sum_i |o_i|`` (``"token"``). The behaviour log-probs are the ones recorded at
collection time; on on-policy data ``rho = 1`` and this is the paper's objective. ``std``
is the unbiased sample standard deviation (as TRL computes it).

Weights are computed once over the whole optimizer batch, so summing the losses of its
micro-batches (and of its data-parallel shards) gives exactly the full-batch gradient.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field, fields
from typing import TYPE_CHECKING, Any, Literal

if TYPE_CHECKING:
    import torch

LossAggregation = Literal["sequence", "token"]
Algorithm = Literal["grpo", "rft"]

# Qwen2.5-VL's language-model projections; the vision tower's blocks are left frozen under LoRA.
QWEN_LORA_TARGETS = r".*language_model.*\.(q_proj|k_proj|v_proj|o_proj|gate_proj|up_proj|down_proj)"


@dataclass(frozen=True)
class GRPOConfig:
    """Every training knob, with its default and where it comes from (STYLE.md: TRL-style config).

    ``algorithm="rft"`` trains by rejection-sampling fine-tuning instead: plain supervised
    fine-tuning on the answer tokens of each group's best rollout (the fallback for data
    whose behaviour policy is not the model being trained).
    """

    algorithm: Algorithm = field(
        default="grpo", metadata={"help": "'grpo' (paper) or 'rft': SFT on each group's best rollout."}
    )
    learning_rate: float = field(default=1e-6, metadata={"help": "AdamW learning rate (paper: 1e-6)."})
    num_generations: int = field(
        default=8, metadata={"help": "n, rollouts per (video, query) group (paper: 8); collection uses it."}
    )
    prompts_per_step: int = field(
        default=128, metadata={"help": "Groups per optimizer step (paper: 128 prompts = 1024 sequences)."}
    )
    beta: float = field(default=1e-3, metadata={"help": "KL coefficient against the frozen reference (paper: 1e-3)."})
    epsilon: float = field(default=0.2, metadata={"help": "PPO clip range, lower side (PPO/DeepSeekMath: 0.2)."})
    epsilon_high: float | None = field(
        default=None, metadata={"help": "Upper clip range; None uses epsilon (DAPO's clip-higher when larger)."}
    )
    scale_rewards: bool = field(
        default=True, metadata={"help": "Divide advantages by the group std (GRPO; False gives Dr. GRPO's)."}
    )
    advantage_eps: float = field(
        default=1e-4, metadata={"help": "eps in (r - mean) / (std + eps); paper silent, TRL's value."}
    )
    loss_aggregation: LossAggregation = field(
        default="sequence",
        metadata={"help": "'sequence': mean per rollout then over rollouts (GRPO, TRL 'grpo'); 'token': global mean."},
    )
    num_epochs: int = field(default=1, metadata={"help": "Passes over the recorded groups (paper: on-policy, 1)."})
    max_steps: int | None = field(default=None, metadata={"help": "Stop after this many optimizer steps."})
    max_grad_norm: float | None = field(
        default=1.0, metadata={"help": "Gradient clipping norm; paper silent, transformers' default."}
    )
    weight_decay: float = field(default=0.0, metadata={"help": "AdamW weight decay; paper silent."})
    optimizer: Literal["adamw", "sgd"] = field(
        default="adamw", metadata={"help": "'adamw' (paper silent; the usual choice) or plain 'sgd' (for checks)."}
    )
    warmup_steps: int = field(default=0, metadata={"help": "Linear learning-rate warm-up steps; paper silent."})
    seed: int = field(default=0, metadata={"help": "Seed for shuffling groups and any dropout."})
    min_group_std: float = field(
        default=0.0,
        metadata={"help": "Skip groups whose reward std is at most this (no signal; only the KL term would act)."},
    )
    rft_min_reward: float | None = field(
        default=None, metadata={"help": "RFT: keep a group's best rollout only if its reward is at least this."}
    )
    use_lora: bool = field(
        default=False, metadata={"help": "Train LoRA adapters (peft); the reference is the adapter-disabled base."}
    )
    reference_model: str | None = field(
        default=None,
        metadata={
            "help": "KL reference (hf:PATH or PATH): keep it the first round's model when training round after "
            "round; None uses the policy as loaded (with LoRA: the adapter-disabled base)."
        },
    )
    lora_r: int = field(default=64, metadata={"help": "LoRA rank."})
    lora_alpha: int = field(default=128, metadata={"help": "LoRA alpha."})
    lora_dropout: float = field(default=0.05, metadata={"help": "LoRA dropout."})
    lora_target_modules: str | list[str] = field(
        default=QWEN_LORA_TARGETS, metadata={"help": "peft target_modules: the language model's projections."}
    )
    gradient_checkpointing: bool = field(default=False, metadata={"help": "Trade compute for activation memory."})
    logging_dir: str | None = field(
        default=None, metadata={"help": "TensorBoard folder (when tensorboard is installed); None: OUT/runs."}
    )
    save_steps: int | None = field(default=None, metadata={"help": "Also save a checkpoint every this many steps."})
    optimizer_state_from: str | None = field(
        default=None,
        metadata={
            "help": "A previous run's folder whose optimizer moments this run starts from (rounds of collect -> "
            "train); None starts them at zero. The learning-rate schedule starts afresh."
        },
    )

    def __post_init__(self) -> None:
        if self.algorithm not in ("grpo", "rft"):
            raise ValueError(f"unknown algorithm {self.algorithm!r}; use 'grpo' or 'rft'")
        if self.optimizer not in ("adamw", "sgd"):
            raise ValueError(f"unknown optimizer {self.optimizer!r}; use 'adamw' or 'sgd'")
        if self.loss_aggregation not in ("sequence", "token"):
            raise ValueError(f"unknown loss_aggregation {self.loss_aggregation!r}; use 'sequence' or 'token'")
        for name in ("learning_rate", "prompts_per_step", "num_generations", "num_epochs"):
            if getattr(self, name) <= 0:
                raise ValueError(f"{name} must be positive, got {getattr(self, name)}")
        if self.beta < 0 or self.epsilon <= 0:
            raise ValueError("beta must be >= 0 and epsilon > 0")

    @property
    def clip_high(self) -> float:
        """The upper clip range actually used."""
        return self.epsilon if self.epsilon_high is None else self.epsilon_high

    def to_dict(self) -> dict[str, Any]:
        """Plain dict, saved next to checkpoints."""
        return {f.name: getattr(self, f.name) for f in fields(self)}


def group_advantages(rewards: Sequence[float] | torch.Tensor, *, eps: float = 1e-4, scale: bool = True) -> torch.Tensor:
    """``(r - mean(r)) / (std(r) + eps)`` over one group's rewards (unbiased std); float64.

    A single-rollout group has no baseline and gets advantage 0.
    """
    import torch

    r = torch.as_tensor(rewards, dtype=torch.float64)
    if r.numel() < 2:
        return torch.zeros_like(r)
    centred = r - r.mean()
    return centred / (r.std(unbiased=True) + eps) if scale else centred


def token_weights(token_counts: Sequence[int], aggregation: LossAggregation = "sequence") -> list[float]:
    """Per-token loss weight of each rollout, given every rollout's answer-token count in the batch.

    ``sequence``: ``1 / (N * n_i)``; ``token``: ``1 / sum(n)``. Rollouts without tokens get 0.
    """
    live = [n for n in token_counts if n > 0]
    if not live:
        return [0.0 for _ in token_counts]
    if aggregation == "sequence":
        return [1.0 / (len(live) * n) if n > 0 else 0.0 for n in token_counts]
    total = float(sum(live))
    return [1.0 / total if n > 0 else 0.0 for n in token_counts]


@dataclass
class LossStats:
    """Sums over the tokens of one loss call, so stats add up across micro-batches and processes."""

    tokens: float = 0.0
    kl_sum: float = 0.0
    clipped: float = 0.0
    ratio_sum: float = 0.0
    pg_loss: float = 0.0
    kl_loss: float = 0.0

    def add(self, other: LossStats) -> None:
        """Accumulate another call's sums."""
        for f in fields(self):
            setattr(self, f.name, getattr(self, f.name) + getattr(other, f.name))

    def summary(self) -> dict[str, float]:
        """Token means: KL, clip fraction, mean ratio; and the two loss parts."""
        n = max(self.tokens, 1.0)
        return {
            "kl": self.kl_sum / n,
            "clip_fraction": self.clipped / n,
            "ratio": self.ratio_sum / n,
            "pg_loss": self.pg_loss,
            "kl_loss": self.kl_loss,
        }


def grpo_loss(
    logps: torch.Tensor,
    behaviour_logps: torch.Tensor,
    advantages: torch.Tensor,
    weights: torch.Tensor,
    *,
    ref_logps: torch.Tensor | None = None,
    beta: float = 1e-3,
    epsilon: float = 0.2,
    epsilon_high: float | None = None,
) -> tuple[torch.Tensor, LossStats]:
    """The clipped-ratio GRPO loss with a k3 KL penalty; shapes (B, T), advantages (B,) or (B, T).

    ``weights`` carries both the mask and the aggregation (0 on prompt, image, padding and
    second-prompt tokens); see :func:`token_weights`. ``ref_logps`` may be None when
    ``beta == 0``. Returns the scalar loss and detached token sums for logging.
    """
    import torch

    if advantages.dim() == 1:
        advantages = advantages.unsqueeze(1)
    advantages = advantages.to(logps.dtype)
    weights = weights.to(logps.dtype)
    mask = weights != 0
    high = epsilon if epsilon_high is None else epsilon_high
    ratio = torch.exp(logps - behaviour_logps.to(logps.dtype))
    clipped_ratio = torch.clamp(ratio, 1.0 - epsilon, 1.0 + high)
    pg = -torch.min(ratio * advantages, clipped_ratio * advantages)
    if beta != 0.0:
        if ref_logps is None:
            raise ValueError("grpo_loss needs ref_logps when beta != 0")
        delta = ref_logps.to(logps.dtype) - logps
        kl = torch.exp(delta) - delta - 1.0
    else:
        kl = torch.zeros_like(logps)
    pg_loss = (weights * pg).sum()
    kl_loss = beta * (weights * kl).sum()
    loss = pg_loss + kl_loss
    with torch.no_grad():
        is_clipped = ((ratio < 1.0 - epsilon) & (advantages < 0)) | ((ratio > 1.0 + high) & (advantages > 0))
        stats = LossStats(
            tokens=float(mask.sum()),
            kl_sum=float((kl * mask).sum()),
            clipped=float((is_clipped & mask).sum()),
            ratio_sum=float((ratio * mask).sum()),
            pg_loss=float(pg_loss),
            kl_loss=float(kl_loss),
        )
    return loss, stats


def sft_loss(logps: torch.Tensor, weights: torch.Tensor) -> tuple[torch.Tensor, LossStats]:
    """Negative log-likelihood of the answer tokens, weighted like :func:`grpo_loss` (RFT)."""
    import torch

    weights = weights.to(logps.dtype)
    loss = -(weights * logps).sum()
    with torch.no_grad():
        stats = LossStats(tokens=float((weights != 0).sum()), pg_loss=float(loss))
    return loss, stats
