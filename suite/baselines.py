"""Golden loss curves: reference curves of the tiny deterministic cases, pytest-regressions style.

One file per case and hardware profile, `results/baselines/<profile>/<case-slug>.json`, written so
that a diff shows one step per line. A missing baseline is written and the check fails; the
`--update-baselines` option rewrites deliberately; a baseline recorded for another fingerprint is
another configuration and fails saying how to update; a mismatch leaves the obtained curve next to
the run's records (`<slug>/obtained-curve.json`) and the message names both files.
"""
from __future__ import annotations

import json
import math
import time
from dataclasses import dataclass, field
from pathlib import Path

from suite import env
from suite.cases import Case
from suite.checks import CheckResult
from suite.errors import RecordError
from suite.results import read_document

KIND = "ftsuite.baseline-curve"
OBTAINED_KIND = "ftsuite.obtained-curve"
SCHEMA_VERSION = 1
CHECK_NAME = "golden_curve"
RECORDED_PACKAGES = ("torch", "transformers", "trl", "peft", "accelerate", "datasets", "bitsandbytes")


def current_profile() -> str:
    """The hardware profile baselines are kept under, the same names budgets use
    (suite/hardware.py): "cpu" without a CUDA GPU, else e.g. "h200-141gb"."""
    from suite.hardware import current

    return current().name


def _show(path: Path) -> str:
    """A path as messages show it: relative to the working directory when inside it."""
    try:
        return str(Path(path).resolve().relative_to(Path.cwd()))
    except ValueError:
        return str(path)


def _points(payload: dict) -> list[dict]:
    return [{"step": int(p["step"]), "loss": float(p["loss"])} for p in payload.get("loss_curve", [])]


def dumps_curve(head: dict, points: list[dict]) -> str:
    """JSON with the header fields first and one `{"step", "loss"}` per line (diff-friendly)."""
    body = json.dumps(head, indent=1)
    lines = ",\n".join("  " + json.dumps(p) for p in points)
    return body[:-2] + ',\n "curve": [\n' + lines + "\n ]\n}\n"


def read_curve(path: Path) -> dict:
    doc = read_document(path, KIND, "baseline curve", SCHEMA_VERSION)
    if not isinstance(doc.get("curve"), list):
        raise RecordError(str(path), "field curve: missing or not a list")
    return doc


@dataclass(frozen=True)
class CurveMatches:
    """Every logged loss within atol + rtol x |baseline| of the baseline at the same step."""

    rtol: float
    atol: float

    def mismatches(self, obtained: list[dict], reference: list[dict]) -> list[str]:
        """Lines describing where the curves disagree (empty when they match), worst first."""
        ref = {p["step"]: p["loss"] for p in reference}
        got = {p["step"]: p["loss"] for p in obtained}
        if set(ref) != set(got):
            return [f"logged steps differ: baseline has {len(ref)} (steps {min(ref, default=0)}.."
                    f"{max(ref, default=0)}), this run {len(got)} (steps {min(got, default=0)}..{max(got, default=0)})"]
        bad = []
        for step in sorted(ref):
            diff, allowed = abs(got[step] - ref[step]), self.atol + self.rtol * abs(ref[step])
            if not diff <= allowed:  # NaN fails too
                bad.append((diff if math.isfinite(diff) else math.inf, step, allowed))
        return [f"step {s:>4}: baseline {ref[s]:.6f}  obtained {got[s]:.6f}  diff {d:.3g} > allowed {a:.3g}"
                for d, s, a in sorted(bad, reverse=True)]


@dataclass
class BaselineStore:
    """The baselines of one profile, and what this run did to them (listed at the end of the run)."""

    root: Path  # results/baselines
    update: bool = False
    profile: str = field(default_factory=current_profile)
    events: list[str] = field(default_factory=list)

    def path_for(self, case: Case) -> Path:
        return Path(self.root) / self.profile / f"{case.slug}.json"

    def applies(self, case: Case) -> bool:
        """Golden curves are for tiny cases in regression mode (benchmark runs and 7B have none)."""
        return case.model.size == "tiny" and case.mode == "regression"

    def checks(self, case: Case, payload: dict, prior: list[CheckResult], run_dir: Path) -> list[CheckResult]:
        """The golden-curve check of a case that ran (none when the case has no golden curve)."""
        if not self.applies(case):
            return []
        points, path = _points(payload), self.path_for(case)
        failed = [c.name for c in prior if not c.passed]
        if not points:
            return [self._result(False, f"{case.id}: no loss curve to compare with {_show(path)}")]
        if self.update or not path.exists():
            if failed:
                return [self._result(False, f"{case.id}: no golden curve written to {_show(path)}: the case failed "
                                            f"{', '.join(failed)}, and a failing run is no reference")]
            existed = path.exists()
            self._write(path, case, points)
            self.events.append(f"{'rewrote' if existed else 'wrote'} {_show(path)}")
            if self.update:
                return [self._result(True, f"{case.id}: golden curve {'rewritten' if existed else 'written'} "
                                           f"(--update-baselines): {_show(path)}")]
            return [self._result(False, f"{case.id}: no golden curve for profile {self.profile!r}; wrote {_show(path)} "
                                        f"from this run. Review it, commit it and rerun (a new baseline never "
                                        f"passes on the run that wrote it)")]
        return [self._compare(case, points, path, run_dir)]

    def _compare(self, case: Case, points: list[dict], path: Path, run_dir: Path) -> CheckResult:
        ref = read_curve(path)
        if ref.get("fingerprint") != case.fingerprint:
            obtained = self._write_obtained(run_dir, case, points, path)
            self.events.append(f"other configuration {case.id}: {_show(path)} (obtained: {_show(obtained)})")
            return self._result(False, f"{case.id}: baseline {_show(path)} was recorded for fingerprint "
                                       f"{ref.get('fingerprint')} (another configuration of this case); this run "
                                       f"is {case.fingerprint}. Obtained curve: {_show(obtained)}. If the configuration "
                                       f"changed on purpose, rerun with --update-baselines and commit the file")
        check = CurveMatches(case.checks.curve_rtol, case.checks.curve_atol)
        bad = check.mismatches(points, ref["curve"])
        ref_losses = {p["step"]: p["loss"] for p in ref["curve"]}
        worst = max((abs(p["loss"] - ref_losses[p["step"]]) for p in points if p["step"] in ref_losses),
                    default=math.inf)
        if not bad:
            return self._result(True, f"{case.id}: loss curve matches {_show(path)} ({len(points)} steps, max abs diff "
                                      f"{worst:.3g}, rtol {check.rtol:g}, atol {check.atol:g})", worst)
        obtained = self._write_obtained(run_dir, case, points, path)
        self.events.append(f"mismatch {case.id}: {_show(path)} vs {_show(obtained)}")
        shown = "\n    ".join(bad[:5]) + (f"\n    ... and {len(bad) - 5} more steps" if len(bad) > 5 else "")
        return self._result(False, f"{case.id}: loss curve differs from its golden curve at {len(bad)} of "
                                   f"{len(points)} steps (rtol {check.rtol:g}, atol {check.atol:g}){_versions(ref)}\n"
                                   f"    baseline: {_show(path)}\n    obtained: {_show(obtained)}\n    {shown}", worst)

    def _head(self, kind: str, case: Case) -> dict:
        packages = env.capture()["packages"]
        return {"kind": kind, "schema_version": SCHEMA_VERSION, "case_id": case.id,
                "fingerprint": case.fingerprint, "profile": self.profile,
                "tolerance": {"rtol": case.checks.curve_rtol, "atol": case.checks.curve_atol},
                "packages": {k: packages.get(k) for k in RECORDED_PACKAGES},
                "recorded_at": time.strftime("%Y-%m-%dT%H:%M:%S%z")}

    def _write(self, path: Path, case: Case, points: list[dict]) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(dumps_curve(self._head(KIND, case), points))

    def _write_obtained(self, run_dir: Path, case: Case, points: list[dict], baseline: Path) -> Path:
        # inside the case's folder, beside its log: the run folder's top level holds records only
        out = Path(run_dir) / case.slug / "obtained-curve.json"
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(dumps_curve({**self._head(OBTAINED_KIND, case), "baseline": str(baseline)}, points))
        return out

    @staticmethod
    def _result(passed: bool, message: str, value: float | None = None) -> CheckResult:
        return CheckResult(CHECK_NAME, passed, message, value=value)


def _versions(ref: dict) -> str:
    """`; baseline recorded with trl 1.16.0, now 1.17.0` for the packages that changed since."""
    now = env.capture()["packages"]
    changed = [f"{k} {v} -> {now.get(k)}" for k, v in (ref.get("packages") or {}).items() if now.get(k) != v]
    return f"; packages changed since the baseline: {', '.join(changed)}" if changed else ""
