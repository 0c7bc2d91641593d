"""References per kernel class: import another machine's run as its class's golden curves, and
measure the cross-class bands from the classes at hand (docs/kernel-classes.md).

    python -m suite references import RUN_DIR... --label NAME   # another machine's regression run(s)
    python -m suite references bands                           # results/baselines/<profile>/bands.json
    python -m suite references record                          # this machine's class, from a fresh run

An import keeps a copy of the run's records under tests/fixtures/machines/<label>/ (the replay test
judges them again with today's checks) and every imported reference names that copy.
"""
from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

from suite.errors import SuiteError
from suite.judge import bands, baselines, kernelclass
from suite.cases import load_cases
from suite.matrix.spec import Case
from suite.paths import ROOT, TESTS, display
from suite.records import results, runs
from suite.records.record import CaseRecord
from suite.tools import lock

MACHINES = TESTS / "fixtures" / "machines"
# Checks a record may have failed and still be its class's reference: those that compared it with
# another class's references (the curve, the budgets), and those whose definition or bound is per
# class now (suite/judge/checks.py: the reload bound, the reference measured on one model object).
CLASS_RELATIVE = ("golden_curve", "reload_logits", "reference_untouched")


class ReferenceError(SuiteError):
    """A run cannot become references; the message names the file and the reason."""


def _copy_run(run: runs.Run, dest: Path) -> Path:
    """The records and the manifest of a run (no checkpoints, logs or probes): what a replay reads."""
    dest.mkdir(parents=True, exist_ok=True)
    for src in sorted(run.path.glob("*.json")):
        shutil.copy2(src, dest / src.name)
    return dest


def importable(record: CaseRecord, case: Case | None) -> str | None:
    """Why a record cannot be its class's reference (None: it can)."""
    if case is None:
        return f"case {record.case_id} is not in today's matrix"
    if record.mode != "regression" or not record.measured:
        return f"a {record.mode} record that {record.status} (references come from regression runs)"
    if record.fingerprint != case.fingerprint:
        return f"fingerprint {record.fingerprint} is not today's {case.fingerprint} (another configuration)"
    failed = [c["name"] for c in record.failed_checks]
    other = [n for n in failed if n not in CLASS_RELATIVE and not n.startswith("budget:")]
    if other:
        return f"it failed {', '.join(other)}, which no kernel class explains: a failing run is no reference"
    off = lock.differences_from_lock(record.packages)
    if off:
        return f"its stack is not the control lock's ({', '.join(off)})"
    if not record.loss_curve:
        return "it has no loss curve"
    return None


def import_runs(run_dirs: list[str], label: str, root: Path, profile: str, cases_dir: Path,
                copy_root: Path = MACHINES) -> list[str]:
    """Write each importable record of the runs as its class's reference; return what was done."""
    cases = {c.id: c for c in load_cases(cases_dir) if c.model.size == "tiny"}
    lines, written = [], 0
    for arg in run_dirs:
        run = runs.load(arg)
        if run.errors:
            raise ReferenceError("; ".join(str(e) for e in run.errors))
        copy = _copy_run(run, copy_root / label / run.path.name)
        for file in sorted(f for f in run.path.glob("*.json") if f.name != "manifest.json"):
            record = results.read_record(file)
            case = cases.get(record.case_id)
            why = importable(record, case)
            if why:
                if record.status != "skipped":
                    lines.append(f"left out {record.case_id}: {why}")
                continue
            if (record.budgets or {}).get("profile", profile) != profile:
                raise ReferenceError(f"{run.path}: recorded on profile {record.profile}, not {profile}")
            kernels = record.kernels
            klass = kernelclass.of_kernels(kernels)
            reload = record.reload_diff
            head = baselines.reference_head(
                baselines.KIND, case, profile, kernels, record.environment,
                {"reload_logits": reload} if reload is not None else None,
                record.started_at or "", imported_from=f"{display(copy)}/{file.name}")
            path = root / profile / klass.name / f"{case.slug}.json"
            path.parent.mkdir(parents=True, exist_ok=True)
            points = [{"step": int(p["step"]), "loss": float(p["loss"])} for p in record.loss_curve]
            path.write_text(baselines.dumps_curve(head, points))
            written += 1
        lines.append(f"{run.path.name}: records copied to {display(copy)}")
    lines.append(f"wrote {written} reference(s) under {display(root / profile)}")
    return lines


def references_by_class(root: Path, profile: str, cases_dir: Path) -> dict[str, dict[str, dict]]:
    """{class: {slug: reference document with its case's method}} of one profile."""
    method = {c.slug: c.method for c in load_cases(cases_dir)}
    out: dict[str, dict[str, dict]] = {}
    base = root / profile
    for d in sorted(p for p in base.iterdir() if p.is_dir()) if base.is_dir() else []:
        for f in sorted(d.glob("*.json")):
            if f.stem in method:
                out.setdefault(d.name, {})[f.stem] = {**baselines.read_curve(f), "method": method[f.stem]}
    return out


def measure_bands(root: Path, profile: str, cases_dir: Path) -> tuple[Path, dict]:
    refs = references_by_class(root, profile, cases_dir)
    if len(refs) < 2:
        raise ReferenceError(f"{display(root / profile)}: bands need the references of two kernel classes, found "
                             f"{', '.join(refs) or 'none'}")
    doc = bands.measure(refs)
    path = bands.path_of(root, profile)
    path.write_text(json.dumps(doc, indent=1) + "\n")
    return path, doc


def record(run_id: str, extra: list[str]) -> int:
    """This machine's class's references: the tiny matrix in regression mode with --update-baselines."""
    cmd = [sys.executable, "-m", "suite", "run", "-m", "tiny and not gpu", "--update-baselines", "--run-id", run_id,
           *extra]
    print("+ " + " ".join(cmd), file=sys.stderr)
    return subprocess.run(cmd, cwd=ROOT).returncode


def render_bands(doc: dict) -> str:
    lines = [f"cross-class bands between {' and '.join(doc['classes'])}:",
             "| method | check | per step | drift | value | cases | worst |", "|---|---|---:|---:|---:|---:|---|"]
    for method, checks in sorted(doc["bands"].items()):
        for check, e in sorted(checks.items()):
            lines.append(f"| {method} | {check} | {e.get('atol', '')} | {e.get('drift', '')} | {e.get('value', '')} "
                         f"| {e['cases']} | {e['worst_case']} |")
    return "\n".join(lines)


def _two_digits_up(x: float) -> float:
    from suite.judge.calibrate import two_digits

    return two_digits(x, up=True)  # as budgets round: never tighter than measured


def derive_class_bounds(run_args: list[str], root: Path, profile: str, cases_dir: Path,
                        margin: float = 0.5) -> tuple[Path, dict]:
    """The kernel class's own bounds for the tight checks, from its runs (regression and benchmark):
    for each check and method whose worst measured value exceeds the cases' declared bound, the worst
    x (1 + margin). Written to results/baselines/<profile>/<class>/class.json."""
    cases = {c.id: c for c in load_cases(cases_dir)}
    worst: dict[tuple[str, str], tuple[float, str]] = {}
    classes, run_names = set(), []
    for arg in run_args:
        run = runs.load(arg)
        run_names.append(f"{run.path.parent.name}/{run.path.name}")
        for rec in run.records:
            case = cases.get(rec.case_id)
            if case is None or not rec.measured:
                continue
            classes.add(kernelclass.of_record(rec).name)
            ref = rec.reference or {}
            values = {"reload_logits": ((rec.reload or {}).get("max_abs_logit_diff"), case.checks.logits_atol)}
            if ref.get("repacked"):  # only the new definition's numbers, and only where the kernels changed
                values["reference_untouched"] = (ref.get("max_abs_logit_diff"), case.checks.reference_atol)
            for check, (value, declared) in values.items():
                if isinstance(value, (int, float)) and value > declared:
                    key = (check, case.method)
                    if value > worst.get(key, (-1.0, ""))[0]:
                        worst[key] = (float(value), f"{case.id}, {rec.mode}")
    if len(classes) != 1:
        raise ReferenceError(f"class bounds come from one kernel class's runs; these hold {sorted(classes) or 'none'}")
    name = classes.pop()
    bounds: dict[str, dict] = {}
    for (check, m), (value, where) in sorted(worst.items()):
        bounds.setdefault(check, {})[m] = {"bound": _two_digits_up(value * (1 + margin)), "worst": value,
                                           "case": where, "margin": margin,
                                           "measured_on": "runs " + ", ".join(run_names)}
    doc = {"kind": bands.CLASS_KIND, "schema_version": 1, "name": name,
           "how": f"per check and method where the worst value measured on this class exceeds the declared bound: "
                  f"worst x (1 + {margin:g}), two digits rounded up (python -m suite references class-bounds)",
           "bounds": bounds}
    path = root / profile / name / bands.CLASS_FILE
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(doc, indent=1) + "\n")
    return path, doc


# What a replay leaves out: reference_untouched's definition changed on 2026-12-05 (before/after on one
# model object, not against a fresh load), so older numbers mean something else; timing budgets are
# replayed (they were measured on these machines) but their breach on a loaded machine is not a fault.
REPLAY_LEFT_OUT = {"reference_untouched": "its definition changed (before/after training on one model object); "
                                          "numbers recorded before measure another thing"}


def replay(run_dir: Path, root: Path, cases_dir: Path, budgets_dir: Path, scratch: Path) -> tuple[int, list[str]]:
    """Judge a kept run folder again with today's checks, references, bands, class bounds and budgets,
    without training: (records judged, problems). What keeps its meaning is judged (the loss falling,
    the golden curve, the reload difference, memory, counted work and the other budgets)."""
    from suite.judge import budgets as budget_mod
    from suite.judge import checks

    cases = {c.id: c for c in load_cases(cases_dir)}
    entries = budget_mod.load_profile(budgets_dir, "cpu")
    store = baselines.BaselineStore(root, profile="cpu")
    judged, problems = 0, []
    for rec in runs.load(run_dir).records:
        case = cases.get(rec.case_id)
        if case is None or not rec.measured or case.model.size != "tiny":
            continue
        case = case.with_mode(rec.mode)
        if rec.fingerprint != case.fingerprint:
            problems.append(f"{rec.case_id}: recorded under fingerprint {rec.fingerprint}, today "
                            f"{case.fingerprint}: re-record the fixture")
            continue
        kernels = rec.kernels
        klass = kernelclass.of_kernels(kernels)
        results = [checks.LossDecreases(case.checks.loss_window, case.checks.loss_margin).evaluate(
            case.id, [p["loss"] for p in rec.loss_curve])]
        reload = (rec.reload or {}).get("max_abs_logit_diff")
        if reload is not None:
            check = checks.reload_check(case, bands.class_bounds(root, "cpu", klass.name))
            results.append(check.evaluate(case.id, float(reload), rec.reload["loader"]))
        results += store.checks(case, rec.loss_curve, [], scratch, kernels)
        if rec.mode == "benchmark":
            results += budget_mod.evaluate(entries, case.id, rec.metric_table(), klass)
        judged += 1
        problems += [f"{rec.case_id} ({rec.mode}, class {klass.name}): {r.message}" for r in results
                     if not r.passed]
    return judged, problems
