"""KTO by definition, from the log-probabilities trl's loss used (recorded at the first, a middle and the last
step): the logged KL estimate is the clamped mean log-ratio of the mismatched (prompt, other row's completion)
pairs, and the logged loss is KTO's from the rows' log-ratios, the logged estimate and the desirable /
undesirable weights. trl runs, per micro-batch, the policy's KL forward, its own (with gradients), then the reference's
KL forward and its own (recorder.py keeps them in that order)."""
from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from suite.checkresult import Bounds, CheckResult
from suite.train.backends.base import TrainerCheck
from suite.train.backends.preference import definitions as d
from suite.train.backends.preference.definitions import FORBIDDEN_ORACLES  # noqa: F401 - the guard's list, re-exported
from suite.train.backends.preference.relations import (MicroBatch, NoRecord, Recorded, bound_for, logged_at,
                                                        missing_result, read_recorded, worst)

if TYPE_CHECKING:
    from suite.matrix.spec import Case
    from suite.train.payload import Payload


@dataclass(frozen=True)
class KTOBatch:
    ratios: list[float]  # each row's policy - reference log-probability
    desirable: list[bool]
    policy_kl: list[float]
    ref_kl: list[float]
    kl_rows_matched: int  # KL rows that are the row's own (prompt, completion): all of them is no mismatch


def kto_batch(b: MicroBatch) -> KTOBatch | str:
    calls = b.calls
    if len(calls) != 4 or [c.grad for c in calls] != [False, True, False, False] or b.label is None:
        return (f"step {b.step}: forwards recorded {[('policy' if c.grad else 'no-grad') for c in calls]}, trl's "
                f"order (policy KL, policy, reference KL, reference) and the labels expected")
    n = len(b.label)
    policy, ref = calls[1].logps[:n], calls[3].logps[:n]
    return KTOBatch([p - r for p, r in zip(policy, ref)], b.label, calls[0].logps, calls[2].logps,
                    calls[0].rows_of_batch)


def _steps(rec: Recorded) -> tuple[dict[int, list[KTOBatch]], str | None]:
    out: dict[int, list[KTOBatch]] = {}
    for step, batches in sorted(rec.steps().items()):
        for b in batches:
            kb = kto_batch(b)
            if isinstance(kb, str):
                return {}, kb
            out.setdefault(step, []).append(kb)
    return out, None


def kl_relation(case_id: str, rec: Recorded, curve: list[dict], atol: float) -> CheckResult:
    name, what = "kto_kl_by_definition", "KTO's logged KL estimate vs max(0, mean log-ratio of the mismatched pairs)"
    steps, missing = _steps(rec)
    matched = [(s, b.kl_rows_matched, len(b.policy_kl)) for s, bs in steps.items() for b in bs
               if b.kl_rows_matched >= len(b.policy_kl)]
    if matched:
        s, m, n = matched[0]
        return CheckResult(name, False, f"{case_id}: {what}: at step {s} all {n} KL rows are the batch's own "
                                        f"(prompt, completion) pairs: the KL estimate is taken from the matched "
                                        f"pairs, not from mismatched ones", value=float(m), bound=float(n - 1))
    diffs = []
    for step, batches in steps.items():
        logged = logged_at(curve, step, "kl")
        if logged is None:
            return worst(name, case_id, [], atol, what, "", f"step {step} logged no kl")
        defined = sum(d.kto_kl(b.policy_kl, b.ref_kl) for b in batches) / len(batches)
        diffs.append((abs(logged - defined), f"step {step}: logged {logged:.6g}, defined {defined:.6g}"))
    return worst(name, case_id, diffs, atol, what, "the KL estimate is not the clamped mean log-ratio of the "
                                                   "mismatched pairs (not clamped at 0, or other rows?)", missing)


def loss_relation(case_id: str, rec: Recorded, curve: list[dict], atol: float) -> CheckResult:
    s = rec.settings
    name = "kto_loss_by_definition"
    if s.get("loss_type") not in d.KTO_LOSS_TYPES:
        return CheckResult(name, False, f"{case_id}: the suite has no definition of KTO's loss_type {s['loss_type']}")
    wd, wu, beta = s.get("desirable_weight", 1.0), s.get("undesirable_weight", 1.0), s["beta"]
    what = (f"KTO's logged loss vs its definition from the rows' log-ratios and the logged KL estimate (beta "
            f"{beta:g}, desirable weight {wd:g}, undesirable weight {wu:g})")
    steps, missing = _steps(rec)
    diffs = []
    for step, batches in steps.items():
        logged, kl = logged_at(curve, step, "loss"), logged_at(curve, step, "kl")
        if logged is None or kl is None:
            return worst(name, case_id, [], atol, what, "", f"step {step} logged no loss or no kl")
        # the KL estimate as logged (kto_kl_by_definition judges it): one cause, one failing relation
        defined = sum(d.kto_loss(b.ratios, b.desirable, kl, beta, wd, wu) for b in batches) / len(batches)
        diffs.append((abs(logged - defined), f"step {step}: logged {logged:.6g}, defined {defined:.6g}"))
    return worst(name, case_id, diffs, atol, what, "the loss is not KTO's with the configured weights and beta "
                                                   "(a weight ignored, or the KL term left out?)", missing)


def first_step_weight(resolved: dict) -> float:
    """The mean row weight of the first recorded micro-batch (KTO's first loss is half of it); 1 without a record."""
    rec = read_recorded(resolved)
    first = None if isinstance(rec, NoRecord) else next((b for b in rec.batches if b.step == 1 and b.label), None)
    if first is None:
        return 1.0
    wd, wu = rec.settings.get("desirable_weight", 1.0), rec.settings.get("undesirable_weight", 1.0)
    return sum(wd if good else wu for good in first.label) / len(first.label)


def _run(name: str, relation: Any, atol_field: str) -> TrainerCheck:
    def evaluate(case: Case, payload: Payload, bounds: Bounds | None, inv: Any) -> CheckResult:
        rec = read_recorded(payload.resolved)
        if isinstance(rec, NoRecord):
            return missing_result(name, case.id, rec)
        atol = bound_for(name, case.method, bounds, getattr(case.checks, atol_field))
        return relation(case.id, rec, payload.loss_curve, atol)

    return TrainerCheck(name, evaluate)


RELATIONS = (_run("kto_kl_by_definition", kl_relation, "preference_rewards_atol"),
             _run("kto_loss_by_definition", loss_relation, "preference_loss_atol"))
