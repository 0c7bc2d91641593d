"""The distillation loss by its definition, from the logits the suite captured itself (recorder.py), with the
suite's own formula (never trl's `generalized_jsd_loss` nor its chunked kernel): per completion token, with
p_s = softmax(student logits / T) and p_t = softmax(teacher logits / T) (T: the temperature the case declares),
  beta = 0: KL(p_t || p_s) (forward KL),   beta = 1: KL(p_s || p_t) (reverse KL),
  else:     beta KL(p_t || m) + (1 - beta) KL(p_s || m),  m = (1 - beta) p_s + beta p_t  (0.5: the JSD),
as trl's DistillationConfig documents `beta`; a step's loss is the mean over the step's completion tokens (trl
divides the token sum by the count of completion tokens in the batch). `distill_loss_by_definition` holds it
against the logged loss at each recorded step."""
from __future__ import annotations

import math
from typing import TYPE_CHECKING, Any

from suite.checkresult import Bounds, CheckResult
from suite.train.backends.base import TrainerCheck
from suite.train.backends.preference.relations import bound_for, logged_at, worst

if TYPE_CHECKING:
    from suite.matrix.spec import Case
    from suite.train.payload import Payload

KEY = "distillation"
# what computes a divergence in trl or torch: neither relation below may call it
DIVERGENCE_ORACLES = (
    "trl.trainer.distillation_trainer._chunked_divergence_loss",
    "trl.trainer.distillation_trainer.DistillationTrainer._compute_loss",
    "trl.kernels.chunked_divergence.ChunkedDivergenceFunction",
    "trl.experimental.gkd.gkd_trainer.GKDTrainer.generalized_jsd_loss",
    "trl.experimental.gold.gold_trainer.GOLDTrainer.generalized_jsd_loss",
    "torch.nn.functional.kl_div")
# relation -> the dotted names its module must not call (tests/judge/test_oracles.py scans for them); checks.py's
# held-out check uses this module's divergence and re-exports the list
FORBIDDEN_ORACLES: dict[str, tuple[str, ...]] = {
    "distill_loss_by_definition": DIVERGENCE_ORACLES,
    "distill_divergence_falls": DIVERGENCE_ORACLES,
}


def log_softmax(logits: list[float], temperature: float) -> list[float]:
    scaled = [x / temperature for x in logits]
    top = max(scaled)
    log_z = top + math.log(sum(math.exp(x - top) for x in scaled))
    return [x - log_z for x in scaled]


def _kl(log_p: list[float], log_q: list[float]) -> float:
    return sum(math.exp(a) * (a - b) for a, b in zip(log_p, log_q))


def divergence(student: list[float], teacher: list[float], beta: float, temperature: float) -> float:
    """One token's generalized JSD (see the module's docstring), in nats."""
    ls, lt = log_softmax(student, temperature), log_softmax(teacher, temperature)
    if beta == 0.0:
        return _kl(lt, ls)
    if beta == 1.0:
        return _kl(ls, lt)
    lm = [math.log((1 - beta) * math.exp(a) + beta * math.exp(b)) for a, b in zip(ls, lt)]
    return beta * _kl(lt, lm) + (1 - beta) * _kl(ls, lm)


def mean_divergence(student: list[list[float]], teacher: list[list[float]], beta: float, temperature: float) -> float:
    if not student or len(student) != len(teacher):
        return math.nan
    return sum(divergence(s, t, beta, temperature) for s, t in zip(student, teacher)) / len(student)


def read(resolved: dict) -> dict | str:
    """The recorder's document, or why there is none (a lost record is a failed check, never a pass)."""
    doc = resolved.get(KEY)
    if not doc:
        return f"the child recorded no logits (resolved.{KEY} is missing)"
    missing = [k for k in ("settings", "micro_batches", "heldout") if k not in doc]
    return f"resolved.{KEY} lacks {', '.join(missing)}" if missing else doc


def loss_relation(case_id: str, doc: dict, curve: list[dict], atol: float) -> CheckResult:
    s = doc["settings"]
    beta, temperature = float(s["beta"]), float(s["temperature"])
    name = "distill_loss_by_definition"
    what = f"the logged loss vs the generalized JSD (beta {beta:g}, temperature {temperature:g}) of the captured logits"
    steps: dict[int, tuple[float, int]] = {}
    for b in doc["micro_batches"]:
        total, count = steps.get(b["step"], (0.0, 0))
        n = len(b["student"])
        steps[b["step"]] = (total + n * mean_divergence(b["student"], b["teacher"], beta, temperature), count + n)
    expected = int(s.get("recorded_steps", 1))
    missing = None if len(steps) >= min(expected, 1) and steps else "no step's logits were recorded"
    diffs = []
    for step, (total, count) in sorted(steps.items()):
        logged = logged_at(curve, step, "loss")
        if logged is None:
            return worst(name, case_id, [], atol, what, "", f"step {step} logged no loss")
        defined = total / max(count, 1)
        diffs.append((abs(logged - defined), f"step {step}: logged {logged:.6g}, defined {defined:.6g}"))
    return worst(name, case_id, diffs, atol, what, "the loss is not the generalized JSD the case declares (beta "
                                                   "read otherwise, the temperature ignored, another teacher?)",
                 missing)


def _evaluate(case: Case, payload: Payload, bounds: Bounds | None, inv: Any) -> CheckResult:
    name = "distill_loss_by_definition"
    doc = read(payload.resolved)
    if isinstance(doc, str):
        return CheckResult(name, False, f"{case.id}: {doc}")
    atol = bound_for(name, case.method, bounds, case.checks.distill_loss_atol)
    return loss_relation(case.id, doc, payload.loss_curve, atol)


RELATIONS = (TrainerCheck("distill_loss_by_definition", _evaluate),)
