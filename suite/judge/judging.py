"""Judging one case that trained: its kernel class (computed here, once per run), the checkpoint's
inventory, the metric values and every check, as one `Judgement` that the record is built from
(suite/run/record.py). Split out of suite/run/session.py, which only runs cases."""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from suite import kernelclass
from suite.judge import bands, budgets, checkpoint, checks, hardware, metrics, strategy
from suite.judge.baselines import BaselineStore
from suite.judge.checkpoint import Inventory
from suite.judge.checks import CheckResult
from suite.judge.hardware import Profile
from suite.matrix.spec import Case
from suite.train.backends.registry import backend_for
from suite.train.payload import Payload


@dataclass
class Judgement:
    """What the parent concluded of a case that returned a payload."""

    kernel_class: kernelclass.KernelClass  # what decided its numerics, derived once from payload.device.kernels
    inventory: Inventory | None = None  # the saved checkpoint's files and tensors (None: none saved)
    values: dict[str, float] = field(default_factory=dict)  # metric values derived from the payload
    checks: list[CheckResult] = field(default_factory=list)
    work: dict | None = None  # the counted work of a step, with what its disagreement with the analytic FLOPs means

    @property
    def metrics(self) -> dict[str, dict]:
        """The metric values with their declared unit and direction, as a record stores them."""
        return metrics.described(self.values)

    @property
    def failed(self) -> list[CheckResult]:
        return [c for c in self.checks if not c.passed]


@dataclass(frozen=True)
class Judge:
    """What a run judges its cases with: the machine's profile, the mode, its budgets and golden curves."""

    hw: Profile
    mode: str  # regression | benchmark
    budget_entries: list[budgets.Entry]
    baselines: BaselineStore | None  # None: golden curves not compared
    baselines_root: Path  # where the class bounds are read (results/baselines)


def judge_case(judge: Judge, case: Case, payload: Payload, run_dir: Path) -> Judgement:
    """The kernel class, the checkpoint's inventory, the metric values and every check of a case that
    trained. Each part that raises is a failed check of its own name carrying the exception
    (checks.guarded): the case is failed, its other parts judged, its record written; never an error
    with nothing judged."""
    klass = kernelclass.of_kernels(payload.device.kernels)  # the one place a run's class is derived
    ckpt_dir = Path(payload.checkpoint.dir)
    inv, results_ = checks.attempt("checkpoint", case.id, "the checkpoint's inventory",
                                   lambda: checkpoint.inventory(ckpt_dir) if ckpt_dir.is_dir() else None, None)
    results_ += checks.run_all(case, payload, inv, bands.class_bounds(judge.baselines_root, judge.hw.name, klass.name))
    if case.uses.distributed is not None:  # the strategy that ran is the one asked (no silent fallback)
        results_ += checks.guarded("strategy", case.id, lambda: strategy.check(case, payload))
    values, failed = checks.attempt("metrics", case.id, "deriving the metrics",
                                    lambda: _metric_values(judge.hw, case, payload, inv), {})
    results_ += failed
    if judge.mode == "benchmark":
        results_ += checks.guarded("budgets", case.id,
                                   lambda: budgets.evaluate(judge.budget_entries, case.id, values, klass))
    store = judge.baselines
    if store is not None:
        results_ += checks.guarded("golden_curve", case.id, lambda: store.checks(
            case, payload.loss_curve, results_, run_dir, klass))
    return Judgement(klass, inv, values, results_, _work(case, payload, values))


def _metric_values(hw: Profile, case: Case, payload: Payload, inv: Inventory | None) -> dict[str, float]:
    return metrics.derive(payload, case.checks.loss_window, inv.total_bytes if inv else None,
                          warmup_steps=case.benchmark.warmup_steps,
                          peak_flops=hw.peak_flops.get(payload.device.precision),
                          logged=backend_for(case).logged_metrics)


def budget_summary(judge: Judge, case: Case, klass: kernelclass.KernelClass | None) -> dict:
    """What the record says of the case's budgets on this profile (and class), enforced or not."""
    declared = budgets.applicable(judge.budget_entries, case.id, klass)
    summary = {"profile": judge.hw.name, "enforced": judge.mode == "benchmark" and bool(declared),
               **({"kernel_class": klass.name} if klass else {}),
               "declared": [b.summary() for b in declared]}
    if not declared:
        summary["note"] = f"no budget declared for {case.id} on profile {judge.hw.name}; numbers recorded"
    elif judge.mode != "benchmark":
        summary["note"] = "budgets are enforced in benchmark mode (--benchmark) only"
    return summary


def _work(case: Case, payload: Payload, values: dict[str, float]) -> dict | None:
    """The counted work of a step, with what its disagreement with the analytic FLOPs means."""
    if payload.work is None:
        return None
    work = dict(payload.work)
    ratio = values.get("counted_vs_analytic_flops")
    if ratio is not None:
        four_bit = payload.params is not None and payload.params.quantized is not None
        work["vs_analytic"] = {"ratio": ratio, "note": hardware.flops_disagreement(
            ratio, case.uses.checkpointing, four_bit)}
    return work
