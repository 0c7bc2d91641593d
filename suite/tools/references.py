"""References per kernel class: import other machines' runs into their class's golden curves, and
measure the cross-class bands from the classes at hand (docs/kernel-classes.md).

    python -m suite references import RUN_DIR... [--fixtures DIR]   # other machines' regression run(s)
    python -m suite references machines [--write]                   # which machines and runs each reference has
    python -m suite references bands                                 # results/baselines/<profile>/bands.json
    python -m suite references record                                # this machine's class, from a fresh run

An import writes a reference where its class has none for the case (that one machine's, provisional),
and adds the run to a reference that exists (a second machine confirms it: suite/judge/machines.py),
keeping its curve. With --fixtures DIR it keeps a copy of each run's records under DIR/<run folder>/
(the replay test judges them again with today's checks), and the references name that copy.
"""
from __future__ import annotations

import json
import shutil
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path

from suite.errors import SuiteError
from suite.judge import bands, baselines, machines
from suite.cases import load_cases
from suite.matrix.spec import Case
from suite.paths import ROOT, display
from suite.records import results, runs
from suite.records.record import RECORD_KIND, CaseRecord
from suite.tools import lock

# Checks a record may have failed and still be its class's reference: those that compared it with
# another class's references (the curve, the budgets), and those whose definition or bound is per
# class now (suite/judge/checks.py: the reload bound; suite/train/backends/preference/checks.py: the reference
# measured on one model object).
CLASS_RELATIVE = ("golden_curve", "reload_logits", "reference_untouched")


class ReferenceError(SuiteError):
    """A run cannot become references; the message names the file and the reason."""


# A record's `resolved` entry larger than this, in JSON, is the evidence a trainer's relations were judged from
# (captured logits, per-step samples: 200-400 KB a case). The replay judges no relation from it (`replay`
# below reads the loss curve, the reload difference and the metrics), so a kept fixture leaves it out and says so.
TRIM_BYTES = 16_000


def trimmed(doc: dict) -> dict:
    """A record document with its bulky `resolved` evidence replaced by how much was left out, and why."""
    resolved = doc.get("resolved")
    if not isinstance(resolved, dict):
        return doc
    out = dict(resolved)
    for key, value in resolved.items():
        size = len(json.dumps(value))
        if size > TRIM_BYTES and not (isinstance(value, dict) and "trimmed_bytes" in value):
            out[key] = {"trimmed_bytes": size, "why": "evidence a relation was judged from in the run; left out "
                                                      "of the kept fixture, whose replay judges no relation"}
    return {**doc, "resolved": out}


def _copy_run(run: runs.Run, dest: Path) -> Path:
    """The records and the manifest of a run (no checkpoints, logs or probes): what a replay reads, each
    record's bulky evidence trimmed (`trimmed`)."""
    if dest.resolve() == run.path.resolve():  # the run is the fixture already
        return dest
    dest.mkdir(parents=True, exist_ok=True)
    for src in sorted(run.path.glob("*.json")):
        doc = json.loads(src.read_text())
        if isinstance(doc, dict) and doc.get("kind") == RECORD_KIND:
            (dest / src.name).write_text(json.dumps(trimmed(doc), indent=1, default=str) + "\n")
        else:
            shutil.copyfile(src, dest / src.name)  # contents only: a read-only source leaves a writable copy
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


@dataclass
class Imported:
    """What an import did, line by line, and whether it imported anything."""

    lines: list[str] = field(default_factory=list)
    written: int = 0  # new references (their class had none for the case)
    confirmed: int = 0  # runs added to a reference that exists
    already: int = 0  # runs the reference already listed

    @property
    def worked(self) -> bool:
        return self.written + self.confirmed + self.already > 0


def import_runs(run_dirs: list[str], root: Path, profile: str, cases_dir: Path,
                fixtures: Path | None = None) -> Imported:
    """Import each importable record of the runs into its class's reference (written or confirmed)."""
    cases = {c.id: c for c in load_cases(cases_dir) if c.model.scale.built}
    band_of = bands.load(root, profile)
    out = Imported()
    loaded = [runs.load(arg) for arg in run_dirs]  # every run read before anything is written
    for run in loaded:
        if run.errors:
            raise ReferenceError("; ".join(str(e) for e in run.errors))
    for run in loaded:
        where = run.path
        if fixtures is not None:
            where = _copy_run(run, Path(fixtures) / run.path.name)
            out.lines.append(f"{run.path.name}: records copied to {display(where)}")
        for file in sorted(f for f in run.path.glob("*.json") if f.name != "manifest.json"):
            record = results.read_record(file)
            case = cases.get(record.case_id)
            why = importable(record, case)
            if why:
                if record.status != "skipped":
                    out.lines.append(f"left out {record.case_id}: {why}")
                continue
            if (record.budgets or {}).get("profile", profile) != profile:
                raise ReferenceError(f"{run.path}: recorded on profile {record.profile}, not {profile}")
            out.lines.append(_import_record(record, case, f"{display(where)}/{file.name}", root / profile,
                                            band_of, out))
    out.lines.append(f"{out.written} reference(s) written, {out.confirmed} confirmed by another run, "
                     f"{out.already} already listing the run, under {display(root / profile)}")
    return out


def _import_record(record: CaseRecord, case: Case, source: str, base: Path, band_of: bands.Bands,
                   out: Imported) -> str:
    """One record into its class's reference: a new one, or one more run of an existing one."""
    klass = record.kernel_class
    path = base / klass.name / f"{case.slug}.json"
    points = [{"step": int(p["step"]), "loss": float(p["loss"])} for p in record.loss_curve]
    machine = machines.machine_of(record.environment)
    this_run = machines.Run(record.run_id, str(Path(source).parent), record.started_at or "", 0.0, 0.0)
    if path.is_file():
        doc = baselines.read_curve(path)
        if doc.get("fingerprint") == case.fingerprint:
            return _confirm(doc, path, case, klass.name, points, machine, this_run, band_of, out)
    reload = record.reload_diff
    head = baselines.reference_head(baselines.KIND, case, base.name, klass, record.environment,
                                    {"reload_logits": reload} if reload is not None else None,
                                    record.started_at or "", imported_from=source)
    head[machines.FIELD] = machines.Provenance((machines.MachineRuns(machine, (this_run,)),)).to_dict()
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(baselines.dumps_curve(head, points))
    out.written += 1
    return f"wrote {case.id} ({klass.name}): one machine ({machine.cpu}), provisional"


def _confirm(doc: dict, path: Path, case: Case, klass: str, points: list[dict], machine: machines.Machine,
             run: machines.Run, band_of: bands.Bands, out: Imported) -> str:
    """Another run of a reference that exists: listed with how far its curve lies from the reference's
    (the curve stays); refused beyond the cross-class band: a machine of the same class that differs
    more than two classes do took other kernels, another stack or a fault, and is no confirmation."""
    prov = machines.of_reference(doc, display(path))
    if prov.has_run(machine, run.run):
        out.already += 1
        return f"{case.id} ({klass}): run {run.run} already listed ({prov.describe()})"
    dist = machines.distance(points, doc["curve"])
    if dist is None:
        return f"left out {case.id}: its logged steps are not those of {display(path)}"
    band = band_of.for_check(case.method, bands.CURVE)
    if band is not None and (dist[0] > band.atol + case.checks.curve_atol
                             or dist[1] > band.drift + case.checks.curve_drift):
        return (f"left out {case.id}: its curve lies {dist[0]:.3g} per step (drift {dist[1]:.3g}) from "
                f"{display(path)}, beyond the case's tolerance plus the cross-class band for {case.method} "
                f"(+{band.atol:.3g}, +{band.drift:.3g}): a machine of the same class differing more than two "
                f"classes do is no confirmation; investigate the run")
    prov = prov.with_run(machine, machines.Run(run.run, run.records, run.recorded_at, *dist))
    head = {k: v for k, v in doc.items() if k not in ("curve", "family", machines.FIELD)}
    head.update({"family": machines.family_of(case), machines.FIELD: prov.to_dict()})
    path.write_text(baselines.dumps_curve(head, doc["curve"]))
    out.confirmed += 1
    state = "confirmed" if prov.confirmed else "provisional"
    return (f"{case.id} ({klass}): + run {run.run} of {machine.cpu}, {dist[0]:.3g} per step and drift {dist[1]:.3g} "
            f"from the reference: {prov.describe()}, {state}")


def list_machines(root: Path, profile: str, cases_dir: Path, write: bool = False) -> list[str]:
    """Each reference of the profile with its machines, runs and spread; with write, a reference
    recorded before references named their machines and family gets the fields, as they are read (one
    machine, one run)."""
    family = {c.slug: machines.family_of(c) for c in load_cases(cases_dir)}
    lines = []
    base = root / profile
    for d in sorted(p for p in base.iterdir() if p.is_dir()) if base.is_dir() else []:
        for f in sorted(f for f in d.glob("*.json") if f.name != bands.CLASS_FILE):
            doc = baselines.read_curve(f)
            prov = machines.of_reference(doc, display(f))
            if write and (machines.FIELD not in doc or "family" not in doc) and f.stem in family:
                head = {k: v for k, v in doc.items() if k not in ("curve", "family", machines.FIELD)}
                head.update({"family": family[f.stem], machines.FIELD: prov.to_dict()})
                f.write_text(baselines.dumps_curve(head, doc["curve"]))
            state = "confirmed" if prov.confirmed else "provisional"
            lines.append(f"{d.name:12s} {doc.get('case_id', f.stem):55s} {prov.count} machine(s), {prov.runs} run(s), "
                         f"spread {prov.atol:.3g}/{prov.drift:.3g}: {state}")
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
    try:
        before = json.loads(path.read_text())
    except (OSError, ValueError):
        before = {}
    if (before.get("classes"), before.get("bands")) == (doc["classes"], doc["bands"]):
        return path, before  # nothing moved: the file keeps its date
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
            classes.add(rec.class_name)
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
    from suite.train.backends.registry import backend_for

    cases = {c.id: c for c in load_cases(cases_dir)}
    entries = budget_mod.load_profile(budgets_dir, "cpu")
    store = baselines.BaselineStore(root, profile="cpu")
    judged, problems = 0, []
    for rec in runs.load(run_dir).records:
        case = cases.get(rec.case_id)
        if case is None or not rec.measured or not case.model.scale.built:
            continue
        case = case.with_mode(rec.mode)
        if rec.fingerprint != case.fingerprint:
            problems.append(f"{rec.case_id}: recorded under fingerprint {rec.fingerprint}, today "
                            f"{case.fingerprint}: re-record the fixture")
            continue
        klass = rec.kernel_class
        results = [checks.LossDecreases(case.checks.loss_window, case.checks.loss_margin).evaluate(
            case.id, [p["loss"] for p in rec.loss_curve])] if backend_for(case).loss_falls else []
        reload = (rec.reload or {}).get("max_abs_logit_diff")
        if reload is not None:
            check = checks.reload_check(case, bands.class_bounds(root, "cpu", klass.name))
            results.append(check.evaluate(case.id, float(reload), rec.reload["loader"]))
        results += store.checks(case, rec.loss_curve, [], scratch, klass)
        if rec.mode == "benchmark":
            results += budget_mod.evaluate(entries, case.id, rec.metric_table(), klass)
        judged += 1
        problems += [f"{rec.case_id} ({rec.mode}, class {klass.name}): {r.message}" for r in results
                     if not r.passed]
    return judged, problems
