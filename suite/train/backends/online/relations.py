"""GRPO's and RLOO's relations by definition (the checks `advantages_by_definition` and `loss_by_definition`): what
the step logged or the recorder kept (lossrecord.py), recomputed by the suite's own functions (definitions.py,
whose FORBIDDEN_ORACLES names the trl functions they must not call), compared with what trl produced. On a
failure the message names the cause: the alternative definition the observed values match (advantages not
scaled by the std, a baseline that includes the completion, a denominator that counts truncated completions,
a ratio left unclipped, old log-probabilities that are not the sampling policy's)."""
from __future__ import annotations

from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Any, Callable

from suite.checkresult import Bounds, CheckResult
from suite.train.backends.base import TrainerCheck
from suite.train.backends.online import definitions as d
from suite.train.backends.online.definitions import FORBIDDEN_ORACLES  # noqa: F401  (the guard test's constant)

if TYPE_CHECKING:
    from suite.matrix.spec import Case
    from suite.train.payload import Payload

# what a definition here does not cover: a run that sets one of these is refused by name, not judged
UNCOVERED = {"delta": None, "top_entropy_quantile": 1.0, "entropy_coef": 0.0, "use_adaptive_entropy": False,
             "off_policy_mask_threshold": None, "use_vllm": False,
             "multi_objective_aggregation": "sum_then_normalize"}


def uncovered(config: dict) -> list[str]:
    return [f"{k}={config[k]!r}" for k, default in UNCOVERED.items() if k in config and config[k] != default]


def _worst(expected: list[float], got: list[float]) -> tuple[float, int]:
    diffs = [abs(a - b) for a, b in zip(expected, got)]
    return (max(diffs), diffs.index(max(diffs))) if diffs else (0.0, 0)


def grpo_candidates(rewards: list[float], group: int, scale: str) -> dict[str, list[float]]:
    """The declared definition first, then the silent changes a release could make, each named as a cause."""
    out = {f"scale_rewards {scale!r}": d.grpo_advantages(rewards, group, scale)}
    for other, why in (("none", "not scaled by the reward std"), ("group", "scaled by the group's reward std"),
                       ("batch", "scaled by the whole batch's reward std")):
        if other != scale:
            out[f"{why} (as scale_rewards {other!r} says), though scale_rewards {scale!r} says otherwise"] = \
                d.grpo_advantages(rewards, group, other)
    return out


def rloo_candidates(rewards: list[float], group: int, config: dict, kl: list[float] | None) -> dict[str, list[float]]:
    clip = tuple(config["reward_clip_range"]) if config.get("reward_clip_range") else None
    kw = dict(kl=kl, beta=float(config.get("beta") or 0.0), clip=clip, normalize=bool(config.get("normalize_advantages")))
    out = {"the leave-one-out definition": d.rloo_advantages(rewards, group, **kw)}
    n = group
    loo = d.rloo_advantages(rewards, group, **{**kw, "normalize": False})
    if not kw["normalize"]:  # a baseline of the whole group's mean, the completion included: (n - 1) / n x LOO
        out["a baseline that includes the completion itself (the group's mean, not its others')"] = \
            [a * (n - 1) / n for a in loo]
    if kw["beta"]:
        out[f"no KL penalty folded into the reward (beta {kw['beta']:g} says it is)"] = \
            d.rloo_advantages(rewards, group, **{**kw, "beta": 0.0})
    if clip:
        out[f"rewards not clipped to reward_clip_range {list(clip)}"] = d.rloo_advantages(rewards, group, **{**kw, "clip": None})
    out[f"normalize_advantages {not kw['normalize']} applied, though the config says {kw['normalize']}"] = \
        d.rloo_advantages(rewards, group, **{**kw, "normalize": not kw["normalize"]})
    return out


@dataclass(frozen=True)
class AdvantagesByDefinition:
    """At every logged step, the advantages trl computed equal the definition's from the logged rewards (GRPO: the
    group's mean and std under scale_rewards; RLOO: the leave-one-out baseline, the KL in the reward, clipping,
    normalisation): the largest difference within atol."""

    atol: float
    group: int
    candidates: Callable[[dict], dict[str, list[float]]]
    name: str = "advantages_by_definition"

    def evaluate(self, case_id: str, curve: list[dict], label: str) -> CheckResult:
        steps = [p for p in curve if "sampled/advantages" in p and "sampled/rewards" in p]
        if not steps:
            return CheckResult(self.name, False, f"{case_id}: no step with its rewards and advantages recorded")
        worst, at, got_at = 0.0, None, None
        for p in steps:
            cands = self.candidates(p)
            expected = next(iter(cands.values()))
            diff, i = _worst(expected, p["sampled/advantages"])
            if diff > worst or at is None:
                worst, at, got_at = diff, (p["step"], i), (p, cands)
        ok = worst <= self.atol
        msg = (f"{case_id}: {label}'s advantages against their definition from the logged rewards "
               f"({next(iter(got_at[1]))}) over {len(steps)} steps: largest difference {worst:.2g} at step {at[0]}, "
               f"completion {at[1]} ({'<=' if ok else '>'} {self.atol:g})")
        if not ok:
            msg += ": " + self._cause(got_at[0], got_at[1], label)
        return CheckResult(self.name, ok, msg, value=worst, bound=self.atol)

    def _cause(self, point: dict, cands: dict[str, list[float]], label: str) -> str:
        for why, values in list(cands.items())[1:]:
            if _worst(values, point["sampled/advantages"])[0] <= self.atol:
                return f"{label}'s advantages are {why}" if not why.startswith(("a ", "no ", "rewards", "normal")) \
                    else f"{label}'s advantages match {why}"
        return f"{label}'s advantages match no known variant of the definition (a changed baseline or scale?)"


def loss_config(config: dict, loss_type: str) -> d.LossConfig:
    eps = float(config.get("epsilon") or 0.2)
    return d.LossConfig(
        loss_type=loss_type, beta=float(config.get("beta") or 0.0), epsilon_low=eps,
        epsilon_high=float(config["epsilon_high"]) if config.get("epsilon_high") is not None else eps,
        grad_accum=int(config.get("gradient_accumulation_steps") or 1),
        steps_per_generation=int(config.get("steps_per_generation") or 1),
        max_completion_length=int(config["max_completion_length"]),
        importance_sampling_level=config.get("importance_sampling_level") or "token",
        sapo_temperature_pos=float(config.get("sapo_temperature_pos", 1.0)),
        sapo_temperature_neg=float(config.get("sapo_temperature_neg", 1.05)),
        vespo=tuple(float(config.get(k, v)) for k, v in (("vespo_k_pos", 2.0), ("vespo_lambda_pos", 3.0),
                                                         ("vespo_k_neg", 3.0), ("vespo_lambda_neg", 2.0))),
        kl_times_ratio=bool(config.get("use_bias_correction_kl", True)))


def micro_batch(record: dict, **swap: Any) -> d.MicroBatch:
    fields = dict(logps=record["logps"], old=record["old"], ref=record["ref"], mask=record["mask"],
                  advantages=record["advantages"], generation_tokens=record["generation_tokens"])
    return d.MicroBatch(**{**fields, **swap})


# a variant names the cause within atol or this share of trl's loss: an unclipped sequence ratio of e^20 (RLOO under
# clip_dropped, measured) carries float32's relative rounding into a loss of 21, far past an absolute 1e-5
CAUSE_RTOL = 1e-3


def _trl_old(record: dict, logps: list[list[float]], mask: list[list[int]]) -> list[list[float]]:
    """The old log-probabilities trl handed its loss, per token: GRPO's as they are; none (trl's ratio 1) the policy's
    own; RLOO's per-sequence sums put on each completion's first counted token (its loss reads only the masked sum)."""
    old = record.get("trl_old")
    if old is None:
        return logps
    if old and isinstance(old[0], list):
        return old
    return [[v if j == row.index(1) else 0.0 for j in range(len(row))] if 1 in row else [0.0] * len(row)
            for v, row in zip(old, mask)]


def loss_causes(record: dict, cfg: d.LossConfig, expect: Callable, atol: float) -> str:
    """Why trl's loss differs from the definition: the first silent change whose loss matches trl's."""
    trl_mask = record.get("trl_mask") or record["mask"]  # recorded only where it differs
    near = atol + CAUSE_RTOL * abs(record["loss"])
    variants = []
    if trl_mask != record["mask"]:
        counted = sum(map(sum, trl_mask)) - sum(map(sum, record["mask"]))
        tokens = record["generation_tokens"] + counted if record.get("trl_items") is None else record["trl_items"]
        now = record.get("trl_logps") or record["logps"]  # the forward under trl's mask (older records lack it)
        variants.append((f"the loss counts {counted:+d} tokens beside the definition's completion mask (truncated "
                         f"completions counted despite mask_truncated_completions?)",
                         micro_batch(record, mask=trl_mask, generation_tokens=int(tokens), logps=now,
                                     old=_trl_old(record, now, trl_mask)), cfg))
    # every other type that gives trl's loss is named (bnpo and dapo coincide where a generation is one micro-batch)
    others = [o for o in d.GRPO_TYPES if o != cfg.loss_type and cfg.loss_type in d.GRPO_TYPES
              and abs(expect(micro_batch(record), replace(cfg, loss_type=o)) - record["loss"]) <= near]
    if others:
        names = " or ".join(f"{o}'s" for o in others)
        variants.append((f"the loss is {names} (its denominator or weighting), not the declared {cfg.loss_type}'s",
                         micro_batch(record),
                         replace(cfg, loss_type=others[0])))
    variants.append(("the importance ratio is not clipped (epsilon low/high ignored)", micro_batch(record),
                     replace(cfg, epsilon_low=float("inf"), epsilon_high=float("inf"))))
    variants.append(("the ratio is 1 throughout: the old log-probabilities are the current policy's, not the "
                     "sampling policy's", micro_batch(record, old=record["logps"]), cfg))
    if cfg.beta:
        variants.append((f"no KL term (beta {cfg.beta:g} says there is one)", micro_batch(record), replace(cfg, beta=0.0)))
    for why, batch, c in variants:
        if abs(expect(batch, c) - record["loss"]) <= near:
            return why
    old = record.get("trl_old")
    if old is not None and isinstance(old[0], list):
        diff = max(abs(a - b) for ra, rb, rm in zip(old, record["old"], record["mask"]) for a, b, m in zip(ra, rb, rm) if m)
        if diff > 1e-3:
            return f"the old log-probabilities trl handed its loss are not the sampling policy's (off by up to {diff:.3g})"
    return "no known variant of the definition gives trl's loss"


@dataclass(frozen=True)
class LossByDefinition:
    """At the recorded micro-batches (first two, a middle one, the last), the loss trl returned equals the loss
    type's definition on the suite's own log-probabilities (now, at sampling, the reference's), the completion mask
    by definition and the advantages trl handed its loss."""

    atol: float
    label: str
    expect: Callable[[d.MicroBatch, d.LossConfig], float] = d.grpo_loss  # RLOO's: d.rloo_loss
    name: str = "loss_by_definition"

    def evaluate(self, case_id: str, records: list[dict], config: dict, loss_type: str) -> CheckResult:
        if not records:
            return CheckResult(self.name, False, f"{case_id}: no micro-batch of the loss recorded")
        refused = uncovered(config) + [r["error"] for r in records if "error" in r]
        if refused:
            return CheckResult(self.name, False, f"{case_id}: the loss's definition is not derived for "
                                                 f"{'; '.join(refused)}")
        cfg = loss_config(config, loss_type)
        expect = self.expect
        rows = [(r, expect(micro_batch(r), cfg)) for r in records]
        worst_r, worst_e = max(rows, key=lambda x: abs(x[0]["loss"] - x[1]))
        diff = abs(worst_r["loss"] - worst_e)
        ok = diff <= self.atol
        msg = (f"{case_id}: {self.label}'s loss ({loss_type}) against its definition at {len(rows)} micro-batches "
               f"(steps {', '.join(str(r['step']) for r, _ in rows)}): largest difference {diff:.2g} at step "
               f"{worst_r['step']} (trl {worst_r['loss']:.6g}, definition {worst_e:.6g}; "
               f"{'<=' if ok else '>'} {self.atol:g})")
        if not ok:
            msg += ": " + loss_causes(worst_r, cfg, expect, self.atol)
        return CheckResult(self.name, ok, msg, value=diff, bound=self.atol)


def _sampling(payload: Payload) -> dict:
    return (payload.resolved or {}).get("sampling") or {}


def advantages_check(label: str, candidates: Callable[[Case, dict], Callable[[dict], dict]]) -> TrainerCheck:
    def check(case: Case, payload: Payload, bounds: Bounds | None, inv: Any) -> CheckResult:
        config = _sampling(payload).get("config") or {}
        group = int(_sampling(payload).get("num_generations") or 0)
        if not config or not group:
            return CheckResult("advantages_by_definition", False, f"{case.id}: the sampling config was not recorded")
        return AdvantagesByDefinition(case.checks.advantages_def_atol, group, candidates(config, group)).evaluate(
            case.id, payload.loss_curve, label)
    return TrainerCheck("advantages_by_definition", check)


def loss_check(label: str, loss_type: str | None = None, expect: Callable = d.grpo_loss) -> TrainerCheck:
    def check(case: Case, payload: Payload, bounds: Bounds | None, inv: Any) -> CheckResult:
        sampling = _sampling(payload)
        config = sampling.get("config") or {}
        return LossByDefinition(case.checks.loss_def_atol, label, expect).evaluate(
            case.id, sampling.get("loss_records") or [], config, loss_type or str(config.get("loss_type")))
    return TrainerCheck("loss_by_definition", check)


GRPO_ADVANTAGES = advantages_check("GRPO", lambda config, group: lambda p: grpo_candidates(
    p["sampled/rewards"], group, str(config.get("scale_rewards") or "group")))
RLOO_ADVANTAGES = advantages_check("RLOO", lambda config, group: lambda p: rloo_candidates(
    p["sampled/rewards"], group, config, p.get("sampled/kl")))
GRPO_LOSS = loss_check("GRPO")
RLOO_LOSS = loss_check("RLOO", "rloo", d.rloo_loss)
