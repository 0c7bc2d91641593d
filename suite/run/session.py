"""A run: cases go in one at a time, records and a manifest come out under results/<run-id>/. Judging
is suite/judge/judging.py's, the record suite/run/record.py's, the manifest's lock
suite/run/manifest.py's, checkpoint retention suite/run/retention.py's: this module runs cases."""
from __future__ import annotations

import os
import socket
import sys
import time
from dataclasses import dataclass, field, replace
from pathlib import Path

from suite import paths
from suite.judge import budgets, hardware
from suite.judge.baselines import BaselineStore
from suite.judge.judging import Judge, budget_summary, judge_case
from suite.matrix.spec import Case
from suite.paths import BUDGETS
from suite.records import provenance, results
from suite.run.record import CaseOutcome, RunInfo, build_record
from suite.records.record import SCHEMA_VERSION, BackendInfo, CaseRecord
from suite.run import distributed, manifest, requirements, resume, retention, runner
from suite.train.backends.registry import backend_for
from suite.train.payload import Payload


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
    shard: tuple[int, int] | None = None  # --shard I/N: this session runs slice I of N of the run's cases
    shard_plan: list[str] | None = None  # ... of these: the whole run's case ids, before the slice was kept
    child_env: dict[str, str] = field(default_factory=dict)  # set in each case's child (FTSUITE_INJECT, ...)
    left_out: dict[str, list[str]] | None = None  # tier -> the case ids this session left out (not asked for)
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

    def _update_manifest(self, change) -> dict:
        """Apply change(doc) to the manifest on disk (made if missing) under the lock (suite/run/manifest.py)."""
        def fresh() -> dict:
            return {"schema_version": SCHEMA_VERSION, "kind": results.MANIFEST_KIND, "run_id": self.run_id,
                    "started_at": self._started_at, "counts": {}, "records": {}}

        return manifest.update(self.run_dir, fresh, {"mode": self.mode, "argv": self.argv, "profile": self.hw.name,
                                                     "environment": provenance.capture()}, change)

    def start(self) -> None:
        if self._started:
            return
        results.check_run_id(self.run_id)
        self.run_dir.mkdir(parents=True, exist_ok=True)
        self._started_at = time.strftime("%Y-%m-%dT%H:%M:%S%z")

        def begin(doc: dict) -> None:
            doc.setdefault("started_at", self._started_at)
            resume.mark_gone(doc, self._session_id)
            doc.setdefault("sessions", []).append({"id": self._session_id, "argv": self.argv,
                                                   "started_at": self._started_at, "finished_at": None})
            if self.planned is not None:
                doc["planned"] = sorted(set(doc.get("planned") or []) | set(self.planned))
            if self.left_out or doc.get("left_out"):
                doc["left_out"] = left_out_entry(doc.get("left_out"), self.left_out or {}, doc.get("planned") or [])
            if self.shard is not None:
                doc["shard"] = shard_entry(doc.get("shard"), self.shard, self.shard_plan or self.planned or [])

        self._update_manifest(begin)
        self._started = True

    def finish(self, interrupted: bool = False) -> None:
        """Say in the manifest that this session ended; an interrupted one (Ctrl-C) leaves the run unfinished
        until a rerun into its id has run the planned cases with no record (suite/run/resume.py)."""
        if not self._started:
            return

        def end(doc: dict) -> None:
            for s in doc.setdefault("sessions", []):
                if s.get("id") == self._session_id:
                    s["finished_at"] = time.strftime("%Y-%m-%dT%H:%M:%S%z")
                    if interrupted:
                        s["stopped"] = resume.INTERRUPTED

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
            retention.drop_outputs(workdir, self.keep_checkpoints)
            failure = {"kind": outcome.status, "message": outcome.message, "exitcode": outcome.exitcode,
                       "stderr_tail": outcome.stderr_tail}
            return self._finish_case(case, CaseOutcome("error", f"{outcome.status}: {outcome.message}",
                                                       failure=failure), started, repeat)
        payload = Payload.from_dict(outcome.payload)
        judgement = judge_case(self.judge, case, payload, self.run_dir)
        retention.drop_outputs(workdir, self.keep_checkpoints)
        failed = judgement.failed
        return self._finish_case(case, CaseOutcome("failed" if failed else "passed",
                                                   "; ".join(c.message for c in failed), payload, judgement),
                                 started, repeat)

    @property
    def judge(self) -> Judge:
        """What this run judges its cases with (the golden curves as set now: the plugin may set them late)."""
        root = self.baselines.root if self.baselines is not None else paths.baselines_root()
        return Judge(self.hw, self.mode, self._budget_entries, self.baselines, root)

    def _finish_case(self, case: Case, outcome: CaseOutcome, started: float, repeat: int | None) -> CaseResult:
        status, reason = outcome.status, outcome.reason
        klass = outcome.judgement.kernel_class if outcome.judgement else None
        record = build_record(RunInfo(self.run_id, self.mode, self.results_root), case, outcome, started, repeat,
                              _backend_info(case), budget_summary(self.judge, case, klass))
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


def left_out_entry(old: object, new: dict[str, list[str]], planned: list[str]) -> dict[str, list[str]]:
    """The manifest's `left_out`: tier -> the case ids of that tier no session of the run was asked to run
    (a later session into the run with --extended plans them, and they leave the list)."""
    merged: dict[str, set[str]] = {}
    for source in (old if isinstance(old, dict) else {}, new):
        for tier, ids in source.items():
            merged.setdefault(str(tier), set()).update(str(i) for i in ids or [])
    ran = set(planned)
    return {tier: sorted(ids - ran) for tier, ids in sorted(merged.items()) if ids - ran}


def shard_entry(old: object, shard: tuple[int, int], plan: list[str]) -> dict:
    """The manifest's `shard`: this run is slice `index` of `count`, and `planned_all` is every case id of
    the whole run (before the slice was kept), so that a merge of the slices (suite/records/merge.py)
    knows the cases of a slice that left no folder. A rerun into the run adds its plan to the one there."""
    before = old.get("planned_all") if isinstance(old, dict) else None
    plan_all = set(plan) | set(before if isinstance(before, list) else [])
    return {"index": shard[0], "count": shard[1], "planned_all": sorted(plan_all)}


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
