"""The preference trainers' shared check: the reference they compared against is still the base."""
from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from suite.checkresult import Bounds, CheckResult
from suite.train.backends.base import TrainerCheck

if TYPE_CHECKING:
    from suite.matrix.spec import Case
    from suite.train.payload import Payload


@dataclass(frozen=True)
class ReferenceUntouched:
    """The reference DPO compared against is still the base: its logits on the probe input after
    training against the same model object's before training, on the same kernels (bitwise)."""

    atol: float
    name: str = "reference_untouched"
    source: str = "bitwise: the same kernels before and after"

    def evaluate(self, case_id: str, kind: str, diff: float) -> CheckResult:
        passed = diff <= self.atol
        verdict = "is the base, untouched" if passed else "moved during training"
        return CheckResult(self.name, passed, f"{case_id}: the reference ({kind}) {verdict}: max |logit "
                                              f"difference| after training vs before {diff:.3g} "
                                              f"({'<=' if passed else '>'} {self.atol:g}: {self.source})", value=diff,
                           bound=self.atol)


def reference_check(case: Case, payload: Payload, bounds: Bounds | None, inv: Any = None) -> CheckResult:
    """Bitwise where the reference ran the same kernels before and after training; where bitsandbytes
    repacked the 4-bit base for its bf16 inference GEMM in between (an eval-mode forward during
    training, on an AVX512-BF16 CPU), within the class's measured bound, and the message says so."""
    ref = payload.reference
    if ref is None:
        return CheckResult("reference_untouched", False, f"{case.id}: the child measured no reference model")
    if not ref.repacked:
        return ReferenceUntouched(case.checks.reference_atol).evaluate(case.id, ref.kind, ref.max_abs_logit_diff)
    why = ("bitsandbytes repacked the 4-bit base for its bf16 inference GEMM during training (an eval-mode "
           "forward), so before and after ran different kernels")
    measured = bounds.bound("reference_untouched", case.method) if bounds else None
    if measured is None:
        return CheckResult("reference_untouched", False, f"{case.id}: {why}, and kernel class "
                                                         f"{bounds.name if bounds else '?'} has no measured bound for "
                                                         f"{case.method} (docs/kernel-classes.md)",
                           value=ref.max_abs_logit_diff)
    return ReferenceUntouched(measured[0], source=f"{why}; {measured[1]}").evaluate(case.id, ref.kind,
                                                                                    ref.max_abs_logit_diff)


REFERENCE_UNTOUCHED = TrainerCheck("reference_untouched", reference_check)
