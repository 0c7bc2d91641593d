"""Golden loss curves: reference curves of the tiny deterministic cases, pytest-regressions style.

One file per case, hardware profile and kernel class (suite/kernelclass.py),
`results/baselines/<profile>/<class>/<case-slug>.json`, written so that a diff shows one step per line.
A class without a reference of its own is compared with the nearest class that has one, within the
cross-class band measured for the case's method (suite/judge/bands.py), and the verdict says so. A
reference names the machines and runs it comes from (suite/judge/machines.py): one machine's is
provisional, judged within the spread measured between the class's machines for its method family (or
the cross-class band where none was measured), and the verdict says "provisional: one machine".
A missing baseline is written and the check fails; the `--update-baselines` option rewrites
deliberately; a baseline recorded for another fingerprint is another configuration and fails saying
how to update; a mismatch leaves the obtained curve next to the run's records
(`<slug>/obtained-curve.json`) and the message names both files.
"""
from __future__ import annotations

import json
import math
import time
from dataclasses import dataclass, field
from pathlib import Path

from suite import versions
from suite.versions import differences_from_lock
from suite.errors import RecordError
from suite.judge import bands as cross_class
from suite import kernelclass
from suite.judge import machines
from suite.judge.checks import CheckResult
from suite.matrix.spec import Case
from suite.paths import LOCK_FILE, display
from suite.records import provenance
from suite.records.results import read_document

KIND = "ftsuite.baseline-curve"
OBTAINED_KIND = "ftsuite.obtained-curve"
SCHEMA_VERSION = 1
CHECK_NAME = "golden_curve"
RECORDED_PACKAGES = versions.STACK


def curve_moved(check: dict) -> bool:
    """A recorded check saying the loss curve left its golden curve: the golden-curve check failed with a
    measured difference. Its other failures (no reference, another configuration, a check that raised)
    carry no value and name their own cause (the reports tell the two apart: suite/report/causes.py)."""
    value = check.get("value")
    return (check.get("name") == CHECK_NAME and check.get("passed") is False
            and isinstance(value, (int, float)) and not isinstance(value, bool))


def current_profile() -> str:
    """The hardware profile baselines are kept under, the same names budgets use
    (suite/judge/hardware.py): "cpu" without a CUDA GPU, else e.g. "h200-141gb"."""
    from suite.judge.hardware import current

    return current().name


def _points(loss_curve: list[dict]) -> list[dict]:
    return [{"step": int(p["step"]), "loss": float(p["loss"])} for p in loss_curve]


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
    """Every logged loss within atol + rtol x |baseline| of the baseline at the same step, and the
    mean residual (obtained - baseline, over every step) within `drift`.

    The per-step bound has to absorb another CPU's rounding at its worst step; the mean residual
    of that rounding is far smaller, while a systematic change of the loss (a new normalisation, a
    shifted label) moves every step the same way: the drift bound sees shifts the per-step bound
    lets through (TRL's invariant tests judge mean residuals the same way)."""

    rtol: float
    atol: float
    drift: float = math.inf

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
        lines = [f"step {s:>4}: baseline {ref[s]:.6f}  obtained {got[s]:.6f}  diff {d:.3g} > allowed {a:.3g}"
                 for d, s, a in sorted(bad, reverse=True)]
        residual = self.mean_residual(obtained, reference)
        if math.isfinite(residual) and abs(residual) > self.drift:  # a NaN step already failed above
            lines.insert(0, f"mean residual {residual:+.3g} over {len(ref)} steps > allowed drift {self.drift:.3g} "
                            f"(the whole curve moved {'up' if residual > 0 else 'down'})")
        return lines

    @staticmethod
    def mean_residual(obtained: list[dict], reference: list[dict]) -> float:
        ref = {p["step"]: p["loss"] for p in reference}
        diffs = [p["loss"] - ref[p["step"]] for p in obtained if p["step"] in ref]
        return sum(diffs) / len(diffs) if diffs else math.nan


@dataclass
class BaselineStore:
    """The baselines of one profile, per kernel class, and what this run did to them (listed at the end)."""

    root: Path  # results/baselines
    update: bool = False
    profile: str = field(default_factory=current_profile)
    events: list[str] = field(default_factory=list)
    _spread_cache: dict[str, dict[str, machines.Spread]] = field(default_factory=dict, repr=False)

    def class_dir(self, klass: str) -> Path:
        return Path(self.root) / self.profile / klass

    def path_for(self, case: Case, klass: str) -> Path:
        return self.class_dir(klass) / f"{case.slug}.json"

    def classes_with(self, case: Case) -> list[kernelclass.KernelClass]:
        """The kernel classes of this profile that hold a reference for the case, with their features."""
        base = Path(self.root) / self.profile
        found = []
        for d in sorted(p for p in base.iterdir() if p.is_dir()) if base.is_dir() else []:
            ref = d / f"{case.slug}.json"
            if ref.is_file():
                found.append(kernelclass.of_reference(read_curve(ref), folder=d.name))
        return found

    def applies(self, case: Case) -> bool:
        """Golden curves are for tiny cases in regression mode (benchmark runs and 7B have none)."""
        return case.model.scale.built and case.mode == "regression"

    def checks(self, case: Case, loss_curve: list[dict], prior: list[CheckResult], run_dir: Path,
               klass: kernelclass.KernelClass) -> list[CheckResult]:
        """The golden-curve check of a case that ran (none when the case has no golden curve); klass:
        the run's kernel class (computed once, suite/judge/judging.py): it picks the reference, and it
        and the kernels it was derived from are recorded with the curve."""
        if not self.applies(case):
            return []
        points, path = _points(loss_curve), self.path_for(case, klass.name)
        failed = [c.name for c in prior if not c.passed]
        if not points:
            return [self._result(False, f"{case.id}: no loss curve to compare with {display(path)}")]
        if not self.update and not path.exists():
            nearest = kernelclass.nearest(klass, self.classes_with(case))
            if nearest is not None:
                return [self._compare_across(case, points, klass, nearest, run_dir)]
        if self.update or not path.exists():
            if failed:
                return [self._result(False, f"{case.id}: no golden curve written to {display(path)}: the case failed "
                                            f"{', '.join(failed)}, and a failing run is no reference")]
            existed = path.exists()
            self._write(path, case, points, klass, measured_of(prior), run_dir)
            self.events.append(f"{'rewrote' if existed else 'wrote'} {display(path)}")
            if self.update:
                return [self._result(True, f"{case.id}: golden curve {'rewritten' if existed else 'written'} "
                                           f"(--update-baselines) for kernel class {klass.name}: {display(path)}")]
            return [self._result(False, f"{case.id}: no golden curve for profile {self.profile!r} in any kernel "
                                        f"class; wrote {display(path)} (class {klass.name}) from this run. Review "
                                        f"it, commit it and rerun (a new baseline never passes on the run that "
                                        f"wrote it)")]
        check, how = self._own_check(case, path, klass.name)
        return [self._compare(case, points, path, run_dir, klass, check, how)]

    def _own_check(self, case: Case, path: Path, klass: str) -> tuple[CurveMatches, str]:
        """The tolerance of a class's own reference: the case's own where two machines or more confirmed it
        within it; the case's own plus the spread measured between its machines where they differ by
        more; one machine's (provisional): plus the class's spread between machines for the case's
        family, else plus the cross-class band for its method."""
        doc = read_curve(path)
        prov = machines.of_reference(doc, display(path))
        own = CurveMatches(case.checks.curve_rtol, case.checks.curve_atol, case.checks.curve_drift)
        head = f"kernel class {klass}'s own reference"
        if prov.confirmed:
            floor = min((abs(p["loss"]) for p in doc["curve"]), default=0.0)
            if prov.atol <= own.atol + own.rtol * floor and prov.drift <= own.drift:
                return own, (f"{head}, confirmed by {prov.describe()}: they differ by at most {prov.atol:.3g} per "
                             f"step, drift {prov.drift:.3g}")
            return _widened(own, prov.atol, prov.drift), (
                f"{head}, confirmed by {prov.describe()}, which differ by more than the case's tolerance: within "
                f"the spread measured between them (per step +{prov.atol:.3g}, drift +{prov.drift:.3g})")
        family = machines.family_of(case)
        head += f", provisional: one machine ({prov.machines[0].machine.cpu}, {prov.runs} run{'s' * (prov.runs != 1)})"
        spread = self._spreads(klass).get(family)
        if spread is not None:
            return _widened(own, spread.atol, spread.drift), (
                f"{head}; within the spread between machines of class {klass} for {family} ({spread.describe()})")
        band = cross_class.load(self.root, self.profile).for_check(case.method, CHECK_NAME)
        if band is not None:
            return _widened(own, band.atol, band.drift), (
                f"{head}; no spread measured between machines of class {klass} for {family}: within the "
                f"cross-class band for {case.method} (per step +{band.atol:.3g}, drift +{band.drift:.3g}; "
                f"{band.source})")
        return own, (f"{head}; no spread between machines of class {klass} for {family} and no cross-class band for "
                     f"{case.method} measured: the case's own tolerance")

    def _spreads(self, klass: str) -> dict[str, machines.Spread]:
        """The class's spreads between machines per family, from its references (read once per store)."""
        if klass not in self._spread_cache:
            refs = []
            for f in sorted(self.class_dir(klass).glob("*.json")) if self.class_dir(klass).is_dir() else []:
                if f.name != cross_class.CLASS_FILE:
                    doc = read_curve(f)
                    refs.append((doc, machines.of_reference(doc, display(f))))
            self._spread_cache[klass] = machines.spreads(refs)
        return self._spread_cache[klass]

    def _compare_across(self, case: Case, points: list[dict], klass: kernelclass.KernelClass,
                        nearest: kernelclass.KernelClass, run_dir: Path) -> CheckResult:
        """No reference of this class: the nearest class's, within its measured cross-class band."""
        path = self.path_for(case, nearest.name)
        band = cross_class.load(self.root, self.profile).for_check(case.method, CHECK_NAME)
        if band is None:
            return self._result(False, f"{case.id}: no reference for kernel class {klass.name}, and no cross-class "
                                       f"band measured for method {case.method} to compare it with class "
                                       f"{nearest.name}'s ({display(path)}). Record this class's references "
                                       f"(docs/kernel-classes.md)")
        check = CurveMatches(case.checks.curve_rtol, case.checks.curve_atol + band.atol,
                             case.checks.curve_drift + band.drift)
        how = (f"no reference for kernel class {klass.name}; compared with class {nearest.name} within the "
               f"measured cross-class band for {case.method} (per step +{band.atol:.3g}, drift +{band.drift:.3g}; "
               f"{band.source})")
        return self._compare(case, points, path, run_dir, klass, check, how)

    def _compare(self, case: Case, points: list[dict], path: Path, run_dir: Path, klass: kernelclass.KernelClass,
                 check: CurveMatches, how: str) -> CheckResult:
        ref = read_curve(path)
        if ref.get("fingerprint") != case.fingerprint:
            obtained = self._write_obtained(run_dir, case, points, path, klass)
            self.events.append(f"other configuration {case.id}: {display(path)} (obtained: {display(obtained)})")
            return self._result(False, f"{case.id}: baseline {display(path)} was recorded for fingerprint "
                                       f"{ref.get('fingerprint')} (another configuration of this case); this run "
                                       f"is {case.fingerprint}. Obtained curve: {display(obtained)}. If the configuration "
                                       f"changed on purpose, rerun with --update-baselines and commit the file")
        bad = check.mismatches(points, ref["curve"])
        ref_losses = {p["step"]: p["loss"] for p in ref["curve"]}
        worst = max((abs(p["loss"] - ref_losses[p["step"]]) for p in points if p["step"] in ref_losses),
                    default=math.inf)
        residual = check.mean_residual(points, ref["curve"])
        bounds = f"rtol {check.rtol:g}, atol {check.atol:g}, drift {check.drift:g}"
        if not bad:
            return self._result(True, f"{case.id}: loss curve matches {display(path)} ({how}; {len(points)} steps, "
                                      f"max abs diff {worst:.3g}, mean residual {residual:+.3g}; {bounds})", worst)
        obtained = self._write_obtained(run_dir, case, points, path, klass)
        self.events.append(f"mismatch {case.id}: {display(path)} vs {display(obtained)}")
        steps = [b for b in bad if b.startswith("step ")]
        what = (f"at {len(steps)} of {len(points)} steps" if steps else
                f"by a drift of the whole curve (mean residual {residual:+.3g})")
        shown = "\n    ".join(bad[:6]) + (f"\n    ... and {len(bad) - 6} more" if len(bad) > 6 else "")
        return self._result(False, f"{case.id}: loss curve differs from its golden curve {what} ({how}; {bounds})\n"
                                   f"    {differences(ref, self._provenance(klass))}\n"
                                   f"    baseline: {display(path)}\n    obtained: {display(obtained)}\n    {shown}", worst)

    @staticmethod
    def _provenance(klass: kernelclass.KernelClass) -> dict:
        """What decides a curve's last digits: the packages, and the CPU and kernels it ran on."""
        return provenance_of(provenance.capture(), klass)

    def _head(self, kind: str, case: Case, klass: kernelclass.KernelClass, measured: dict | None = None) -> dict:
        return reference_head(kind, case, self.profile, klass, provenance.capture(), measured,
                              time.strftime("%Y-%m-%dT%H:%M:%S%z"))

    def _write(self, path: Path, case: Case, points: list[dict], klass: kernelclass.KernelClass,
               measured: dict | None, run_dir: Path) -> None:
        """A reference of this machine and this run only: a rewritten curve drops the machines that
        confirmed the old one."""
        head = self._head(KIND, case, klass, measured)
        run = machines.Run(Path(run_dir).name, display(run_dir), head["recorded_at"], 0.0, 0.0)
        this = machines.machine_of(provenance.capture())
        head[machines.FIELD] = machines.Provenance((machines.MachineRuns(this, (run,)),)).to_dict()
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(dumps_curve(head, points))
        self._spread_cache.pop(path.parent.name, None)

    def _write_obtained(self, run_dir: Path, case: Case, points: list[dict], baseline: Path,
                        klass: kernelclass.KernelClass) -> Path:
        # inside the case's folder, beside its log: the run folder's top level holds records only
        out = Path(run_dir) / case.slug / "obtained-curve.json"
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(dumps_curve({**self._head(OBTAINED_KIND, case, klass), "baseline": str(baseline)}, points))
        return out

    @staticmethod
    def _result(passed: bool, message: str, value: float | None = None) -> CheckResult:
        return CheckResult(CHECK_NAME, passed, message, value=value)


# The tight numbers of the run a reference was recorded from, kept beside its curve: what the
# cross-class bands (suite/judge/bands.py) are measured from.
MEASURED_CHECKS = ("reload_logits", "reference_untouched")


def measured_of(results: list[CheckResult]) -> dict:
    return {c.name: c.value for c in results if c.name in MEASURED_CHECKS and c.value is not None}


def provenance_of(captured: dict, klass: kernelclass.KernelClass) -> dict:
    """The packages, and the CPU and kernels a curve ran on, from a run's environment (provenance.capture)."""
    return {"packages": {k: (captured.get("packages") or {}).get(k) for k in RECORDED_PACKAGES},
            "hardware": hardware_of(captured, klass)}


def reference_head(kind: str, case: Case, profile: str, klass: kernelclass.KernelClass, captured: dict,
                   measured: dict | None, recorded_at: str, **extra) -> dict:
    """The header of a reference (or obtained) curve: the case, its class, its environment, its tolerances."""
    return {"kind": kind, "schema_version": SCHEMA_VERSION, "case_id": case.id,
            "fingerprint": case.fingerprint, "profile": profile, "family": machines.family_of(case),
            "kernel_class": klass.name, "kernel_features": klass.feature_map,
            "tolerance": {"rtol": case.checks.curve_rtol, "atol": case.checks.curve_atol,
                          "drift": case.checks.curve_drift},
            **provenance_of(captured, klass),
            **({"measured": measured} if measured else {}),
            **extra, "recorded_at": recorded_at}


def _widened(check: CurveMatches, atol: float, drift: float) -> CurveMatches:
    return CurveMatches(check.rtol, check.atol + atol, check.drift + drift)


def hardware_of(captured: dict, klass: kernelclass.KernelClass) -> dict:
    """The hardware fields of a curve's provenance, flat and comparable: the class, and the facts it was
    derived from (its `kernels`)."""
    cpu = captured.get("cpu") or {}
    kernels = klass.kernels
    bnb = kernels.get("bitsandbytes") or {}
    return {"kernel_class": klass.name,
            "cpu": " ".join(str(v) for v in (cpu.get("vendor"), cpu.get("model")) if v) or None,
            "cpu_flags": " ".join(cpu.get("flags") or []) or None,
            "torch_cpu_capability": kernels.get("torch_cpu_capability") or (captured.get("torch") or {}).get(
                "cpu_capability"),
            "bitsandbytes_backend": ", ".join(f"{k} {v}" for k, v in bnb.items() if v is not None) or None,
            "python": captured.get("python")}


def differences(ref: dict, now: dict) -> str:
    """Every difference between the baseline curve's environment and this run's, hardware included."""
    changed = [f"{k} {v} -> {now['packages'].get(k)}" for k, v in (ref.get("packages") or {}).items()
               if now["packages"].get(k) != v]
    recorded = ref.get("hardware")
    if recorded is not None:
        recorded = {"kernel_class": kernelclass.of_reference(ref).name, **recorded}
    if recorded is None:
        changed.append("hardware unknown (the baseline was recorded before curves recorded their CPU and kernels; "
                       f"this run: {', '.join(f'{k} {v}' for k, v in now['hardware'].items() if v)})")
    else:
        changed += [f"{k} {recorded.get(k)} -> {v}" for k, v in now["hardware"].items() if recorded.get(k) != v]
    if not changed:
        return ("no difference from the baseline's packages or hardware: the training itself changed "
                "(or is not deterministic)")
    return "differences from the baseline's environment: " + "; ".join(changed) + _lock_note(now["packages"])


def _lock_note(packages: dict) -> str:
    """Where the installed stack is not the control lock's, say how to get the references' stack."""
    off = differences_from_lock(packages)
    if not off:
        return ""
    return (f" (not the control stack: {', '.join(off)}; install through {display(LOCK_FILE)} "
            f"to reproduce the references)")
