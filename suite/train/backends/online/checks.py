"""The generating trainers' own checks (GRPO's and RLOO's): the mean reward of the sampled completions rises,
the first loss is the loss type's definition for a policy equal to its old self and its reference, each
prompt group's advantages have mean 0, the KL starts at 0 (with beta above 0), and every step's completions
are the current policy's samples; each an oracle of the suite's own small function on what was recorded."""
from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Callable

from suite.checkresult import Bounds, CheckResult, first_and_last_windows
from suite.train.backends.base import TrainerCheck
from suite.train.backends.online.config import pinned_value

if TYPE_CHECKING:
    from suite.matrix.spec import Case
    from suite.train.payload import Payload


@dataclass(frozen=True)
class OnlineRewardRises:
    """A generating trainer's objective: the mean reward of its sampled completions (trl's `reward`), mean
    of the last k logged steps, above the first k's by at least margin x |first|."""

    window: int
    margin: float
    name: str = "online_reward_rises"

    def evaluate(self, case_id: str, curve: list[dict]) -> CheckResult:
        windows = first_and_last_windows(curve, ("reward",), self.window)
        if isinstance(windows, str):
            return CheckResult(self.name, False, f"{case_id}: {windows}")
        first, last = windows["reward"]
        bound = first + self.margin * abs(first)
        ok = last > bound
        return CheckResult(self.name, ok, f"{case_id}: mean reward of the sampled completions {first:.4g} -> "
                                          f"{last:.4g} (first {self.window} logged steps -> last {self.window}), "
                                          f"{'above' if ok else 'not above'} {bound:.4g} (a rise of "
                                          f"{self.margin:g} x the start)", value=last, bound=bound)


# Per loss type, the first step's loss from the completions' token counts L and advantages A (n completions,
# m the longest completion allowed), trl 1.16's definitions (grpo_trainer.py's _compute_loss; RLOO's own loss)
# with every ratio 1 and no KL: each completion contributes -A_i per token. "dapo" and "bnpo": the batch's
# token-level sum over its completion tokens; "grpo": each completion's token mean, then the mean over
# completions; "dr_grpo": the sum over n x m; "luspo": each completion's token sum, then the mean; "rloo"
# (RLOOTrainer's loss, not a GRPO type): sequence-level, the mean of -A_i.
LOSS_AT_RATIO_ONE: dict[str, Callable[[list[int], list[float], int], float]] = {
    "dapo": lambda L, A, m: sum(-a * n for a, n in zip(A, L)) / max(sum(L), 1),
    "bnpo": lambda L, A, m: sum(-a * n for a, n in zip(A, L)) / max(sum(L), 1),
    "grpo": lambda L, A, m: sum(-a if n else 0.0 for a, n in zip(A, L)) / len(L),
    "dr_grpo": lambda L, A, m: sum(-a * n for a, n in zip(A, L)) / (len(L) * m),
    "luspo": lambda L, A, m: sum(-a * n for a, n in zip(A, L)) / len(L),
    "rloo": lambda L, A, m: sum(-a for a in A) / len(L),
}


def first_loss_by_definition(loss_type: str, lengths: list[int], advantages: list[float],
                             max_completion_length: int) -> float | None:
    """The loss of a policy equal to its old self over one generation batch in one micro-batch (LOSS_AT_RATIO_ONE);
    None for a loss type whose value also needs the log-probabilities (cispo, vespo) or a temperature (sapo)."""
    definition = LOSS_AT_RATIO_ONE.get(loss_type)
    return definition(lengths, advantages, max_completion_length) if definition else None


@dataclass(frozen=True)
class FirstLossByDefinition:
    """The first logged loss is what the loss type's definition gives for the first step's sampled
    completions (their token counts and advantages, as the recorder saw them): the policy is its old self
    (ratio 1) and its own reference (no KL). trl's default GRPO loss (dapo) is not 0: longer completions
    weigh more."""

    atol: float
    loss_type: str
    max_completion_length: int
    name: str = "first_loss_by_definition"

    def evaluate(self, case_id: str, curve: list[dict], grad_accum: int | None) -> CheckResult:
        if not curve or "sampled/advantages" not in curve[0]:
            return CheckResult(self.name, False, f"{case_id}: no first step with its sampled completions recorded")
        if grad_accum != 1:
            return CheckResult(self.name, False, f"{case_id}: the definition is derived for one micro-batch per "
                                                 f"generation batch; the trainer accumulated {grad_accum}")
        first = curve[0]
        expected = first_loss_by_definition(self.loss_type, first["sampled/lengths"], first["sampled/advantages"],
                                            self.max_completion_length)
        if expected is None:
            return CheckResult(self.name, False, f"{case_id}: no derivation for loss type {self.loss_type!r}")
        diff = abs(first["loss"] - expected)
        ok = diff <= self.atol
        why = "" if ok else ": the policy was not its old self, or the loss is not the declared type's"
        return CheckResult(self.name, ok, f"{case_id}: first loss {first['loss']:.6g}, {self.loss_type}'s definition "
                                          f"on the step's {len(first['sampled/lengths'])} completions "
                                          f"({sum(first['sampled/lengths'])} tokens) gives {expected:.6g}: "
                                          f"difference {diff:.2g} ({'<=' if ok else '>'} {self.atol:g}){why}",
                           value=diff, bound=self.atol)


@dataclass(frozen=True)
class AdvantagesZeroMean:
    """Each prompt's group of sampled completions has advantages of mean 0 (GRPO: reward less the group's
    mean, over its spread; RLOO: reward less the mean of the group's others), at every logged step: the
    largest |group mean| within atol."""

    atol: float
    group: int
    name: str = "advantages_zero_mean"

    def evaluate(self, case_id: str, curve: list[dict]) -> CheckResult:
        worst, where = 0.0, None
        steps = [p for p in curve if "sampled/advantages" in p]
        if not steps:
            return CheckResult(self.name, False, f"{case_id}: no step with its advantages recorded")
        for p in steps:
            adv = p["sampled/advantages"]
            for g in range(0, len(adv), self.group):
                mean = abs(sum(adv[g:g + self.group]) / self.group)
                if mean > worst:
                    worst, where = mean, (p["step"], g // self.group)
        ok = worst <= self.atol
        at = f" (step {where[0]}, group {where[1]})" if where else ""
        return CheckResult(self.name, ok, f"{case_id}: largest |mean advantage| of a group of {self.group} "
                                          f"completions over {len(steps)} steps: {worst:.2g}{at} "
                                          f"({'<=' if ok else '>'} {self.atol:g})", value=worst, bound=self.atol)


@dataclass(frozen=True)
class KLStartsAtZero:
    """With a KL coefficient above 0, trl's first logged KL (policy vs reference on the first sampled
    completions) is 0: the policy is its reference before the first update."""

    atol: float
    name: str = "kl_starts_at_zero"

    def evaluate(self, case_id: str, curve: list[dict]) -> CheckResult:
        if not curve or "kl" not in curve[0]:
            return CheckResult(self.name, False, f"{case_id}: no first step with trl's KL (kl) logged")
        kl = curve[0]["kl"]
        ok = abs(kl) <= self.atol
        why = "" if ok else ": the policy was not its reference at the start"
        return CheckResult(self.name, ok, f"{case_id}: first KL {kl:.3g} ({'<=' if ok else '>'} {self.atol:g}){why}",
                           value=abs(kl), bound=self.atol)


@dataclass(frozen=True)
class CompletionsOnPolicy:
    """Every step's completions are the current policy's samples: replayed by the policy of that step from
    the same random state, every one of them comes out token for token (sampled/on_policy 1)."""

    name: str = "completions_on_policy"

    def evaluate(self, case_id: str, curve: list[dict]) -> CheckResult:
        shares = [(p["step"], p["sampled/on_policy"]) for p in curve if "sampled/on_policy" in p]
        if not shares:
            return CheckResult(self.name, False, f"{case_id}: no step with its sampling replayed")
        off = [(step, share) for step, share in shares if share < 1.0]
        lowest = min(share for _, share in shares)
        msg = (f"{case_id}: replayed by the policy of its step from the same random state, every completion of "
               f"all {len(shares)} steps came out again token for token")
        if off:
            msg = (f"{case_id}: replayed by the policy of its step, {len(off)} of {len(shares)} steps' completions "
                   f"did not all come out again (first step {off[0][0]}: {off[0][1]:.0%}; lowest {lowest:.0%}): "
                   f"not sampled by the current policy (a stale or frozen generator?)")
        return CheckResult(self.name, not off, msg, value=lowest, bound=1.0)


def first_loss(name: str, loss_type: str | None = None, defaults: dict | None = None) -> TrainerCheck:
    """The first-loss check under `name`, for `loss_type` (None: the loss type the case declares, else the
    trainer's `defaults`)."""
    def check(case: Case, payload: Payload, bounds: Bounds | None, inv: Any) -> CheckResult:
        kind = loss_type or pinned_value(case, "loss_type", defaults or {})
        args = (payload.resolved or {}).get("args", {})
        return FirstLossByDefinition(case.checks.first_loss_atol, kind,
                                     pinned_value(case, "max_completion_length", defaults or {})).evaluate(
            case.id, payload.loss_curve, args.get("gradient_accumulation_steps"))
    return TrainerCheck(name, check)


def _reward_rises(case: Case, payload: Payload, bounds: Bounds | None, inv: Any) -> CheckResult:
    return OnlineRewardRises(case.checks.loss_window, case.checks.loss_margin).evaluate(case.id, payload.loss_curve)


def _advantages(case: Case, payload: Payload, bounds: Bounds | None, inv: Any) -> CheckResult:
    return AdvantagesZeroMean(case.checks.advantages_atol, pinned_value(case, "num_generations", {})).evaluate(
        case.id, payload.loss_curve)


def _kl_starts(case: Case, payload: Payload, bounds: Bounds | None, inv: Any) -> CheckResult:
    return KLStartsAtZero(case.checks.kl_start_atol).evaluate(case.id, payload.loss_curve)


def _on_policy(case: Case, payload: Payload, bounds: Bounds | None, inv: Any) -> CheckResult:
    return CompletionsOnPolicy().evaluate(case.id, payload.loss_curve)


# "policy equals its old self and its reference at step 1" (first_loss_atol, kl_start_atol) and the group
# means of the advantages (advantages_atol); grpo/ and rloo/ name their first-loss check with first_loss()
REWARD_RISES = TrainerCheck("online_reward_rises", _reward_rises)
ADVANTAGES_ZERO_MEAN = TrainerCheck("advantages_zero_mean", _advantages)
KL_STARTS_AT_ZERO = TrainerCheck("kl_starts_at_zero", _kl_starts)
COMPLETIONS_ON_POLICY = TrainerCheck("completions_on_policy", _on_policy)
