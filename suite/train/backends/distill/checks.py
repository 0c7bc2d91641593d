"""Distillation's own check: the student's divergence from the teacher on held-out prompts falls, measured by the
suite's own forwards of both models before and after training (recorder.py) and its own formula (relations.py),
with the case's beta and temperature. The loss relation (relations.py) runs after it."""
from __future__ import annotations

from typing import TYPE_CHECKING, Any

from suite.checkresult import Bounds, CheckResult
from suite.train.backends.base import TrainerCheck
from suite.train.backends.distill.relations import FORBIDDEN_ORACLES  # noqa: F401 - the guard's list, re-exported
from suite.train.backends.distill.relations import mean_divergence, read

if TYPE_CHECKING:
    from suite.matrix.spec import Case
    from suite.train.payload import Payload

def heldout_divergences(doc: dict) -> tuple[float, float]:
    """The mean per-token divergence on the held-out prompts, before and after training (nats)."""
    s, held = doc["settings"], doc["heldout"]
    beta, temperature = float(s["beta"]), float(s["temperature"])
    return tuple(mean_divergence(held[k]["student"], held[k]["teacher"], beta, temperature)
                 for k in ("before", "after"))


def divergence_falls(case_id: str, doc: dict, min_fall: float) -> CheckResult:
    name = "distill_divergence_falls"
    before, after = heldout_divergences(doc)
    fall = (before - after) / before if before > 0 else float("nan")
    passed = fall >= min_fall  # NaN (nothing held out, or a zero divergence before) fails
    return CheckResult(name, passed, f"{case_id}: held-out divergence from the teacher {before:.5g} -> {after:.5g} "
                                     f"nats a token, a fall of {fall:.1%} ({'>=' if passed else '<'} "
                                     f"{min_fall:.0%})" + ("" if passed else ": the student did not move towards "
                                                                            "the teacher"),
                       value=fall, bound=min_fall)


def _falls(case: Case, payload: Payload, bounds: Bounds | None, inv: Any) -> CheckResult:
    doc = read(payload.resolved)
    if isinstance(doc, str):
        return CheckResult("distill_divergence_falls", False, f"{case.id}: {doc}")
    return divergence_falls(case.id, doc, case.checks.distill_heldout_fall)


CHECKS = (TrainerCheck("distill_divergence_falls", _falls),)
