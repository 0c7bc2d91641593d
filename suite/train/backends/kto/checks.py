"""KTO's own checks: its first step is the reference's (KL estimate 0, every implicit reward 0), and
desirable rewards rise above undesirable ones; the reference's own check is preference/checks.py's."""
from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from suite.checkresult import Bounds, CheckResult
from suite.train.backends.base import TrainerCheck
from suite.train.backends.preference.checks import REFERENCE_UNTOUCHED

if TYPE_CHECKING:
    from suite.matrix.spec import Case
    from suite.train.payload import Payload


@dataclass(frozen=True)
class KTOStartsAtReference:
    """KTO's first step: policy and reference are the same model (a fresh adapter is zero; a full
    fine-tune's reference is a copy), so trl's KL estimate is 0 and every row's implicit reward (beta x
    log-ratio) is 0: the first logged kl, rewards/chosen and rewards/rejected are 0. (The first loss, 0.5 x the
    rows' mean weight, is kto_loss_by_definition's: read from the rewards, this check holds whatever the weights.)"""

    atol: float
    name: str = "kto_starts_at_reference"

    def evaluate(self, case_id: str, curve: list[dict]) -> CheckResult:
        if not curve or "kl" not in curve[0]:
            return CheckResult(self.name, False, f"{case_id}: no first step with trl's KL estimate (kl) logged")
        keys = [k for k in ("kl", "rewards/chosen", "rewards/rejected") if k in curve[0]]
        diff = max(abs(curve[0][k]) for k in keys)
        passed = diff <= self.atol
        why = "" if passed else ": the policy was not its reference at the start (a trained or shared reference?)"
        shown = ", ".join(f"{k} {curve[0][k]:.3g}" for k in keys)
        return CheckResult(self.name, passed, f"{case_id}: first KTO step: {shown} (0 expected), largest "
                                              f"{diff:.2g} ({'<=' if passed else '>'} {self.atol:g}){why}",
                           value=diff, bound=self.atol)


@dataclass(frozen=True)
class KTORewardsSeparate:
    """KTO's implicit rewards as trl's docs describe training: the desirable completions' reward
    (rewards/chosen) ends above the undesirable ones' (rewards/rejected), and their margin, mean of the
    last k logged steps, is above the first k's."""

    window: int
    name: str = "kto_rewards_separate"

    def evaluate(self, case_id: str, curve: list[dict]) -> CheckResult:
        k, series = self.window, {}
        for key in ("rewards/chosen", "rewards/rejected", "rewards/margins"):
            series[key] = [p[key] for p in curve if key in p]
            if len(series[key]) < 2 * k:
                return CheckResult(self.name, False, f"{case_id}: {key} logged {len(series[key])} times, the check "
                                                     f"needs {2 * k}")
        last = {key: sum(v[-k:]) / k for key, v in series.items()}
        first_margin = sum(series["rewards/margins"][:k]) / k
        above, rose = last["rewards/chosen"] > last["rewards/rejected"], last["rewards/margins"] > first_margin
        ok = above and rose
        return CheckResult(self.name, ok, f"{case_id}: KTO rewards {'separate' if ok else 'do not separate'}: "
                                          f"desirable {last['rewards/chosen']:.4g} "
                                          f"{'>' if above else '<='} undesirable {last['rewards/rejected']:.4g} "
                                          f"(mean of the last {k} logged steps); margin {first_margin:.4g} -> "
                                          f"{last['rewards/margins']:.4g} ({'rose' if rose else 'did not rise'})",
                           value=last["rewards/margins"], bound=first_margin)


def _starts_at_reference(case: Case, payload: Payload, bounds: Bounds | None, inv: Any) -> CheckResult:
    return KTOStartsAtReference(case.checks.kto_start_atol).evaluate(case.id, payload.loss_curve)


def _rewards_separate(case: Case, payload: Payload, bounds: Bounds | None, inv: Any) -> CheckResult:
    return KTORewardsSeparate(case.checks.loss_window).evaluate(case.id, payload.loss_curve)


# policy equals reference before the first update (KL estimate 0, every loss term 1 - sigmoid(0)),
# desirable rewards rise above undesirable ones, the reference is the base, untouched
CHECKS = (TrainerCheck("kto_starts_at_reference", _starts_at_reference),
          TrainerCheck("kto_rewards_separate", _rewards_separate), REFERENCE_UNTOUCHED)
