"""The preference trainers' formulas, written by the suite from the papers and trl's documented formulas, never
by calling trl: DPO's loss per `loss_type` (Rafailov et al. 2023; IPO: Azar et al. 2023 eq. 17, trl's
per-token normalisation; robust: Chowdhury et al. 2024; hinge: SLiC; bco_pair, sppo_hard, nca_pair, apo_zero,
apo_down as trl's DPOConfig documents them; EXO: Ji et al.
2024; AOT: Melnyk et al. 2024; DiscoPOP: Lu et al. 2024; sigmoid_norm and sft, RPO's NLL term, as trl documents
them), its implicit rewards (beta x log-ratio), KTO's KL estimate and
loss (Ethayarajh et al. 2024) and the reward model's pairwise loss (InstructGPT; `center_rewards_coefficient`
from Eisenstein et al. 2023). Plain floats in, floats out: the checks feed them what the child recorded."""
from __future__ import annotations

import math
from dataclasses import dataclass

# relation -> the library functions its expected value must not be computed with (the lead's guard scans for it)
FORBIDDEN_ORACLES: dict[str, tuple[str, ...]] = {
    "dpo_logps_by_definition": ("trl.trainer.utils.selective_log_softmax", "trl.trainer.utils.add_fused_lm_head",
                                "trl.trainer.dpo_trainer.DPOTrainer._compute_loss",
                                "trl.trainer.dpo_trainer.DPOTrainer.compute_ref_log_probs",
                                "trl.trainer.dpo_trainer.DataCollatorForPreference"),
    "dpo_loss_by_definition": ("trl.trainer.dpo_trainer.DPOTrainer._compute_loss",
                               "trl.trainer.dpo_trainer.DPOTrainer.compute_loss"),
    "dpo_rewards_by_definition": ("trl.trainer.dpo_trainer.DPOTrainer._compute_loss",),
    "kto_kl_by_definition": ("trl.trainer.kto_trainer.KTOTrainer._compute_kl_logps",
                             "trl.trainer.kto_trainer.KTOTrainer._compute_loss"),
    "kto_loss_by_definition": ("trl.trainer.kto_trainer.KTOTrainer._compute_loss",
                               "trl.trainer.kto_trainer.KTOTrainer.compute_loss"),
    "reward_loss_by_definition": ("trl.trainer.reward_trainer.RewardTrainer.compute_loss",),
    "reward_padding_invariance": ("trl.trainer.reward_trainer.DataCollatorForPreference",
                                  "trl.trainer.utils.pad"),
}


def logsigmoid(x: float) -> float:
    """log(1 / (1 + e^-x)), stable on both sides."""
    return -math.log1p(math.exp(-x)) if x >= 0 else x - math.log1p(math.exp(x))


def sigmoid(x: float) -> float:
    return math.exp(logsigmoid(x))


@dataclass(frozen=True)
class Pair:
    """One preference pair's sequence log-probabilities (summed over its completion tokens) under the policy
    and the reference, and its completion lengths (IPO normalises by them)."""

    chosen: float
    rejected: float
    ref_chosen: float
    ref_rejected: float
    chosen_tokens: int = 1
    rejected_tokens: int = 1

    @property
    def chosen_ratio(self) -> float:
        return self.chosen - self.ref_chosen

    @property
    def rejected_ratio(self) -> float:
        return self.rejected - self.ref_rejected


def _delta(p: Pair) -> float:
    return p.chosen_ratio - p.rejected_ratio


def _dpo_pair_loss(loss_type: str, p: Pair, beta: float, eps: float, tau: float) -> float:
    """One pair's loss for a loss type defined pair by pair (reverse-KL scores, as trl's default f-divergence)."""
    d, c, r = _delta(p), p.chosen_ratio, p.rejected_ratio
    if loss_type == "sigmoid":  # trl 1.x documents label smoothing for robust, EXO (and AOT) only: cDPO is gone
        return -logsigmoid(beta * d)
    if loss_type == "hinge":
        return max(0.0, 1 - beta * d)
    if loss_type == "ipo":  # the per-token form trl documents (the IPO authors' normalisation)
        return (_per_token_delta(p) - 1 / (2 * beta)) ** 2
    if loss_type == "sigmoid_norm":  # DPO's sigmoid on the per-token log-ratios (IPO's normalisation)
        return -logsigmoid(beta * _per_token_delta(p))
    if loss_type == "robust":
        return (-(1 - eps) * logsigmoid(beta * d) + eps * logsigmoid(-beta * d)) / (1 - 2 * eps)
    if loss_type == "exo_pair":  # EXO (Ji et al. 2024, eq. 16, K = 2): KL(q || p) with q the policy's softmax over
        # the pair, (sigmoid(beta d), sigmoid(-beta d)), and p the smoothed labels (1 - eps, eps)
        return (sigmoid(beta * d) * (logsigmoid(beta * d) - math.log1p(-eps))
                + sigmoid(-beta * d) * (logsigmoid(-beta * d) - math.log(eps)))
    if loss_type == "discopop":  # DiscoPOP (Lu et al. 2024, eq. 5): logistic and exponential losses blended by
        # sigmoid(beta d / tau)
        z = beta * d
        blend = sigmoid(z / tau)
        return (1 - blend) * -logsigmoid(z) + blend * math.exp(-z)
    if loss_type == "bco_pair":
        return -logsigmoid(beta * c) - logsigmoid(-beta * r)
    if loss_type == "nca_pair":
        return -logsigmoid(beta * c) - 0.5 * logsigmoid(-beta * c) - 0.5 * logsigmoid(-beta * r)
    if loss_type == "sppo_hard":
        return (c - 0.5 / beta) ** 2 + (r + 0.5 / beta) ** 2
    if loss_type == "apo_zero":
        return 1 - sigmoid(beta * c) + sigmoid(beta * r)
    if loss_type == "apo_down":
        return sigmoid(beta * c) + 1 - sigmoid(beta * (c - r))
    raise KeyError(loss_type)


def _per_token_delta(p: Pair) -> float:
    return p.chosen_ratio / max(p.chosen_tokens, 1) - p.rejected_ratio / max(p.rejected_tokens, 1)


def _smoothed_logistic(deltas: list[float], beta: float, eps: float) -> float:
    """-(1 - eps) log sigmoid(beta x) - eps log sigmoid(-beta x), the mean over x (AOT's per-quantile loss)."""
    return sum(-(1 - eps) * logsigmoid(beta * x) - eps * logsigmoid(-beta * x) for x in deltas) / len(deltas)


def _aot(pairs: list[Pair], beta: float, eps: float) -> float:
    policy = sorted(p.chosen - p.rejected for p in pairs)
    reference = sorted(p.ref_chosen - p.ref_rejected for p in pairs)
    return _smoothed_logistic([a - b for a, b in zip(policy, reference)], beta, eps)


def _aot_unpaired(pairs: list[Pair], beta: float, eps: float) -> float:
    chosen, rejected = sorted(p.chosen_ratio for p in pairs), sorted(p.rejected_ratio for p in pairs)
    return _smoothed_logistic([a - b for a, b in zip(chosen, rejected)], beta, eps)


def _chosen_nll(pairs: list[Pair], beta: float, eps: float) -> float:
    return -sum(p.chosen for p in pairs) / max(sum(p.chosen_tokens for p in pairs), 1)


# the loss types defined on the whole batch, not pair by pair: AOT's sorted quantiles (Melnyk et al. 2024: the
# policy's log-ratio margins sorted against the reference's, `aot`; the chosen log-ratios sorted against the
# rejected ones, `aot_unpaired`) and SFT's negative log-likelihood of the chosen completions, the mean over all
# their tokens (RPO's second term)
_BATCH_LOSSES = {"aot": _aot, "aot_unpaired": _aot_unpaired, "sft": _chosen_nll}


def _dpo_batch_loss(loss_type: str, pairs: list[Pair], beta: float, eps: float, tau: float) -> float:
    """A loss type's batch loss: its batch-level definition, or the mean of its pair losses."""
    batch = _BATCH_LOSSES.get(loss_type)
    if batch is not None:
        return batch(pairs, beta, eps)
    return sum(_dpo_pair_loss(loss_type, p, beta, eps, tau) for p in pairs) / len(pairs)


# every loss type of trl 1.16's DPOConfig, defined here from the papers and trl's documentation
DPO_LOSS_TYPES = ("sigmoid", "hinge", "ipo", "exo_pair", "nca_pair", "robust", "bco_pair", "sppo_hard", "aot",
                  "aot_unpaired", "apo_zero", "apo_down", "discopop", "sft", "sigmoid_norm")
DISCOPOP_TAU = 0.05  # trl's default, the DiscoPOP paper's recommendation


def dpo_loss(pairs: list[Pair], beta: float, loss_types: tuple[str, ...] = ("sigmoid",),
             weights: tuple[float, ...] | None = None, label_smoothing: float = 0.0,
             discopop_tau: float = DISCOPOP_TAU) -> float:
    """DPO's batch loss: per loss type its batch loss, summed with the loss weights (1 each by default)."""
    weights = weights or (1.0,) * len(loss_types)
    return sum(w * _dpo_batch_loss(t, pairs, beta, label_smoothing, discopop_tau)
               for t, w in zip(loss_types, weights, strict=True))


def dpo_rewards(pairs: list[Pair], beta: float) -> dict[str, float]:
    """The implicit rewards trl logs: beta x log-ratio, chosen and rejected, and their margin, means over pairs."""
    n = len(pairs)
    chosen = sum(beta * p.chosen_ratio for p in pairs) / n
    rejected = sum(beta * p.rejected_ratio for p in pairs) / n
    return {"rewards/chosen": chosen, "rewards/rejected": rejected, "rewards/margins": chosen - rejected}


# KTO's loss types the suite defines (trl's apo_zero_unpaired, no KL term, is left out: no case uses it)
KTO_LOSS_TYPES = ("kto",)


def kto_kl(policy_kl: list[float], ref_kl: list[float]) -> float:
    """KTO's KL estimate: the mean log-ratio of the mismatched (prompt, other completion) pairs, clamped at 0
    (the paper's z_ref, a batch estimate; it is not back-propagated)."""
    return max(0.0, sum(p - r for p, r in zip(policy_kl, ref_kl, strict=True)) / len(policy_kl))


def kto_loss(ratios: list[float], desirable: list[bool], kl: float, beta: float, w_desirable: float = 1.0,
             w_undesirable: float = 1.0) -> float:
    """KTO's loss: desirable rows w_d (1 - sigmoid(beta (ratio - KL))), undesirable rows w_u (1 - sigmoid(beta
    (KL - ratio))), the mean over the rows."""
    terms = [w_desirable * (1 - sigmoid(beta * (x - kl))) if good else w_undesirable * (1 - sigmoid(beta * (kl - x)))
             for x, good in zip(ratios, desirable, strict=True)]
    return sum(terms) / len(terms)


def reward_loss(chosen: list[float], rejected: list[float], center: float | None = None) -> float:
    """The pairwise loss -log sigmoid(r_chosen - r_rejected), mean over pairs, plus center x mean((r_c + r_r)^2)."""
    n = len(chosen)
    loss = sum(-logsigmoid(c - r) for c, r in zip(chosen, rejected, strict=True)) / n
    if center is not None:
        loss += center * sum((c + r) ** 2 for c, r in zip(chosen, rejected)) / n
    return loss
