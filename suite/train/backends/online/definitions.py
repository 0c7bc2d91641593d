"""GRPO's and RLOO's behaviour by definition: the suite's own small functions, on plain Python lists, written from
the papers and trl 1.16's documented formulas (GRPOConfig's and RLOOConfig's docs, the loss types' papers), never
by calling trl's implementation of what they check (FORBIDDEN_ORACLES names what they must not call; a guard test
scans for it). The child's recorder (lossrecord.py) and the judge's checks (relations.py) both use them: the
recorder for its own mask and per-sequence KL, the checks for the advantages and the loss they expect.

- GRPO's advantages: each reward less its prompt group's mean, divided (scale_rewards "group") by the group's
  standard deviation or ("batch") the generation batch's, the unbiased (Bessel) estimate, plus 1e-4; "none": not
  divided.
- RLOO's advantages: the reward clipped to reward_clip_range, less beta x the sequence's KL (the sum over its
  completion tokens of log pi - log pi_ref: the first-order estimate the RLOO paper folds into the reward), less
  the mean of the group's *other* completions' rewards; normalize_advantages: less the batch mean, over its
  unbiased std + 1e-4.
- The loss of one micro-batch, per loss type, from the policy's per-token log-probabilities, the sampling
  policy's (old), the reference's, the completion mask and the advantages: the importance ratio, its clipping
  (epsilon low/high), the KL term (beta x the k3 estimate exp(ref - lp) - (ref - lp) - 1), and the denominator
  each type documents (ALL_TYPES' comments)."""
from __future__ import annotations

import math
from dataclasses import dataclass

# relation -> the library functions it must not call to compute what it expects (the lead's guard test reads this)
FORBIDDEN_ORACLES: dict[str, tuple[str, ...]] = {
    "advantages_by_definition": (
        "trl.trainer.grpo_trainer.GRPOTrainer._generate_and_score_completions",
        "trl.trainer.rloo_trainer.RLOOTrainer._generate_and_score_completions",
        "trl.trainer.utils.nanstd", "torch.std", "torch.nanmean"),
    "loss_by_definition": (
        "trl.trainer.grpo_trainer.GRPOTrainer._compute_loss", "trl.trainer.grpo_trainer.GRPOTrainer.compute_loss",
        "trl.trainer.grpo_trainer.GRPOTrainer.get_gamma_weights",
        "trl.trainer.grpo_trainer.GRPOTrainer._get_per_token_logps_and_entropies",
        "trl.trainer.rloo_trainer.RLOOTrainer._compute_loss",
        "trl.trainer.rloo_trainer.RLOOTrainer._get_per_token_logps_and_entropies",
        "trl.trainer.utils.selective_log_softmax", "trl.trainer.utils.add_fused_lm_head",
        "trl.trainer.utils.entropy_from_logits"),
}

EPS = 1e-4  # trl's documented epsilon under the std (GRPOConfig.scale_rewards, RLOOConfig.normalize_advantages)
GRPO_TYPES = ("grpo", "bnpo", "dr_grpo", "dapo", "luspo", "cispo", "sapo", "vespo")
# the denominators: each completion's token mean, then the mean; the micro-batch's tokens; completions x
# max_completion_length; each completion's token sum, then the mean; the generation batch's tokens
PER_SEQUENCE_MEAN, PER_BATCH_TOKENS, CONSTANT, PER_SEQUENCE_SUM, GENERATION_TOKENS = (
    ("grpo", "sapo"), ("bnpo",), ("dr_grpo",), ("luspo",), ("dapo", "cispo", "vespo"))


def mean(xs: list[float]) -> float:
    return sum(xs) / len(xs)


def unbiased_std(xs: list[float]) -> float:
    """The sample standard deviation (Bessel's n - 1), the estimate trl documents; nan for one value."""
    if len(xs) < 2:
        return math.nan
    m = mean(xs)
    return math.sqrt(sum((x - m) ** 2 for x in xs) / (len(xs) - 1))


def grpo_advantages(rewards: list[float], group: int, scale: str) -> list[float]:
    """GRPO's advantages under scale_rewards ("group", "batch", "none")."""
    out = []
    batch_std = unbiased_std(rewards)
    for g in range(0, len(rewards), group):
        rs = rewards[g:g + group]
        m, std = mean(rs), (unbiased_std(rs) if scale == "group" else batch_std)
        out += [(r - m) / (std + EPS) if scale != "none" else r - m for r in rs]
    return out


def rloo_advantages(rewards: list[float], group: int, *, kl: list[float] | None = None, beta: float = 0.0,
                    clip: tuple[float, float] | None = None, normalize: bool = False) -> list[float]:
    """RLOO's advantages: clipped rewards less beta x KL, less the leave-one-out baseline; normalized if asked."""
    shaped = [min(max(r, clip[0]), clip[1]) if clip else r for r in rewards]
    if beta:
        shaped = [r - beta * k for r, k in zip(shaped, kl or [])]
    out = []
    for g in range(0, len(shaped), group):
        rs = shaped[g:g + group]
        out += [r - (sum(rs) - r) / (len(rs) - 1) for r in rs]
    if normalize:
        m, std = mean(out), unbiased_std(out)
        out = [(a - m) / (std + EPS) for a in out]
    return out


def completion_mask(ids: list[int], eos: list[int], pad: int | None, mask_truncated: bool) -> list[int]:
    """Which of a completion's tokens the loss counts: those up to its first end-of-sequence token, included; with
    mask_truncated_completions none of a completion that does not end (its last kept token is no EOS or pad)."""
    end = next((i for i, t in enumerate(ids) if t in eos), None)
    kept = len(ids) if end is None else end + 1
    if mask_truncated and ids[kept - 1] not in (*eos, pad):
        kept = 0
    return [1] * kept + [0] * (len(ids) - kept)


def sequence_kl(logps: list[float], ref: list[float], mask: list[int]) -> float:
    """RLOO's per-sequence KL: the sum over the completion's tokens of log pi - log pi_ref."""
    return sum((a - b) * m for a, b, m in zip(logps, ref, mask))


@dataclass(frozen=True)
class LossConfig:
    """What a loss type's definition reads of the trainer's config (trl's GRPOConfig / RLOOConfig fields)."""

    loss_type: str
    beta: float = 0.0
    epsilon_low: float = 0.2
    epsilon_high: float = 0.2
    grad_accum: int = 1
    steps_per_generation: int = 1
    max_completion_length: int = 8
    importance_sampling_level: str = "token"
    sapo_temperature_pos: float = 1.0
    sapo_temperature_neg: float = 1.05
    vespo: tuple[float, float, float, float] = (2.0, 3.0, 3.0, 2.0)  # k_pos, lambda_pos, k_neg, lambda_neg
    kl_times_ratio: bool = True  # use_bias_correction_kl (trl 1.16's default): the KL term weighed by the ratio


@dataclass(frozen=True)
class MicroBatch:
    """One micro-batch as the loss saw it, rows x completion tokens: the policy's log-probabilities now, the
    sampling policy's (old), the reference's (None without a KL term), the mask, the advantages, and the count
    of loss tokens in the whole generation batch it came from (dapo, cispo, vespo divide by it)."""

    logps: list[list[float]]
    old: list[list[float]]
    ref: list[list[float]] | None
    mask: list[list[int]]
    advantages: list[float]
    generation_tokens: int


def _ratios(lp: list[float], old: list[float], mask: list[int], level: str) -> list[float]:
    logr = [a - b for a, b in zip(lp, old)]
    if level == "sequence":
        seq = sum(x * m for x, m in zip(logr, mask)) / max(sum(mask), 1)
        return [math.exp(seq)] * len(lp)
    return [math.exp(x) for x in logr]


def _vespo_weight(lp: list[float], old: list[float], mask: list[int], adv: float, cfg: LossConfig) -> float:
    """VESPO's gamma weight phi(w) = exp(lambda + k log w - lambda w), w the sequence's ratio (its summed log-ratio,
    clamped to [log 1e-8, 20]); k, lambda by the advantage's sign."""
    logw = sum(max(min(a - b, 20.0), -20.0) * m for a, b, m in zip(lp, old, mask))
    logw = max(min(logw, 20.0), math.log(1e-8))
    k, lam = (cfg.vespo[0], cfg.vespo[1]) if adv >= 0 else (cfg.vespo[2], cfg.vespo[3])
    phi = math.exp(lam + k * logw - lam * math.exp(logw))
    return phi if math.isfinite(phi) else 0.0


def token_losses(row: int, batch: MicroBatch, cfg: LossConfig) -> list[float]:
    """One completion's per-token loss under the loss type (before masking and the denominator)."""
    lp, old, mask, adv = batch.logps[row], batch.old[row], batch.mask[row], batch.advantages[row]
    ratio = _ratios(lp, old, mask, cfg.importance_sampling_level)
    kind = cfg.loss_type
    if kind == "cispo":  # the clipped ratio, held constant, weighs the log-probability (ScaleRL's epsilon max)
        out = [-min(r, cfg.epsilon_high) * adv * x for r, x in zip(ratio, lp)]
    elif kind == "sapo":  # a soft gate 4 sigma(tau (r - 1)) / tau in place of the clip, tau by the advantage's sign
        tau = cfg.sapo_temperature_pos if adv > 0 else cfg.sapo_temperature_neg
        out = [-(4.0 / (1.0 + math.exp(-tau * (r - 1.0))) / tau) * adv for r in ratio]
    elif kind == "vespo":
        phi = _vespo_weight(lp, old, mask, adv, cfg)
        out = [-phi * adv * x for x in lp]
    else:  # PPO's clipped surrogate: -min(r A, clip(r, 1 - eps_low, 1 + eps_high) A)
        out = [-min(r * adv, min(max(r, 1 - cfg.epsilon_low), 1 + cfg.epsilon_high) * adv) for r in ratio]
    if cfg.beta and batch.ref is not None:
        weight = ratio if cfg.kl_times_ratio else [1.0] * len(ratio)
        out = [x + cfg.beta * w * (math.exp(f - a) - (f - a) - 1.0)
               for x, a, f, w in zip(out, lp, batch.ref[row], weight)]
    return out


def grpo_loss(batch: MicroBatch, cfg: LossConfig) -> float:
    """The loss GRPO's trainer returns for one micro-batch (already divided for gradient accumulation)."""
    rows = range(len(batch.mask))
    sums = [sum(x * m for x, m in zip(token_losses(i, batch, cfg), batch.mask[i])) for i in rows]
    counts = [sum(batch.mask[i]) for i in rows]
    kind, ga = cfg.loss_type, cfg.grad_accum
    if kind in PER_SEQUENCE_MEAN:
        return mean([s / max(n, 1) for s, n in zip(sums, counts)]) / ga
    if kind in PER_BATCH_TOKENS:
        return sum(sums) / max(sum(counts), 1) / ga
    if kind in CONSTANT:
        return sum(sums) / (len(sums) * cfg.max_completion_length) / ga
    if kind in PER_SEQUENCE_SUM:
        return mean(sums) / ga
    if kind in GENERATION_TOKENS:  # per accumulation window
        return sum(sums) / (max(batch.generation_tokens, 1) * ga / cfg.steps_per_generation)
    raise ValueError(f"no definition of GRPO's loss type {kind!r}; known: {', '.join(GRPO_TYPES)}")


def rloo_loss(batch: MicroBatch, cfg: LossConfig) -> float:
    """RLOO's loss: per sequence the clipped surrogate on the sequence ratio (summed log-probabilities), the mean."""
    out = []
    for lp, old, mask, adv in zip(batch.logps, batch.old, batch.mask, batch.advantages):
        r = math.exp(sum((a - b) * m for a, b, m in zip(lp, old, mask)))
        out.append(-min(r * adv, min(max(r, 1 - cfg.epsilon_low), 1 + cfg.epsilon_high) * adv))
    return mean(out)
