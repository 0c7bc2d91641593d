"""Budgets from measured runs: per-case bounds = the worst measured value with a stated margin.

`python -m suite budgets derive RUN... --profile P` turns benchmark records into budget entries for
`cases/budgets/P.yaml`, one per case and kernel class (suite/kernelclass.py) measured, each
saying which runs, GPU or CPU class and versions it was measured on, with which margin, and how many
records, runs and machines it comes from (`records`, `runs`, `machines`). A case measured by fewer than
budgets.MIN_RECORDS records over budgets.MIN_RUNS runs, or by records of different fingerprints, gets
no entry: it is refused, by name (one record of one run on a busy machine once gave a bound a healthy
stack breached). `--write`
replaces, in the measured block of each class it derived (below MEASURED_MARK, one block per class),
the entries of the cases it derived, keeping that block's other cases, the seeded entries above and
the other classes' blocks (deriving budgets for new cases loses no one else's); a seeded bound the measurements
already breach is reported, never hidden.
"""
from __future__ import annotations

import fnmatch
import math
from dataclasses import dataclass
from pathlib import Path

import yaml

from suite.errors import SuiteError
from suite.judge import budgets
from suite.records import runs
from suite.records.record import CaseRecord
from suite.records.record import metric_values
from suite.versions import HEADLINE

MEASURED_MARK = "  # --- measured: written by `python -m suite budgets derive`; edit the seeded entries above ---"
CLASS_MARK = "  # --- kernel class "


class CalibrationError(SuiteError):
    """The runs cannot give budgets for this profile; the message says why."""


@dataclass(frozen=True)
class Derived:
    case_id: str
    bounds: dict[str, float]  # budget field -> bound
    measured: dict[str, float]  # budget field -> worst measured value
    source: str
    kernel_class: str | None = None
    basis: budgets.Basis | None = None


@dataclass
class Derivation:
    """What `derive` made: the entries, notes on records not read, and the cases it refused (why)."""

    entries: list[Derived]
    notes: list[str]
    refused: list[str]


@dataclass(frozen=True)
class Measured:
    """One benchmark record with the run it was read from (a folder: two machines' runs may share an id)."""

    record: CaseRecord
    run: str


def two_digits(x: float, up: bool) -> float:
    """Two significant digits, rounded away from the measurement (a bound is never tighter than asked)."""
    from math import ceil, floor, log10

    if x <= 0:
        return x
    digits = 1 - floor(log10(x))
    scale = 10.0 ** -digits
    value = round((ceil if up else floor)(x / scale) * scale, max(digits, 0))  # 6.1, not 6.1000000000000005
    return int(value) if digits <= 0 else value


def _describe_env(record: CaseRecord) -> str:
    env = record.environment
    pk = env.get("packages") or {}
    gpus = env.get("gpus") or []
    gpu = gpus[0].get("name") if gpus and isinstance(gpus[0], dict) else "CPU"
    cuda = (env.get("torch") or {}).get("cuda")
    versions = ", ".join(f"{n} {pk[n]}" for n in HEADLINE if n != "torch" and pk.get(n))
    return f"{gpu}{f', CUDA {cuda}' if cuda else ''}, torch {pk.get('torch', '?')}, {versions}"


def machine_of(record: CaseRecord) -> str:
    """The machine a record was made on, as far as it says: host name and CPU (or GPU) model. Two VMs of
    one model with one host name count as one machine: never more machines than there were."""
    env = record.environment
    gpus = env.get("gpus") or []
    cpu = env.get("cpu") if isinstance(env.get("cpu"), dict) else {}
    model = (gpus[0].get("name") if gpus and isinstance(gpus[0], dict)
             else " ".join(str(cpu.get(k)) for k in ("vendor", "model") if cpu.get(k)) or "unknown CPU")
    return f"{env.get('host', '?')}: {model}"


def _margins(margin: float, setup_margin: float, time_margin: float | None, work_margin: float) -> dict[str, float]:
    if not 0 <= margin < 1:
        raise CalibrationError(f"--margin must be in [0, 1), got {margin}")
    time_margin = margin if time_margin is None else time_margin
    if time_margin < 0 or work_margin < 0:
        raise CalibrationError("--time-margin and --work-margin must not be negative")
    return {"peak_memory_gib": margin, "setup_s": setup_margin, "step_time_s": time_margin,
            "step_cpu_time_s": time_margin, "tokens_per_s": time_margin, "flops_per_step": work_margin}


def _collect(run_args: list[str], profile: str, results_root: str | Path | None,
             select: str) -> tuple[dict[tuple[str, str], list[Measured]], list[str]]:
    """Benchmark records measured on the profile, by (case, kernel class), and notes on what was not read."""
    per_case: dict[tuple[str, str], list[Measured]] = {}
    notes: list[str] = []
    labels: dict[Path, str] = {}
    for arg in run_args:
        run = runs.load(arg, results_root)
        if run.path.resolve() in labels:  # the same folder named twice is one run
            continue
        # a run id names its run; a folder given by path is named with its parent, since two machines' runs
        # may share a folder name (benchmark-tiny-run)
        label = f"{run.path.parent.name}/{run.path.name}" if Path(arg).is_dir() else run.path.name
        labels[run.path.resolve()] = label
        notes += [f"not read: {err}" for err in run.errors]
        for rec in run.records:
            if rec.mode == "benchmark" and rec.measured and rec.profile == profile \
                    and fnmatch.fnmatchcase(rec.case_id, select):
                key = (rec.case_id, rec.class_name)
                per_case.setdefault(key, []).append(Measured(rec, label))
    return per_case, notes


def _refusal(case_id: str, klass: str, measured: list[Measured], basis: budgets.Basis) -> str | None:
    """Why a case's records give no budget (None: they do)."""
    prints = sorted({m.record.fingerprint for m in measured})
    if len(prints) > 1:
        return (f"{case_id} ({klass}): its records have {len(prints)} fingerprints ({', '.join(prints)}): they "
                f"measured different cases; derive from runs of the current case")
    if basis.records < budgets.MIN_RECORDS or basis.runs < budgets.MIN_RUNS:
        return (f"{case_id} ({klass}): {basis.describe()} (runs {', '.join(dict.fromkeys(m.run for m in measured))}); "
                f"a budget needs at least {budgets.MIN_RECORDS} benchmark records over {budgets.MIN_RUNS} runs: "
                f"run it again (another --run-id) and derive from every run")
    return None


def derive(run_args: list[str], profile: str, margin: float, setup_margin: float,
           results_root: str | Path | None = None, select: str = "*", time_margin: float | None = None,
           work_margin: float = 0.0, note: str = "") -> Derivation:
    """One entry per case measured in benchmark mode on this profile by enough records, the cases refused,
    and notes on what was not read.

    margin: memory; time_margin (default: margin): step time and step CPU time (bound x (1 + it)) and
    tokens/s (bound / (1 + it)), which a shared machine moves more; work_margin: counted FLOPs, exact for
    the same code path. note: said in every entry's source (how busy the machine was, say)."""
    margins = _margins(margin, setup_margin, time_margin, work_margin)
    per_case, notes = _collect(run_args, profile, results_root, select)
    if not per_case:
        raise CalibrationError(
            f"no benchmark records measured on profile {profile!r} in {', '.join(run_args)} (records of "
            f"`--benchmark` runs that passed or failed a check count; skipped and errored ones do not)")
    out, refused = [], []
    for (case_id, klass), measured in sorted(per_case.items(), key=lambda kv: (kv[0][1], kv[0][0])):
        basis = budgets.Basis(len(measured), len({m.run for m in measured}),
                              len({machine_of(m.record) for m in measured}))
        why = _refusal(case_id, klass, measured, basis)
        if why:
            refused.append(why)
            continue
        out.append(_derived(case_id, klass, measured, basis, profile, margins, note))
    return Derivation(out, notes, refused)


def _derived(case_id: str, klass: str, measured: list[Measured], basis: budgets.Basis, profile: str,
             margins: dict[str, float], note: str) -> Derived:
    recs = [m.record for m in measured]
    bounds, worst = {}, {}
    for field, spec in budgets.BUDGET_FIELDS.items():
        values = metric_values(recs, spec.metric_on(profile))
        if not values:
            continue
        m = margins[field]
        if spec.kind == "max":
            worst[field] = max(values)
            # counted work is exact: its bound is not rounded up to two digits (that would be ~10%)
            bounds[field] = (math.ceil(worst[field] * (1 + m)) if field == "flops_per_step"
                             else two_digits(worst[field] * (1 + m), up=True))
        else:  # tokens/s, a rate: the time margin's inverse (1.0: half the measured throughput)
            worst[field] = min(values)
            if worst[field] <= 0:  # nothing measured (a step of no loss tokens): a floor of 0 bounds nothing
                continue
            bounds[field] = two_digits(worst[field] / (1 + m), up=False)
    machines = "; ".join(sorted({machine_of(r) for r in recs}))
    envs = " / ".join(dict.fromkeys(_describe_env(r) for r in recs))
    g = margins
    source = (f"measured: {basis.describe()} ({machines}), runs {', '.join(dict.fromkeys(m.run for m in measured))}, "
              f"on {envs}, kernel class {klass}; worst value x (1 + {g['peak_memory_gib']:g}) for memory, "
              f"x (1 + {g['step_time_s']:g}) for step time and step CPU time, / (1 + {g['tokens_per_s']:g}) for "
              f"tokens/s, x (1 + {g['flops_per_step']:g}) for counted FLOPs, setup x (1 + {g['setup_s']:g})"
              f"{f'; {note}' if note else ''}")
    return Derived(case_id, bounds, worst, source, klass, basis)


def render(entries: list[Derived]) -> str:
    """The measured blocks of a budget file, one per kernel class (YAML list items, two-space
    indented under `budgets:`)."""
    return MEASURED_MARK + "\n" + "".join(_render_class(k, [e for e in entries if e.kernel_class == k])
                                          for k in dict.fromkeys(e.kernel_class for e in entries))


def _render_class(klass: str | None, entries: list[Derived]) -> str:
    return _class_block(klass, {e.case_id: _render_entry(e) for e in entries})


def _render_entry(e: Derived) -> str:
    shown = ", ".join(f"{k} {v:.4g}" for k, v in e.measured.items())
    lines = [f"  # {e.case_id}: measured {shown}"]
    item = {"cases": e.case_id, **({"kernel_class": e.kernel_class} if e.kernel_class else {}),
            **e.bounds, **(vars(e.basis) if e.basis else {}), "source": e.source}
    dumped = yaml.safe_dump([item], sort_keys=False, width=1000).rstrip("\n").splitlines()
    return "\n".join(lines + ["  " + line for line in dumped]) + "\n"


def _class_block(klass: str | None, by_case: dict[str, str]) -> str:
    return f"{CLASS_MARK}{klass} ---\n" + "".join(by_case[c] for c in sorted(by_case))


def _entries_of(body: str) -> dict[str, str]:
    """A written class block's entries by case id (each from its `# CASE: measured` line)."""
    out: dict[str, str] = {}
    case = None
    for line in body.splitlines(keepends=True):
        if line.startswith("  # ") and ": measured " in line:
            case = line[4:].split(": measured ")[0]
            out[case] = ""
        if case is not None:
            out[case] += line
    return out


def write(budgets_dir: str | Path, profile: str, entries: list[Derived]) -> Path:
    """Replace the derived cases' entries in the measured blocks of their classes; the seeded part above
    the mark, the other cases of those blocks and the other classes' blocks are kept as written."""
    path = Path(budgets_dir) / f"{profile}.yaml"
    blocks: dict[str, dict[str, str]] = {}
    if path.is_file():
        text = path.read_text()
        head, _, measured = text.partition(MEASURED_MARK)
        head = head.rstrip("\n") + "\n"
        for chunk in measured.split(CLASS_MARK)[1:]:
            name, _, body = chunk.partition(" ---\n")
            blocks[name] = _entries_of(body.rstrip() + "\n")
    else:
        head = f"profile: {profile}\nbudgets:\n"
    if "budgets:" not in head:
        raise CalibrationError(f"{path}: no `budgets:` list to add the measured entries to")
    for e in entries:
        for block in blocks.values():  # the case's old entry for this class, wherever it was written
            if f"\n    kernel_class: {e.kernel_class}\n" in block.get(e.case_id, ""):
                del block[e.case_id]
        blocks.setdefault(str(e.kernel_class), {})[e.case_id] = _render_entry(e)
    blocks = {k: v for k, v in blocks.items() if v}
    path.write_text(head + MEASURED_MARK + "\n" + "".join(_class_block(k, blocks[k]) for k in sorted(blocks)))
    budgets.load_profile(budgets_dir, profile)  # what was written must load
    return path


def conflicts(budgets_dir: str | Path, profile: str, entries: list[Derived]) -> list[str]:
    """Seeded bounds (above the mark) that the measured values already breach."""
    path = Path(budgets_dir) / f"{profile}.yaml"
    if not path.is_file():
        return []
    seeded_text = path.read_text().split(MEASURED_MARK)[0]
    tmp = yaml.safe_load(seeded_text) or {}
    out = []
    for i, raw in enumerate(tmp.get("budgets") or []):
        for e in entries:
            if not fnmatch.fnmatchcase(e.case_id, raw.get("cases", "")):
                continue
            for field, value in e.measured.items():
                if field not in raw:
                    continue
                kind = budgets.BUDGET_FIELDS[field].kind
                if (kind == "max" and value > raw[field]) or (kind == "min" and value < raw[field]):
                    out.append(f"{path}: budgets[{i}] ({raw['cases']}) {field} {raw[field]:g} is already breached by "
                               f"{e.case_id}: measured {value:.4g}; correct or remove the seeded entry")
    return out
