"""The GRPO loss and its gradient against a straightforward per-token computation, and against TRL's."""

from __future__ import annotations

import math
from collections import defaultdict
from types import SimpleNamespace

import pytest
import torch

from revseg.rl.grpo import GRPOConfig, group_advantages, grpo_loss, sft_loss, token_weights

BETA, EPS = 1e-3, 0.2


def fixed_batch() -> dict[str, torch.Tensor]:
    """Two groups of three rollouts, ragged answer lengths, ratios inside and outside the clip range."""
    g = torch.Generator().manual_seed(7)
    b, t = 6, 9
    lengths = [9, 4, 7, 1, 6, 3]
    mask = torch.zeros(b, t)
    for i, n in enumerate(lengths):
        mask[i, t - n :] = 1.0  # answers right-aligned; the rest plays prompt/image tokens
    logps = -torch.rand(b, t, generator=g, dtype=torch.float64) * 3
    behaviour = logps + torch.randn(b, t, generator=g, dtype=torch.float64) * 0.3  # ratios up to ~exp(+-0.9)
    ref = logps + torch.randn(b, t, generator=g, dtype=torch.float64) * 0.2
    rewards = torch.tensor([[3.0, 1.5, 0.0], [1.0, 1.0, 2.5]], dtype=torch.float64)
    return {"logps": logps, "behaviour": behaviour, "ref": ref, "mask": mask, "rewards": rewards}


def reference_loss_and_grad(batch: dict[str, torch.Tensor]) -> tuple[float, list[list[float]]]:
    """Plain Python: the GRPO objective and its analytic gradient w.r.t. each token's log-prob."""
    logps, behaviour, ref, mask = (batch[k].tolist() for k in ("logps", "behaviour", "ref", "mask"))
    advantages: list[float] = []
    for group in batch["rewards"].tolist():
        mean = sum(group) / len(group)
        std = math.sqrt(sum((r - mean) ** 2 for r in group) / (len(group) - 1))
        advantages += [(r - mean) / (std + 1e-4) for r in group]
    live = [i for i in range(len(mask)) if sum(mask[i]) > 0]
    loss, grad = 0.0, [[0.0] * len(row) for row in mask]
    for i in live:
        n = sum(mask[i])
        a = advantages[i]
        for t, m in enumerate(mask[i]):
            if not m:
                continue
            ratio = math.exp(logps[i][t] - behaviour[i][t])
            clipped = min(max(ratio, 1 - EPS), 1 + EPS)
            unclipped_is_min = ratio * a <= clipped * a
            pg = -min(ratio * a, clipped * a)
            d = ref[i][t] - logps[i][t]
            kl = math.exp(d) - d - 1
            loss += (pg + BETA * kl) / (len(live) * n)
            dpg = -ratio * a if unclipped_is_min else 0.0  # the clipped branch is constant in logp
            dkl = -math.exp(d) + 1
            grad[i][t] = (dpg + BETA * dkl) / (len(live) * n)
    return loss, grad


def ours(batch: dict[str, torch.Tensor], aggregation: str = "sequence") -> tuple[torch.Tensor, torch.Tensor, dict]:
    logps = batch["logps"].clone().requires_grad_(True)
    adv = torch.cat([group_advantages(g) for g in batch["rewards"]])
    counts = [int(n) for n in batch["mask"].sum(1).tolist()]
    w = torch.tensor(token_weights(counts, aggregation), dtype=torch.float64)[:, None] * batch["mask"]  # type: ignore[arg-type]
    loss, stats = grpo_loss(logps, batch["behaviour"], adv, w, ref_logps=batch["ref"], beta=BETA, epsilon=EPS)
    loss.backward()
    assert logps.grad is not None
    return loss.detach(), logps.grad, stats.summary()


def test_loss_and_gradient_match_a_straightforward_computation() -> None:
    batch = fixed_batch()
    loss, grad, stats = ours(batch)
    expected_loss, expected_grad = reference_loss_and_grad(batch)
    assert float(loss) == pytest.approx(expected_loss, abs=1e-9)
    assert torch.allclose(grad, torch.tensor(expected_grad, dtype=torch.float64), atol=1e-9, rtol=0)
    assert 0.0 < stats["clip_fraction"] < 1.0  # the batch does exercise both branches
    assert stats["kl"] > 0.0


def test_masked_tokens_get_exactly_zero_gradient() -> None:
    batch = fixed_batch()
    _, grad, _ = ours(batch)
    assert (grad[batch["mask"] == 0] == 0).all()
    assert (grad[batch["mask"] == 1] != 0).sum() > 0


def test_on_policy_data_has_ratio_one_and_the_gradient_of_advantage_weighted_log_likelihood() -> None:
    batch = fixed_batch()
    batch["behaviour"] = batch["logps"].clone()
    batch["ref"] = batch["logps"].clone()  # KL 0 and zero KL gradient at pi = ref
    _, grad, stats = ours(batch)
    adv = torch.cat([group_advantages(g) for g in batch["rewards"]])
    n = batch["mask"].sum(1, keepdim=True)
    expected = -(adv[:, None] * batch["mask"] / (n * 6)).to(torch.float64)
    assert torch.allclose(grad, expected, atol=1e-12)
    assert stats["ratio"] == pytest.approx(1.0) and stats["clip_fraction"] == 0.0 and stats["kl"] == 0.0


def test_token_aggregation_weights_every_token_alike() -> None:
    assert token_weights([2, 0, 6], "token") == [0.125, 0.0, 0.125]
    assert token_weights([2, 0, 6], "sequence") == [0.25, 0.0, 1 / 12]
    assert token_weights([0, 0]) == [0.0, 0.0]


def test_group_advantages() -> None:
    adv = group_advantages([3.0, 1.5, 0.0])
    assert adv.tolist() == pytest.approx([1.5 / (1.5 + 1e-4), 0.0, -1.5 / (1.5 + 1e-4)])  # std = 1.5
    assert group_advantages([2.0, 2.0, 2.0]).tolist() == [0.0, 0.0, 0.0]
    assert group_advantages([5.0]).tolist() == [0.0]
    assert group_advantages([1.0, 3.0], scale=False).tolist() == [-1.0, 1.0]


def test_sft_loss_is_the_weighted_negative_log_likelihood() -> None:
    logps = torch.tensor([[-1.0, -2.0, -3.0]], requires_grad=True)
    w = torch.tensor([[0.0, 0.5, 0.5]])
    loss, _ = sft_loss(logps, w)
    loss.backward()
    assert float(loss.detach()) == pytest.approx(2.5)
    assert logps.grad is not None and logps.grad.tolist() == [[0.0, -0.5, -0.5]]


def test_config_defaults_are_the_papers() -> None:
    c = GRPOConfig()
    assert (c.learning_rate, c.num_generations, c.prompts_per_step, c.beta, c.epsilon) == (1e-6, 8, 128, 1e-3, 0.2)
    assert c.clip_high == 0.2 and c.to_dict()["algorithm"] == "grpo"
    with pytest.raises(ValueError, match="algorithm"):
        GRPOConfig(algorithm="ppo")  # type: ignore[arg-type]


def trl_compute_loss(batch: dict[str, torch.Tensor], logps: torch.Tensor, advantages: torch.Tensor) -> torch.Tensor:
    """TRL's own ``GRPOTrainer._compute_loss`` (loss_type 'grpo'), fed our per-token log-probs."""
    trl_grpo = pytest.importorskip("trl.trainer.grpo_trainer", reason="trl is not installed")
    b, t = logps.shape
    accelerator = SimpleNamespace(
        reduce=lambda x, reduction="sum": x, gather=lambda x: x, gather_for_metrics=lambda x: x, num_processes=1
    )
    fake = SimpleNamespace(
        _get_per_token_logps_and_entropies=lambda *a, **k: (logps, torch.zeros_like(logps), None),
        top_entropy_quantile=1.0,
        off_policy_mask_threshold=None,
        importance_sampling_level="token",
        loss_type="grpo",
        beta=BETA,
        epsilon_low=EPS,
        epsilon_high=EPS,
        args=SimpleNamespace(use_bias_correction_kl=False, delta=None),
        use_vllm=False,
        vllm_importance_sampling_correction=False,
        model=SimpleNamespace(training=True),
        current_gradient_accumulation_steps=1,
        _entropy_bonus_enabled=False,
        aux_loss_enabled=False,
        _metrics={"train": defaultdict(list), "eval": defaultdict(list)},
        accelerator=accelerator,
    )
    inputs = {
        "prompt_ids": torch.zeros(b, 1, dtype=torch.long),
        "prompt_mask": torch.ones(b, 1, dtype=torch.long),
        "completion_ids": torch.zeros(b, t, dtype=torch.long),
        "completion_mask": batch["mask"].long(),
        "advantages": advantages,
        "old_per_token_logps": batch["behaviour"],
        "ref_per_token_logps": batch["ref"],
    }
    # No skip on AttributeError/KeyError/TypeError: a TRL whose internals moved fails here, loudly,
    # so the comparison cannot silently stop running (the lock file pins the TRL it was written for).
    return trl_grpo.GRPOTrainer._compute_loss(fake, None, inputs)


def test_matches_trl_grpo_loss_and_gradient() -> None:
    batch = fixed_batch()
    adv = torch.cat([group_advantages(g) for g in batch["rewards"]])
    trl_logps = batch["logps"].clone().requires_grad_(True)
    trl_loss = trl_compute_loss(batch, trl_logps, adv)
    trl_loss.backward()
    loss, grad, _ = ours(batch)
    assert float(loss) == pytest.approx(float(trl_loss.detach()), abs=1e-6)
    assert trl_logps.grad is not None
    assert torch.allclose(grad, trl_logps.grad, atol=1e-6, rtol=0)
