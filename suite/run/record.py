"""Building a case's record from how it ended: the one place a `CaseRecord` is made from a run
(suite/run/session.py hands it the outcome; docs/results-schema.md says what each field means)."""
from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from suite.records import provenance
from suite.records.record import SCHEMA_VERSION, BackendInfo, CaseRecord

if TYPE_CHECKING:
    from suite.judge.judging import Judgement
    from suite.matrix.spec import Case
    from suite.train.payload import Payload


@dataclass
class CaseOutcome:
    """How a case ended, everything its record is written from."""

    status: str  # passed | failed | error | skipped
    reason: str = ""  # why skipped / failed / errored; empty when passed
    payload: Payload | None = None  # what the child measured (None: it never returned)
    judgement: Judgement | None = None  # what the parent concluded of it (None: nothing to judge)
    failure: dict | None = None  # kind, message, exit code, stderr tail of a child that died


@dataclass(frozen=True)
class RunInfo:
    """What every record of a run shares."""

    run_id: str
    mode: str  # regression | benchmark
    results_root: Path  # checkpoint folders are recorded relative to it


def build_record(run: RunInfo, case: Case, outcome: CaseOutcome, started: float, repeat: int | None,
                 backend: BackendInfo | None, budgets: dict) -> CaseRecord:
    """The record of a case (docs/results-schema.md), from its outcome; `backend`: what trained it
    (None: no backend trains it), `budgets`: the budgets' summary on this profile."""
    p, judged = outcome.payload, outcome.judgement
    klass = judged.kernel_class if judged else None
    return CaseRecord(
        schema_version=SCHEMA_VERSION, run_id=run.run_id, kernel_class=klass,
        case_id=case.id, repeat=repeat, mode=run.mode, status=outcome.status,
        reason=outcome.reason or None,
        markers=tuple(case.markers), fingerprint=case.fingerprint, case=case.to_dict(),
        backend=backend,
        started_at=time.strftime("%Y-%m-%dT%H:%M:%S%z", time.localtime(started)),
        wall_s=round(time.time() - started, 3),
        metrics=judged.metrics if judged else {},
        loss_curve=p.loss_curve if p else [], step_times_s=p.step_times_s if p else [],
        step_cpu_times_s=p.step_cpu_times_s if p else [],
        step_tokens=p.step_tokens if p else [], flops=_dict(p and p.flops), work=judged.work if judged else None,
        train=_dict(p and p.train), params=p.params.for_record() if p else None,
        memory=_dict(p and p.memory), timing=_dict(p and p.timing), device=_dict(p and p.device),
        checkpoint=_checkpoint(run, p, judged), reload=_dict(p and p.reload),
        reference=p.reference.to_dict() if p and p.reference else None,
        eval_curve=p.eval_curve if p and p.eval_curve else None,
        dropout=p.dropout if p else None,
        resolved=({**p.resolved, "strategy": p.strategy.to_dict()} if p.strategy else p.resolved) if p else None,
        checks=[c.to_dict() for c in judged.checks] if judged else [],
        budgets=budgets,
        failure=outcome.failure, warnings=p.warnings if p else [],
        environment=provenance.capture(),
    )


def _checkpoint(run: RunInfo, payload: Payload | None, judged: Judgement | None) -> dict | None:
    """The saved checkpoint's inventory, its kind, whether it was kept and where (relative to the results)."""
    inv = judged.inventory if judged else None
    if inv is None or payload is None:
        return None
    root = run.results_root.resolve()
    folder = Path(inv.directory)
    return {**inv.to_dict(), "kind": payload.checkpoint.kind, "kept": folder.is_dir(),
            "directory": str(folder.relative_to(root)) if folder.is_relative_to(root) else inv.directory}


def _dict(part) -> dict | None:
    return part.to_dict() if part is not None else None
