"""DPO by definition, from the log-probabilities trl's loss used (recorded at the first, a middle and the last
step): (a) they equal the suite's own forward's at the first step (a change in trl's prompt slicing or
completion mask shows; with precompute_ref_log_probs, the precomputed reference columns the loss read equal the
suite's own reference forward), (b) the logged loss is the loss type's definition from them with beta and label
smoothing, (c) the logged rewards are beta x the policy's log-ratio to the reference."""
from __future__ import annotations

from typing import TYPE_CHECKING, Any

from suite.checkresult import Bounds, CheckResult
from suite.train.backends.base import TrainerCheck
from suite.train.backends.preference import definitions as d
from suite.train.backends.preference.definitions import FORBIDDEN_ORACLES  # noqa: F401 - the guard's list, re-exported
from suite.train.backends.preference.relations import (ROUTER_COEF, MicroBatch, NoRecord, Recorded, bound_for,
                                                       logged_at, missing_result, read_recorded, router_term, worst)

if TYPE_CHECKING:
    from suite.matrix.spec import Case
    from suite.train.payload import Payload


def pairs_of(batch: MicroBatch) -> list[d.Pair] | str:
    """A DPO micro-batch's pairs: the policy's forward (with gradients) and the reference's (without; with
    precompute_ref_log_probs the batch's precomputed columns instead, and no reference forward), each over the
    chosen rows then the rejected rows, as trl's collator stacks them."""
    policy = [c.logps for c in batch.calls if c.grad]
    reference = [c.logps for c in batch.calls if not c.grad]
    if batch.reference is not None:
        if reference:
            return f"step {batch.step}: a reference forward ran although the reference log-probabilities were precomputed"
        reference = [batch.reference]
    if len(policy) != 1 or len(reference) != 1:
        return (f"step {batch.step}: {len(policy)} policy and {len(reference)} reference forwards recorded, 1 each "
                f"expected")
    n, lengths = len(policy[0]) // 2, batch.completion_tokens
    p, r = policy[0], reference[0]
    return [d.Pair(p[i], p[n + i], r[i], r[n + i], lengths[i], lengths[n + i]) for i in range(n)]


def _each_step(rec: Recorded, curve: list[dict], compute: Any,
               added: Any = lambda step: (0.0, None)) -> tuple[list[tuple[float, str]], str | None]:
    """(|logged - defined|, where) per recorded step and key; `compute(pairs)` gives {logged key: defined value};
    `added(step)`, what the trainer adds to every key's logged value at the step (the router's loss), or why unknown."""
    diffs = []
    for step, batches in sorted(rec.steps().items()):
        extra, unknown = added(step)
        if unknown:
            return [], unknown
        per_batch = []
        for b in batches:
            pairs = pairs_of(b)
            if isinstance(pairs, str):
                return [], pairs
            per_batch.append(compute(pairs))
        for key in per_batch[0]:
            logged = logged_at(curve, step, key)
            if logged is None:
                return [], f"step {step} logged no {key}"
            defined = sum(v[key] for v in per_batch) / len(per_batch) + extra  # logging_steps 1: their mean
            diffs.append((abs(logged - defined), f"step {step} {key}: logged {logged:.6g}, defined {defined:.6g}"))
    return diffs, None


def loss_relation(case_id: str, rec: Recorded, curve: list[dict], atol: float) -> CheckResult:
    s = rec.settings
    types = tuple(s["loss_type"])
    unknown = [t for t in types if t not in d.DPO_LOSS_TYPES]
    other = [f"{k}={s.get(k)}" for k, default in (("f_divergence_type", "reverse_kl"), ("use_weighting", False),
                                                   ("ld_alpha", None)) if s.get(k, default) != default]
    if unknown or other:
        return CheckResult("dpo_loss_by_definition", False, f"{case_id}: the suite has no definition of DPO's loss "
                                                            f"for {', '.join(unknown + other)}")
    weights = tuple(s.get("loss_weights") or (1.0,) * len(types))

    def compute(pairs: list[d.Pair]) -> dict[str, float]:
        return {"loss": d.dpo_loss(pairs, s["beta"], types, weights, s.get("label_smoothing", 0.0),
                                   s.get("discopop_tau") or d.DISCOPOP_TAU)}

    diffs, missing = _each_step(rec, curve, compute, lambda step: router_term(s, curve, step))
    return worst("dpo_loss_by_definition", case_id, diffs, atol,
                 f"DPO's logged loss vs {'+'.join(types)} (beta {s['beta']:g}, label smoothing "
                 f"{s.get('label_smoothing', 0.0):g}, weights {', '.join(f'{w:g}' for w in weights)})"
                 + (f" + {s[ROUTER_COEF]:g} x the router's aux_loss" if s.get(ROUTER_COEF) else "")
                 + " from the log-probabilities it used",
                 "the loss is not its loss type's definition with the configured beta, label smoothing and loss "
                 "weights (beta applied twice, label smoothing ignored or the loss weights swapped?)", missing)


def rewards_relation(case_id: str, rec: Recorded, curve: list[dict], atol: float) -> CheckResult:
    beta = rec.settings["beta"]
    diffs, missing = _each_step(rec, curve, lambda pairs: d.dpo_rewards(pairs, beta))
    return worst("dpo_rewards_by_definition", case_id, diffs, atol,
                 f"DPO's logged rewards vs beta ({beta:g}) x (policy - reference) log-ratios",
                 "the logged rewards are not beta x the log-ratio (beta missing or applied twice in the rewards?)",
                 missing)


def logps_relation(case_id: str, rec: Recorded, atol: float) -> CheckResult:
    first = next((b for b in rec.batches if b.step == 1 and b.own), None)
    name, what = "dpo_logps_by_definition", "trl's sequence log-probabilities vs the suite's own forward at step 1"
    if first is None:
        return worst(name, case_id, [], atol, what, "", "the suite's own forward was not recorded at step 1")
    pairs = pairs_of(first)
    if isinstance(pairs, str):
        return worst(name, case_id, [], atol, what, "", pairs)
    trl = {"policy": [p.chosen for p in pairs] + [p.rejected for p in pairs],
           "reference": [p.ref_chosen for p in pairs] + [p.ref_rejected for p in pairs]}
    diffs = []
    for model in ("policy", "reference"):
        for i, (theirs, mine) in enumerate(zip(trl[model], first.own[model])):
            gap = float("inf") if mine is None else abs(theirs - mine)
            diffs.append((gap, f"{model} row {i}: trl {theirs:.6g}, suite "
                               f"{'not a sequence the suite tokenised' if mine is None else f'{mine:.6g}'}"))
    tokens = [(a, b) for a, b in zip(first.completion_tokens, first.own["completion_tokens"]) if a != b]
    cause = "trl's log-probabilities are not the sum over the completion tokens alone (a prompt token counted, " \
            "or the completion mask shifted?)"
    if first.reference is not None:
        cause += "; or the precomputed reference log-probabilities are not this row's reference (misaligned rows?)"
    if tokens:
        cause += f"; completion lengths trl/suite differ on {len(tokens)} rows, e.g. {tokens[0][0]} vs {tokens[0][1]}"
    return worst(name, case_id, diffs, atol, what, cause)


def _read(payload: Payload) -> Recorded | NoRecord:
    return read_recorded(payload.resolved)


def _missing(name: str, case: Case, missing: NoRecord) -> CheckResult:
    return missing_result(name, case.id, missing)


def _logps(case: Case, payload: Payload, bounds: Bounds | None, inv: Any) -> CheckResult:
    rec = _read(payload)
    return _missing("dpo_logps_by_definition", case, rec) if isinstance(rec, NoRecord) else \
        logps_relation(case.id, rec, bound_for("dpo_logps_by_definition", case.method, bounds,
                                               case.checks.dpo_logps_atol))


def _loss(case: Case, payload: Payload, bounds: Bounds | None, inv: Any) -> CheckResult:
    rec = _read(payload)
    return _missing("dpo_loss_by_definition", case, rec) if isinstance(rec, NoRecord) else \
        loss_relation(case.id, rec, payload.loss_curve, bound_for("dpo_loss_by_definition", case.method, bounds,
                                                                  case.checks.preference_loss_atol))


def _rewards(case: Case, payload: Payload, bounds: Bounds | None, inv: Any) -> CheckResult:
    rec = _read(payload)
    return _missing("dpo_rewards_by_definition", case, rec) if isinstance(rec, NoRecord) else \
        rewards_relation(case.id, rec, payload.loss_curve, bound_for("dpo_rewards_by_definition", case.method, bounds,
                                                                     case.checks.preference_rewards_atol))


RELATIONS = (TrainerCheck("dpo_logps_by_definition", _logps), TrainerCheck("dpo_loss_by_definition", _loss),
             TrainerCheck("dpo_rewards_by_definition", _rewards))
