"""The reward trainer's own checks: its pairwise accuracy and margin rise, and the checkpoint holds the
score head."""
from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from suite.checkresult import Bounds, CheckResult, not_judged, windows_rise
from suite.train.backends.base import TrainerCheck

if TYPE_CHECKING:
    from suite.matrix.spec import Case
    from suite.train.payload import Payload


@dataclass(frozen=True)
class PairwiseRise:
    """A reward model's pairwise accuracy (share of pairs whose chosen completion scores higher) and
    mean margin (chosen minus rejected score), as trl's RewardTrainer logs them: the mean of the last k
    logged steps above the first k's."""

    window: int
    name: str = "reward_pairs_rise"

    def evaluate(self, case_id: str, curve: list[dict]) -> CheckResult:
        return windows_rise(self.name, case_id, curve, ("accuracy", "margin"), self.window, "reward model pairwise")


@dataclass(frozen=True)
class ScoreHeadSaved:
    """The checkpoint holds the classifier's score head (for an adapter: peft's modules_to_save copy
    saved with the LoRA tensors), so a reload scores with the trained head, not a fresh random one."""

    name: str = "score_head_saved"

    def evaluate(self, case_id: str, inv: Any, fragment: str = "score") -> CheckResult:
        if inv is None:
            return CheckResult(self.name, False, f"{case_id}: no checkpoint directory was found")
        held = [t.name for t in inv.tensors if fragment in t.name]
        return CheckResult(self.name, bool(held), f"{case_id}: the checkpoint "
                                                  + (f"holds the score head ({', '.join(held)})" if held else
                                                     f"holds no {fragment} tensor: a reload scores with a new "
                                                     f"random head"), value=float(len(held)))


def _pairs_rise(case: Case, payload: Payload, bounds: Bounds | None, inv: Any) -> CheckResult:
    unlogged = (payload.resolved or {}).get("pairs_not_logged")  # the child said its trl logs none in training
    if unlogged:
        return not_judged(PairwiseRise.name, case.id, unlogged)
    return PairwiseRise(case.checks.loss_window).evaluate(case.id, payload.loss_curve)


def _score_head(case: Case, payload: Payload, bounds: Bounds | None, inv: Any) -> CheckResult:
    """On the saved checkpoint's inventory (suite/judge/checkpoint.py's, which the judge read once)."""
    return ScoreHeadSaved().evaluate(case.id, inv)


# the pairwise accuracy and margin trl logs rise; the saved checkpoint holds the score head
CHECKS = (TrainerCheck("reward_pairs_rise", _pairs_rise), TrainerCheck("score_head_saved", _score_head))
