"""DPO's own checks: policy equals reference before the first update (the first loss is ln 2, or the loss
type's value at a zero log-ratio), and the
implicit rewards separate; the reference's own check is preference/checks.py's."""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from suite.checkresult import Bounds, CheckResult, windows_rise
from suite.train.backends.base import TrainerCheck
from suite.train.backends.dpo.relations import pairs_of
from suite.train.backends.preference import definitions as d
from suite.train.backends.preference.relations import NoRecord, read_recorded, router_term
from suite.train.backends.preference.checks import REFERENCE_UNTOUCHED

if TYPE_CHECKING:
    from suite.matrix.spec import Case
    from suite.train.payload import Payload


@dataclass(frozen=True)
class StartsAtLn2:
    """DPO's first logged loss is ln 2: policy and reference are the same model before the first
    update (a fresh adapter is zero; a full fine-tune's reference is a copy), so every pair's margin is 0."""

    atol: float
    name: str = "dpo_starts_at_ln2"
    expected: float = math.log(2)  # the loss type's value at a zero log-ratio (sigmoid's: ln 2)
    label: str = "ln 2"

    def evaluate(self, case_id: str, losses: list[float]) -> CheckResult:
        if not losses:
            return CheckResult(self.name, False, f"{case_id}: no logged loss to compare with {self.label}")
        first, diff = losses[0], abs(losses[0] - self.expected)
        passed = diff <= self.atol
        why = "" if passed else ": the policy was not its reference at the start (a trained or shared reference?)"
        return CheckResult(self.name, passed, f"{case_id}: first DPO loss {first:.6g} is {diff:.2g} from {self.label} "
                                              f"({'<=' if passed else '>'} {self.atol:g}){why}",
                           value=diff, bound=self.atol)


@dataclass(frozen=True)
class RewardsRise:
    """DPO's reward margins and accuracies, mean of the last k logged steps above the first k."""

    window: int
    name: str = "dpo_rewards_rise"

    def evaluate(self, case_id: str, curve: list[dict]) -> CheckResult:
        return windows_rise(self.name, case_id, curve, ("rewards/margins", "rewards/accuracies"), self.window,
                            "DPO rewards", label=lambda key: key.split("/")[1])


def _starts_at_ln2(case: Case, payload: Payload, bounds: Bounds | None, inv: Any) -> CheckResult:
    """ln 2 for the sigmoid loss; for another loss type its own value with the policy equal to its reference (hinge
    1, IPO (1 / 2 beta)^2; SFT's term is the chosen completions' negative log-likelihood, which needs the first
    step's recorded log-probabilities), from the settings the child recorded (definitions.py's formula, not trl's)."""
    rec = read_recorded(payload.resolved)
    types = tuple(rec.settings.get("loss_type") or ("sigmoid",)) if not isinstance(rec, NoRecord) else ("sigmoid",)
    router, unknown = router_term(rec.settings, payload.loss_curve, 1) if not isinstance(rec, NoRecord) else (0.0, None)
    if unknown:
        return CheckResult(StartsAtLn2.name, False, f"{case.id}: {unknown}")
    plus = f" + the router's loss {router:.6g}" if router else ""  # a mixture of experts: trl adds it to DPO's loss
    if types == ("sigmoid",) or any(t not in d.DPO_LOSS_TYPES for t in types):
        return StartsAtLn2(case.checks.dpo_ln2_atol, expected=math.log(2) + router,
                           label=f"ln 2{plus}").evaluate(case.id, payload.losses)
    s = rec.settings
    batches = _at_reference(rec)
    start = sum(d.dpo_loss(pairs, s["beta"], types, tuple(s.get("loss_weights") or ()) or None,
                           s.get("label_smoothing", 0.0), s.get("discopop_tau") or d.DISCOPOP_TAU)
                for pairs in batches) / len(batches)
    label = f"{'+'.join(types)}'s value with the policy at its reference, {start:.6g}{plus}"
    return StartsAtLn2(case.checks.dpo_ln2_atol, expected=start + router, label=label).evaluate(case.id,
                                                                                               payload.losses)


def _at_reference(rec: Any) -> list[list[d.Pair]]:
    """The first step's pairs with each reference set to the policy (log-ratios 0), per micro-batch; one zero pair
    where the first step was not recorded (every loss type but SFT's depends on the log-ratios alone)."""
    batches = [pairs_of(b) for b in rec.steps().get(1, [])]
    pairs = [[d.Pair(p.chosen, p.rejected, p.chosen, p.rejected, p.chosen_tokens, p.rejected_tokens) for p in b]
             for b in batches if not isinstance(b, str)]
    return pairs or [[d.Pair(0.0, 0.0, 0.0, 0.0)]]


def _rewards_rise(case: Case, payload: Payload, bounds: Bounds | None, inv: Any) -> CheckResult:
    return RewardsRise(case.checks.loss_window).evaluate(case.id, payload.loss_curve)


# policy equals reference before the first update (ln 2), the implicit rewards separate, and the reference
# is the base, untouched; the names are what a record lists a check under when it raises
REWARDS_RISE = TrainerCheck("rewards_rise", _rewards_rise)  # planned unless the case's checks turn it off
CHECKS = (TrainerCheck("starts_at_ln2", _starts_at_ln2), REWARDS_RISE, REFERENCE_UNTOUCHED)
