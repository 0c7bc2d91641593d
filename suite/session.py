"""A run: cases go in one at a time, records and a manifest come out under results/<run-id>/."""
from __future__ import annotations

import shutil
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

from suite import budgets, checkpoint, checks, distributed, env, hardware, metrics, results, runner
from suite.baselines import BaselineStore
from suite.cases import Case
from suite.results import SCHEMA_VERSION

# Checkpoints above this size are deleted once checked (their inventory stays in the record),
# unless the run keeps them: a 7B full fine-tune would leave 14 GB per case.
KEEP_CHECKPOINT_BYTES = 256 * 2**20


@dataclass
class CaseResult:
    case: Case
    status: str  # passed | failed | error | skipped
    reason: str  # why skipped / failed / errored; empty when passed
    record: dict
    record_path: Path

    @property
    def failure_messages(self) -> list[str]:
        msgs = [c["message"] for c in self.record["checks"] if not c["passed"]]
        failure = self.record.get("failure")
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
    _started: bool = False
    _started_at: str = ""
    _counts: dict = field(default_factory=dict)
    _records: dict = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.results_root = Path(self.results_root).resolve()
        self.hw = hardware.current() if self.profile is None else hardware.profile_named(self.profile)
        self.budgets_dir = Path(self.budgets_dir or Path(__file__).resolve().parent.parent / "cases" / "budgets")
        self._budget_entries = budgets.load_profile(self.budgets_dir, self.hw.name)

    @property
    def run_dir(self) -> Path:
        return self.results_root / self.run_id

    def _manifest(self, finished: bool) -> dict:
        return {"schema_version": SCHEMA_VERSION, "kind": results.MANIFEST_KIND, "run_id": self.run_id,
                "mode": self.mode, "started_at": self._started_at,
                "finished_at": time.strftime("%Y-%m-%dT%H:%M:%S%z") if finished else None,
                "argv": self.argv, "profile": self.hw.name, "environment": env.capture(), "counts": self._counts,
                "records": self._records}

    def start(self) -> None:
        if self._started:
            return
        results.check_run_id(self.run_id)
        self.run_dir.mkdir(parents=True, exist_ok=True)
        self._started_at = time.strftime("%Y-%m-%dT%H:%M:%S%z")
        manifest = self.run_dir / "manifest.json"
        if manifest.exists():  # resuming into a run: keep what it already recorded
            old = results.read_manifest(self.run_dir)
            self._counts, self._records = old.get("counts", {}), old.get("records", {})
            self._started_at = old.get("started_at", self._started_at)
        results.write_json_atomic(manifest, self._manifest(False))
        self._started = True

    def finish(self) -> None:
        if self._started:
            results.write_json_atomic(self.run_dir / "manifest.json", self._manifest(True))

    def run_case(self, case: Case, repeat: int | None = None) -> CaseResult:
        """Run one case; `repeat` defaults to how many records of it the run already holds."""
        self.start()
        if repeat is None:
            repeat = len(self._records.get(case.id, []))
        case = case.with_mode(self.mode)
        workdir = self.run_dir / (case.slug if repeat == 0 else f"{case.slug}.r{repeat}")
        started = time.time()
        missing = env.missing_requirements(case)
        if missing:
            reason = "needs " + "; ".join(missing)
            return self._finish_case(case, "skipped", reason, {}, {}, [], None, None, started, repeat)
        if case.distributed:  # ddp/fsdp: several ranks through accelerate launch, same result file
            outcome = distributed.run(case, workdir, self.timeout_s or case.timeout_s)
        else:
            target, method = runner.entry_point(case)
            if method == "forkserver":
                runner.ensure_started()
            outcome = runner.run_in_child(target, (case, workdir), workdir, self.timeout_s or case.timeout_s,
                                          method=method)
        if not outcome.ok:
            self._drop_outputs(workdir)
            failure = {"kind": outcome.status, "message": outcome.message, "exitcode": outcome.exitcode,
                       "stderr_tail": outcome.stderr_tail}
            return self._finish_case(case, "error", f"{outcome.status}: {outcome.message}", {}, {}, [], None,
                                     failure, started, repeat)
        payload = outcome.payload
        ckpt_dir = Path(payload["checkpoint"]["dir"])
        inv = checkpoint.inventory(ckpt_dir) if ckpt_dir.is_dir() else None
        results_ = checks.run_all(case, payload, inv)
        values = self._metric_values(case, payload, inv)
        if self.mode == "benchmark":
            results_ += budgets.evaluate(self._budget_entries, case.id, values)
        if self.baselines is not None:
            results_ += self.baselines.checks(case, payload, results_, self.run_dir)
        failed = [c for c in results_ if not c.passed]
        status = "failed" if failed else "passed"
        reason = "; ".join(c.message for c in failed)
        self._drop_outputs(workdir)
        return self._finish_case(case, status, reason, payload, values, results_, inv, None, started, repeat)

    def _metric_values(self, case: Case, payload: dict, inv) -> dict[str, float]:
        precision = (payload.get("device") or {}).get("precision", "fp32")
        return metrics.derive(payload, case.checks.loss_window, inv.total_bytes if inv else None,
                              warmup_steps=case.benchmark.warmup_steps,
                              peak_flops=self.hw.peak_flops.get(precision))

    def _budget_summary(self, case: Case) -> dict:
        declared = budgets.applicable(self._budget_entries, case.id)
        summary = {"profile": self.hw.name, "enforced": self.mode == "benchmark" and bool(declared),
                   "declared": [{"field": b.field, "metric": b.metric, "bound": b.bound, "kind": b.kind,
                                 "source": b.source} for b in declared]}
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
        return self.keep_checkpoints == "always" or (self.keep_checkpoints == "auto"
                                                     and nbytes <= KEEP_CHECKPOINT_BYTES)

    def _finish_case(self, case: Case, status: str, reason: str, payload: dict, values: dict[str, float],
                     check_results: list, inv, failure: dict | None, started: float, repeat: int) -> CaseResult:
        ckpt = None
        if inv is not None:
            ckpt = {**inv.to_dict(), "kind": payload["checkpoint"]["kind"],
                    "kept": Path(inv.directory).is_dir(),
                    "directory": str(Path(inv.directory).relative_to(self.results_root.resolve()))
                    if Path(inv.directory).is_relative_to(self.results_root.resolve()) else inv.directory}
        record = {
            "schema_version": SCHEMA_VERSION, "kind": results.RECORD_KIND, "run_id": self.run_id,
            "case_id": case.id, "repeat": repeat, "mode": self.mode, "status": status, "reason": reason or None,
            "markers": list(case.markers), "fingerprint": case.fingerprint, "case": case.to_dict(),
            "started_at": time.strftime("%Y-%m-%dT%H:%M:%S%z", time.localtime(started)),
            "wall_s": round(time.time() - started, 3),
            "metrics": metrics.described(values),
            "loss_curve": payload.get("loss_curve", []),
            "step_times_s": payload.get("step_times_s", []),
            "step_tokens": payload.get("step_tokens", []), "flops": payload.get("flops"),
            "train": payload.get("train"), "params": _params_for_record(payload.get("params")),
            "memory": payload.get("memory"), "timing": payload.get("timing"), "device": payload.get("device"),
            "checkpoint": ckpt, "reload": payload.get("reload"), "resolved": payload.get("resolved"),
            "checks": [c.to_dict() for c in check_results],
            "budgets": self._budget_summary(case),
            "failure": failure, "warnings": payload.get("warnings", []),
            "environment": env.capture(),
        }
        path = results.record_path(self.run_dir, case.slug)
        results.write_json_atomic(path, record)
        self._counts[status] = self._counts.get(status, 0) + 1
        self._records.setdefault(case.id, []).append(path.name)
        results.write_json_atomic(self.run_dir / "manifest.json", self._manifest(False))
        return CaseResult(case, status, reason, record, path)


def _params_for_record(params: dict | None) -> dict | None:
    if params is None:
        return None
    out = dict(params)
    keys = out.pop("state_dict_keys", None)
    if keys is not None:
        out["state_dict_tensors"] = len(keys)
    return out
