"""A run: cases go in one at a time, records and a manifest come out under results/<run-id>/."""
from __future__ import annotations

import contextlib
import fcntl
import os
import shutil
import socket
import sys
import time
from dataclasses import dataclass, field, replace
from pathlib import Path

from suite import paths
from suite.judge import bands, budgets, checkpoint, checks, hardware, kernelclass, metrics
from suite.judge.baselines import BaselineStore
from suite.judge.checkpoint import Inventory
from suite.judge.checks import CheckResult
from suite.matrix.spec import Case
from suite.paths import BUDGETS
from suite.records import provenance, results
from suite.records.record import SCHEMA_VERSION, BackendInfo, CaseRecord
from suite.run import distributed, requirements, runner
from suite.train.backends.registry import backend_for
from suite.train.payload import Payload

# Checkpoints above this size are deleted once checked (their inventory stays in the record),
# unless the run keeps them: a 7B full fine-tune would leave 14 GB per case.
KEEP_CHECKPOINT_BYTES = 256 * 2**20
# --keep-checkpoints: every checkpoint, or those of at most KEEP_CHECKPOINT_BYTES (the retention policy's
# words, not the loss axis's `auto`)
KEEP_ALWAYS, KEEP_SMALL = "always", "auto"


@dataclass
class CaseOutcome:
    """How a case ended, everything its record is written from (in one place: RunSession._record)."""
    status: str  # passed | failed | error | skipped
    reason: str = ""  # why skipped / failed / errored; empty when passed
    payload: Payload | None = None  # what the child measured (None: it never returned)
    values: dict[str, float] = field(default_factory=dict)  # metric values derived from it
    checks: list[CheckResult] = field(default_factory=list)
    inventory: Inventory | None = None  # the saved checkpoint's files and tensors
    failure: dict | None = None  # kind, message, exit code, stderr tail of a child that died


@dataclass
class CaseResult:
    case: Case
    status: str  # passed | failed | error | skipped
    reason: str  # why skipped / failed / errored; empty when passed
    record: CaseRecord  # as written to record_path
    record_path: Path

    @property
    def failure_messages(self) -> list[str]:
        msgs = [c["message"] for c in self.record.failed_checks]
        failure = self.record.failure
        if failure:
            msgs.insert(0, f"{self.case.id}: {failure['kind']}: {failure['message']}")
            if failure.get("stderr_tail"):
                msgs.append("--- tail of the case's output ---\n" + failure["stderr_tail"][-2000:])
        return msgs


@dataclass
class RunSession:
    results_root: Path
    run_id: str
    mode: str = "regression"
    timeout_s: float | None = None  # overrides every case's own timeout
    keep_checkpoints: str = "auto"  # auto | always | never
    profile: str | None = None  # hardware profile for budgets; None: detected from the GPU
    budgets_dir: Path | None = None  # cases/budgets by default
    baselines: BaselineStore | None = None  # golden loss curves of tiny regression cases; None: not compared
    argv: list[str] = field(default_factory=lambda: list(sys.argv))
    planned: list[str] | None = None  # the case ids this session was asked to run (None: not known)
    child_env: dict[str, str] = field(default_factory=dict)  # set in each case's child (FTSUITE_INJECT, ...)
    _started: bool = False
    _started_at: str = ""
    _counts: dict = field(default_factory=dict)  # this session's own outcomes (the manifest holds every session's)

    def __post_init__(self) -> None:
        self.results_root = Path(self.results_root).resolve()
        self.hw = hardware.current() if self.profile is None else hardware.profile_named(self.profile)
        self.budgets_dir = Path(self.budgets_dir or BUDGETS)
        self._budget_entries = budgets.load_profile(self.budgets_dir, self.hw.name)
        self._session_id = f"{socket.gethostname()}:{os.getpid()}:{time.time_ns()}"

    @property
    def run_dir(self) -> Path:
        return self.results_root / self.run_id

    @property
    def started(self) -> bool:
        """Whether this session has opened its run (its first case started it)."""
        return self._started

    @property
    def counts(self) -> dict[str, int]:
        """This session's own outcomes by status, a copy (the manifest holds every session's)."""
        return dict(self._counts)

    # The manifest is shared by every process that writes into the run (two pytest sessions, shards
    # on one machine): each change re-reads it and writes it back under an exclusive lock, so no
    # process's records or counts are lost, and a record's file name is chosen under the same lock.
    @contextlib.contextmanager
    def _manifest_lock(self):
        fd = os.open(self.run_dir / ".manifest.lock", os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            yield
        finally:
            fcntl.flock(fd, fcntl.LOCK_UN)
            os.close(fd)

    def _update_manifest(self, change) -> dict:
        """Apply change(doc) to the manifest on disk (made if missing) under the lock; returns it."""
        with self._manifest_lock():
            path = self.run_dir / "manifest.json"
            doc = results.read_manifest(self.run_dir) if path.exists() else {
                "schema_version": SCHEMA_VERSION, "kind": results.MANIFEST_KIND, "run_id": self.run_id,
                "started_at": self._started_at, "counts": {}, "records": {}}
            doc.update({"mode": self.mode, "argv": self.argv, "profile": self.hw.name,
                        "environment": provenance.capture()})
            change(doc)
            sessions = doc.setdefault("sessions", [])
            doc["finished_at"] = (max(str(s.get("finished_at")) for s in sessions)
                                  if sessions and all(s.get("finished_at") for s in sessions) else None)
            results.write_json_atomic(path, doc)
            return doc

    def start(self) -> None:
        if self._started:
            return
        results.check_run_id(self.run_id)
        self.run_dir.mkdir(parents=True, exist_ok=True)
        self._started_at = time.strftime("%Y-%m-%dT%H:%M:%S%z")

        def begin(doc: dict) -> None:
            doc.setdefault("started_at", self._started_at)
            doc.setdefault("sessions", []).append({"id": self._session_id, "argv": self.argv,
                                                   "started_at": self._started_at, "finished_at": None})
            if self.planned is not None:
                doc["planned"] = sorted(set(doc.get("planned") or []) | set(self.planned))

        self._update_manifest(begin)
        self._started = True

    def finish(self) -> None:
        if not self._started:
            return

        def end(doc: dict) -> None:
            for s in doc.setdefault("sessions", []):
                if s.get("id") == self._session_id:
                    s["finished_at"] = time.strftime("%Y-%m-%dT%H:%M:%S%z")

        self._update_manifest(end)

    def _workdir(self, case: Case) -> Path:
        """A folder of this case's own, reserved by creating it (a concurrent process takes the next)."""
        self.run_dir.mkdir(parents=True, exist_ok=True)
        n = 0
        while True:
            path = self.run_dir / (case.slug if n == 0 else f"{case.slug}.r{n}")
            try:
                path.mkdir()
                return path
            except FileExistsError:
                n += 1

    def run_case(self, case: Case, repeat: int | None = None) -> CaseResult:
        """Run one case; `repeat` defaults to how many records of it the run already holds."""
        self.start()
        case = case.with_mode(self.mode)
        started = time.time()
        missing = requirements.missing_requirements(case)
        if missing:
            return self._finish_case(case, CaseOutcome("skipped", "needs " + "; ".join(missing)), started, repeat)
        workdir = self._workdir(case)
        if case.distributed:  # ddp/fsdp: several ranks through accelerate launch, same result file
            outcome = distributed.run(case, workdir, self.timeout_s or case.timeout_s)
        else:
            target, method = runner.entry_point(case)
            if method == "forkserver":
                runner.ensure_started()
            outcome = runner.run_in_child(target, (case, workdir), workdir, self.timeout_s or case.timeout_s,
                                          method=method, env=self.child_env)
        if not outcome.ok:
            self._drop_outputs(workdir)
            failure = {"kind": outcome.status, "message": outcome.message, "exitcode": outcome.exitcode,
                       "stderr_tail": outcome.stderr_tail}
            return self._finish_case(case, CaseOutcome("error", f"{outcome.status}: {outcome.message}",
                                                       failure=failure), started, repeat)
        payload = Payload.from_dict(outcome.payload)
        inv, values, results_ = self._judge(case, payload)
        failed = [c for c in results_ if not c.passed]
        self._drop_outputs(workdir)
        return self._finish_case(case, CaseOutcome("failed" if failed else "passed",
                                                   "; ".join(c.message for c in failed), payload, values, results_,
                                                   inv), started, repeat)

    def _judge(self, case: Case, payload: Payload) -> tuple[Inventory | None, dict[str, float], list[CheckResult]]:
        """The checkpoint's inventory, the metric values and every check of a case that trained. Each part
        that raises is a failed check of its own name carrying the exception (checks.guarded): the case is
        failed, its other parts judged, its record written; never an error with nothing judged."""
        ckpt_dir = Path(payload.checkpoint.dir)
        inv, results_ = checks.attempt("checkpoint", case.id, "the checkpoint's inventory",
                                       lambda: checkpoint.inventory(ckpt_dir) if ckpt_dir.is_dir() else None, None)
        klass = kernelclass.of_kernels(payload.device.kernels)
        root = self.baselines.root if self.baselines is not None else paths.baselines_root()
        results_ += checks.run_all(case, payload, inv, bands.class_bounds(root, self.hw.name, klass.name))
        values, failed = checks.attempt("metrics", case.id, "deriving the metrics",
                                        lambda: self._metric_values(case, payload, inv), {})
        results_ += failed
        if self.mode == "benchmark":
            results_ += checks.guarded("budgets", case.id,
                                       lambda: budgets.evaluate(self._budget_entries, case.id, values, klass))
        if self.baselines is not None:
            results_ += checks.guarded("golden_curve", case.id, lambda: self.baselines.checks(
                case, payload.loss_curve, results_, self.run_dir, payload.device.kernels))
        return inv, values, results_

    def _metric_values(self, case: Case, payload: Payload, inv: Inventory | None) -> dict[str, float]:
        precision = payload.device.precision
        return metrics.derive(payload, case.checks.loss_window, inv.total_bytes if inv else None,
                              warmup_steps=case.benchmark.warmup_steps,
                              peak_flops=self.hw.peak_flops.get(precision),
                              logged=backend_for(case).logged_metrics)

    def _budget_summary(self, case: Case, klass: kernelclass.KernelClass | None) -> dict:
        declared = budgets.applicable(self._budget_entries, case.id, klass)
        summary = {"profile": self.hw.name, "enforced": self.mode == "benchmark" and bool(declared),
                   **({"kernel_class": klass.name} if klass else {}),
                   "declared": [b.summary() for b in declared]}
        if not declared:
            summary["note"] = f"no budget declared for {case.id} on profile {self.hw.name}; numbers recorded"
        elif self.mode != "benchmark":
            summary["note"] = "budgets are enforced in benchmark mode (--benchmark) only"
        return summary

    def _drop_outputs(self, workdir: Path) -> None:
        """The checkpoint goes unless the keep rule keeps it, whether the case passed, failed or
        died after saving (in the reload, say): a 7B full fine-tune's 13.5 GB must not stay."""
        shutil.rmtree(workdir / "trainer", ignore_errors=True)  # empty with save_strategy="no"
        ckpt = workdir / "checkpoint"
        if ckpt.is_dir() and not self._keep(sum(f.stat().st_size for f in ckpt.rglob("*") if f.is_file())):
            shutil.rmtree(ckpt, ignore_errors=True)

    def _keep(self, nbytes: int) -> bool:
        return self.keep_checkpoints == KEEP_ALWAYS or (self.keep_checkpoints == KEEP_SMALL
                                                        and nbytes <= KEEP_CHECKPOINT_BYTES)

    def _record(self, case: Case, outcome: CaseOutcome, started: float, repeat: int | None) -> CaseRecord:
        """The record of a case (docs/results-schema.md), from its outcome: the one place records are made."""
        payload, inv = outcome.payload, outcome.inventory
        ckpt = None
        if inv is not None and payload is not None:
            ckpt = {**inv.to_dict(), "kind": payload.checkpoint.kind, "kept": Path(inv.directory).is_dir(),
                    "directory": str(Path(inv.directory).relative_to(self.results_root.resolve()))
                    if Path(inv.directory).is_relative_to(self.results_root.resolve()) else inv.directory}
        p = payload
        klass = kernelclass.of_kernels(p.device.kernels) if p else None
        return CaseRecord(
            schema_version=SCHEMA_VERSION, run_id=self.run_id, kernel_class=klass.name if klass else None,
            case_id=case.id, repeat=repeat, mode=self.mode, status=outcome.status,
            reason=outcome.reason or None,
            markers=tuple(case.markers), fingerprint=case.fingerprint, case=case.to_dict(),
            backend=_backend_info(case),
            started_at=time.strftime("%Y-%m-%dT%H:%M:%S%z", time.localtime(started)),
            wall_s=round(time.time() - started, 3),
            metrics=metrics.described(outcome.values),
            loss_curve=p.loss_curve if p else [], step_times_s=p.step_times_s if p else [],
            step_cpu_times_s=p.step_cpu_times_s if p else [],
            step_tokens=p.step_tokens if p else [], flops=_dict(p and p.flops), work=_work(case, p, outcome.values),
            train=_dict(p and p.train), params=p.params.for_record() if p else None,
            memory=_dict(p and p.memory), timing=_dict(p and p.timing), device=_dict(p and p.device),
            checkpoint=ckpt, reload=_dict(p and p.reload),
            reference=p.reference.to_dict() if p and p.reference else None,
            eval_curve=p.eval_curve if p and p.eval_curve else None,
            dropout=p.dropout if p else None,
            resolved=p.resolved if p else None,
            checks=[c.to_dict() for c in outcome.checks],
            budgets=self._budget_summary(case, klass),
            failure=outcome.failure, warnings=payload.warnings if payload else [],
            environment=provenance.capture(),
        )

    def _finish_case(self, case: Case, outcome: CaseOutcome, started: float, repeat: int | None) -> CaseResult:
        status, reason = outcome.status, outcome.reason
        record = self._record(case, outcome, started, repeat)
        written: list[tuple[Path, CaseRecord]] = []

        def add(doc: dict) -> None:  # under the manifest lock: the name, the repeat and the listing at once
            listed = doc.setdefault("records", {}).setdefault(case.id, [])
            path = results.record_path(self.run_dir, case.slug, taken={n for names in doc["records"].values()
                                                                        for n in names})
            rec = results.write_record(path, record if repeat is not None else replace(record, repeat=len(listed)))
            listed.append(path.name)
            doc.setdefault("counts", {})[status] = doc["counts"].get(status, 0) + 1
            written.append((path, rec))

        self._update_manifest(add)
        self._counts[status] = self._counts.get(status, 0) + 1
        path, record = written[-1]
        return CaseResult(case, status, reason, record, path)


def _backend_info(case: Case) -> BackendInfo | None:
    """What the record says of the backend that trains the case (None: no backend trains it). The
    trainer class is the backend's `trainer_class` where it declares one, else the word its name
    ends with ("trl SFTTrainer": SFTTrainer; "unsloth": unsloth)."""
    try:
        backend = backend_for(case)
    except KeyError:
        return None
    trainer_class = backend.trainer_class or backend.name.split()[-1]
    return BackendInfo(backend.name, backend.label, trainer_class, backend.twin)


def _dict(part) -> dict | None:
    return part.to_dict() if part is not None else None


def _work(case: Case, payload: Payload | None, values: dict[str, float]) -> dict | None:
    """The counted work of a step, with what its disagreement with the analytic FLOPs means."""
    if payload is None or payload.work is None:
        return None
    work = dict(payload.work)
    ratio = values.get("counted_vs_analytic_flops")
    if ratio is not None:
        four_bit = payload.params is not None and payload.params.quantized is not None
        work["vs_analytic"] = {"ratio": ratio, "note": hardware.flops_disagreement(
            ratio, case.uses.checkpointing, four_bit)}
    return work
