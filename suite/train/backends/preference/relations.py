"""The preference trainers' by-definition relations: what the child recorded at a few steps (recorder.py, in the
record's `resolved["by_definition"]`) read into dataclasses, and each relation a `CheckResult` whose message
names the cause. The formulas are definitions.py's (the suite's own); bounds are CheckSpec fields measured on
clean runs."""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from suite.checkresult import CheckResult, not_judged
from suite.train.backends.preference.definitions import FORBIDDEN_ORACLES  # noqa: F401 - the guard's list, re-exported

KEY = "by_definition"  # where describe() puts the record in the payload's `resolved`


@dataclass(frozen=True)
class Call:
    grad: bool  # the policy's forward (with gradients) or a reference / KL forward (without)
    rows_of_batch: int  # rows that are the batch's own rows at the same index
    logps: list[float]


@dataclass(frozen=True)
class MicroBatch:
    step: int
    loss: float
    calls: list[Call]
    completion_tokens: list[int]
    label: list[bool] | None = None
    own: dict | None = None
    # DPO with precompute_ref_log_probs: the reference log-probabilities the batch carried (chosen rows, then
    # rejected), which the loss read instead of a reference forward
    reference: list[float] | None = None


@dataclass(frozen=True)
class Recorded:
    settings: dict
    batches: list[MicroBatch] = field(default_factory=list)

    def steps(self) -> dict[int, list[MicroBatch]]:
        out: dict[int, list[MicroBatch]] = {}
        for b in self.batches:
            out.setdefault(b.step, []).append(b)
        return out


@dataclass(frozen=True)
class NoRecord:
    """Why there is nothing to judge from. `judgeable` False: the child said the installed release cannot be read
    (from the versions it ran with), and the relations report not judged; True: the record was lost or is malformed,
    and they fail (a lost record is never a pass)."""
    why: str
    judgeable: bool = True


def read_recorded(resolved: dict) -> Recorded | NoRecord:
    """The record, or why there is none."""
    doc = resolved.get(KEY)
    if isinstance(doc, dict) and doc.get("not_judged"):
        return NoRecord(str(doc["not_judged"]), judgeable=False)
    if not doc:
        return NoRecord("the child recorded no log-probabilities (resolved.by_definition is missing)")
    try:
        batches = [MicroBatch(b["step"], b["loss"], [Call(**c) for c in b["calls"]], b["completion_tokens"],
                              b.get("label"), b.get("own"), b.get("reference")) for b in doc["micro_batches"]]
        return Recorded(doc["settings"], batches)
    except (KeyError, TypeError) as exc:
        return NoRecord(f"resolved.by_definition is malformed ({type(exc).__name__}: {exc})")


def missing_result(name: str, case_id: str, missing: NoRecord) -> CheckResult:
    """A relation with nothing recorded: not judged where the child said the release cannot be, else failed."""
    if not missing.judgeable:
        return not_judged(name, case_id, missing.why)
    return CheckResult(name, False, f"{case_id}: {missing.why}")


def bound_for(name: str, method: str, bounds: Any, default: float) -> float:
    """The kernel class's measured bound for the relation where its references hold one (a GPU class's, once
    measured: the CheckSpec defaults are CPU fp32 measurements), else the case's CheckSpec bound."""
    measured = bounds.bound(name, method) if bounds is not None else None
    return measured[0] if measured else default


def logged_at(curve: list[dict], step: int, key: str) -> float | None:
    return next((p[key] for p in curve if p.get("step") == step and key in p), None)


# A mixture of experts: trl adds this coefficient x the router's auxiliary loss (logged as aux_loss) to DPO's loss,
# recorded in the settings by the child (backend.router_coef; 0 where the router's loss is off). Found by the
# families' MoE DPO cases (cases/families_extended.yaml): their first loss was ln 2 + 0.01 x 2.03.
ROUTER_COEF = "router_aux_loss_coef"


def router_term(settings: dict, curve: list[dict], step: int) -> tuple[float, str | None]:
    """What trl added to the step's logged loss for the router (coefficient x the logged aux_loss), or why it is
    unknown; 0 for a model with no router loss."""
    coef = float(settings.get(ROUTER_COEF) or 0.0)
    if not coef:
        return 0.0, None
    aux = logged_at(curve, step, "aux_loss")
    if aux is None:
        return 0.0, f"step {step} logged no aux_loss (the router's auxiliary loss, x {coef:g} in the loss)"
    return coef * aux, None


def worst(name: str, case_id: str, diffs: list[tuple[float, str]], bound: float, what: str, cause: str,
          missing: str | None = None) -> CheckResult:
    """The relation's verdict from its (difference, where) pairs: the largest against the bound."""
    if missing or not diffs:
        return CheckResult(name, False, f"{case_id}: {what}: {missing or 'nothing was recorded to compare'}")
    diff, where = max(diffs, key=lambda d: d[0] if d[0] == d[0] else float("inf"))  # NaN counts as worst
    passed = diff <= bound
    return CheckResult(name, passed, f"{case_id}: {what}: largest difference {diff:.3g} ({where}; "
                                     f"{'<=' if passed else '>'} {bound:g})" + ("" if passed else f": {cause}"),
                       value=diff, bound=bound)
