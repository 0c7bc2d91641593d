"""Budgets per hardware profile: declared in cases/budgets/<profile>.yaml, checked in benchmark mode.

A budget entry names the cases it covers (a glob on the case id), the bounds, and where each
number comes from; a measured entry also names the kernel class it was measured on
(suite/kernelclass.py) and how many benchmark records, runs and machines its numbers come
from (`records`, `runs`, `machines`). An entry without a class applies on every class; a class entry
applies on its class, and on a class that has no measured entry for the case, the nearest class's
entry applies and the verdict says so. Every breach fails the case with metric, value, bound, profile
and class named; a bound from one machine says "provisional: one machine".

On the CPU profile the wall-clock fields (step time, tokens/s, set-up time) are reported, not gated:
on a shared CPU they measure the machine's load as much as the code (the Intel machine, 2026-12-07:
a case's step 0.058 s alone, 0.120 s beside other work), so CPU time per step (`step_cpu_time_s`),
memory and counted work gate there. On a GPU profile every field gates.
"""
from __future__ import annotations

import fnmatch
from dataclasses import dataclass, replace
from pathlib import Path

import yaml

from suite.errors import CaseError, not_utf8
from suite import kernelclass
from suite.judge import hardware
from suite.judge.checks import CheckResult
from suite.matrix import yamltext

# What a measured bound is derived from, at least (suite/judge/calibrate.py refuses fewer): one
# benchmark record of one run on a busy machine gave a bound a healthy stack breached (issue 33).
MIN_RECORDS = 3
MIN_RUNS = 2


@dataclass(frozen=True)
class Field:
    """A budget field: the metric it bounds on CUDA and on a CPU, which way, and whether it is wall time."""

    cuda_metric: str
    cpu_metric: str
    kind: str  # "max" or "min" bound
    unit: str
    wall: bool = False  # wall-clock: gates on a GPU profile, reported on the CPU profile

    def metric_on(self, profile: str) -> str:
        return self.cpu_metric if profile == hardware.CPU_PROFILE else self.cuda_metric

    def gated_on(self, profile: str) -> bool:
        return not (self.wall and profile == hardware.CPU_PROFILE)


BUDGET_FIELDS: dict[str, Field] = {
    "peak_memory_gib": Field("cuda_max_reserved_gib", "peak_rss_gib", "max", "GiB"),
    "step_time_s": Field("step_time_median_s", "step_time_median_s", "max", "s", wall=True),
    "tokens_per_s": Field("tokens_per_s", "tokens_per_s", "min", "tokens/s", wall=True),
    "setup_s": Field("setup_s", "setup_s", "max", "s", wall=True),
    "step_cpu_time_s": Field("step_cpu_time_median_s", "step_cpu_time_median_s", "max", "s"),
    "flops_per_step": Field("counted_flops_per_step", "counted_flops_per_step", "max", "FLOP"),
}
BASIS_FIELDS = ("records", "runs", "machines")


@dataclass(frozen=True)
class Basis:
    """How many benchmark records, runs and machines a measured bound comes from."""

    records: int
    runs: int
    machines: int

    def describe(self) -> str:
        return (f"{self.records} record{'s' * (self.records != 1)} of {self.runs} run{'s' * (self.runs != 1)} on "
                f"{self.machines} machine{'s' * (self.machines != 1)}")

    @property
    def provisional(self) -> str:
        """Why a bound from this basis is provisional ("" when it is not)."""
        why = ["one machine"] if self.machines < 2 else []
        if self.records < MIN_RECORDS or self.runs < MIN_RUNS:
            why.append(f"{self.records} record(s) of {self.runs} run(s), fewer than the {MIN_RECORDS} records "
                       f"over {MIN_RUNS} runs a bound is derived from")
        return f"provisional: {'; '.join(why)}" if why else ""


@dataclass(frozen=True)
class Budget:
    """One bound: `fails(value) -> message or None`."""

    field: str
    metric: str
    bound: float
    kind: str  # "max" or "min"
    unit: str
    profile: str
    source: str
    file: str
    kernel_class: str | None = None  # measured on this class; None: every class
    note: str = ""  # how it came to apply (another class's entry)
    gated: bool = True  # False: a wall-clock bound on the CPU profile, reported only
    basis: Basis | None = None  # what a measured bound comes from; None: a seeded bound

    @property
    def where(self) -> str:
        cls = f", kernel class {self.kernel_class}" if self.kernel_class else ""
        return f"profile {self.profile}{cls}{f'; {self.note}' if self.note else ''}"

    @property
    def provenance(self) -> str:
        """Where the bound comes from, provisional first when it is."""
        basis = self.basis
        said = f"measured from {basis.describe()}; " if basis else ""
        caveat = f"{basis.provisional}; " if basis and basis.provisional else ""
        return f"{caveat}{said}declared in {self.file}; source: {self.source}"

    def fails(self, case_id: str, value: float | None) -> str | None:
        if value is None:
            return (f"{case_id}: budget {self.field} on {self.where}: metric {self.metric} was not "
                    f"measured (bound {self.bound:g} {self.unit}, {self.file})")
        ok = value <= self.bound if self.kind == "max" else value >= self.bound
        if ok:
            return None
        op = ">" if self.kind == "max" else "<"
        return (f"{case_id}: budget breached on {self.where}: {self.field} ({self.metric}) = "
                f"{value:.4g} {self.unit} {op} budget {self.bound:g} {self.unit} ({self.provenance})")

    def evaluate(self, case_id: str, value: float | None) -> CheckResult:
        breach = self.fails(case_id, value)
        if not self.gated:  # reported: what it would say, never a failure
            said = breach or (f"{case_id}: {self.field} ({self.metric}) = {value:.4g} {self.unit} within "
                              f"{self.bound:g} {self.unit} on {self.where}")
            return CheckResult(f"budget:{self.field}", True, f"reported, not gated (wall time on the CPU profile, "
                                                              f"where step_cpu_time_s gates): {said}", value, self.bound)
        if breach:
            return CheckResult(f"budget:{self.field}", False, breach, value, self.bound)
        return CheckResult(f"budget:{self.field}", True,
                           f"{case_id}: {self.field} ({self.metric}) = {value:.4g} {self.unit} within budget "
                           f"{self.bound:g} {self.unit} on {self.where}", value, self.bound)

    def summary(self) -> dict:
        """What a record says of the bound (RunSession's `budgets.declared`)."""
        return {"field": self.field, "metric": self.metric, "bound": self.bound, "kind": self.kind,
                "source": self.source, "gated": self.gated,
                **({"kernel_class": self.kernel_class} if self.kernel_class else {}),
                **({"note": self.note} if self.note else {}),
                **({"basis": vars(self.basis)} if self.basis else {}),
                **({"provisional": self.basis.provisional} if self.basis and self.basis.provisional else {})}


@dataclass(frozen=True)
class Entry:
    pattern: str
    budgets: tuple[Budget, ...]
    kernel_class: str | None = None


def load_profile(budgets_dir: str | Path, profile: str) -> list[Entry]:
    """The entries declared for a profile; an empty list when the profile has no file."""
    path = Path(budgets_dir) / f"{profile}.yaml"
    if not path.is_file():
        return []
    file = str(path)
    try:
        doc = yamltext.load(path.read_bytes().decode("utf-8")) or {}
    except UnicodeDecodeError as exc:
        raise CaseError(file, "(document)", not_utf8(exc)) from None
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        raise CaseError(file, f"line {mark.line + 1}" if mark else "(document)",
                        f"not valid YAML: {getattr(exc, 'problem', None) or exc}") from None
    if not isinstance(doc, dict) or set(doc) - {"profile", "budgets"}:
        raise CaseError(file, "(document)", "a budget file holds `profile` and `budgets` only")
    if doc.get("profile") != profile:
        raise CaseError(file, "profile", f"must be {profile!r} (the file's name), got {doc.get('profile')!r}")
    entries = [_entry(file, f"budgets[{i}]", raw, profile) for i, raw in enumerate(doc.get("budgets") or [])]
    seen: set[tuple[str, str]] = set()
    for i, e in enumerate(entries):  # two measured entries of one case and class: both would gate
        if e.kernel_class is not None and (e.pattern, e.kernel_class) in seen:
            raise CaseError(file, f"budgets[{i}].cases", f"a second measured entry for {e.pattern} on kernel class "
                                                         f"{e.kernel_class}: keep one")
        seen.add((e.pattern, e.kernel_class or ""))
    return entries


def _entry(file: str, where: str, raw: object, profile: str) -> Entry:
    if not isinstance(raw, dict) or not isinstance(raw.get("cases"), str):
        raise CaseError(file, f"{where}.cases", "each entry needs `cases`: a glob on case ids")
    if not isinstance(raw.get("source"), str) or not raw["source"].strip():
        raise CaseError(file, f"{where}.source", "say where the numbers come from")
    klass = raw.get("kernel_class")
    if klass is not None and (not isinstance(klass, str) or not klass.strip()):
        raise CaseError(file, f"{where}.kernel_class", f"must be a kernel class name, got {klass!r}")
    unknown = set(raw) - {"cases", "source", "kernel_class", *BASIS_FIELDS, *BUDGET_FIELDS}
    if unknown:
        raise CaseError(file, f"{where}.{sorted(unknown)[0]}",
                        f"unknown budget field; known: {', '.join([*BUDGET_FIELDS, *BASIS_FIELDS])}")
    basis = _basis(file, where, raw, measured=klass is not None)
    budgets = []
    for name, spec in BUDGET_FIELDS.items():
        if name not in raw:
            continue
        value = raw[name]
        if isinstance(value, bool) or not isinstance(value, (int, float)) or value <= 0:
            raise CaseError(file, f"{where}.{name}", f"must be a positive number, got {value!r}")
        budgets.append(Budget(name, spec.metric_on(profile), float(value), spec.kind, spec.unit, profile,
                              raw["source"].strip(), file, klass, gated=spec.gated_on(profile), basis=basis))
    return Entry(raw["cases"], tuple(budgets), klass)


def _basis(file: str, where: str, raw: dict, measured: bool) -> Basis | None:
    """The entry's records, runs and machines: stated by every measured entry (one with a kernel class)."""
    given = {k: raw[k] for k in BASIS_FIELDS if k in raw}
    if not given and not measured:
        return None
    for k in BASIS_FIELDS:
        if k not in given:
            raise CaseError(file, f"{where}.{k}", "a measured entry states how many benchmark records, runs and "
                                                  "machines its bounds come from (`records`, `runs`, `machines`)")
        if isinstance(given[k], bool) or not isinstance(given[k], int) or given[k] < 1:
            raise CaseError(file, f"{where}.{k}", f"must be a whole number of at least 1, got {given[k]!r}")
    if not given["machines"] <= given["runs"] <= given["records"]:
        raise CaseError(file, f"{where}.runs", f"machines <= runs <= records, got {given['machines']} machine(s), "
                                               f"{given['runs']} run(s), {given['records']} record(s)")
    return Basis(given["records"], given["runs"], given["machines"])


def applicable(entries: list[Entry], case_id: str, klass: kernelclass.KernelClass | None = None) -> list[Budget]:
    """The bounds for a case on a kernel class: entries for every class, the class's own measured
    entries, or, where the class has none for the case, the nearest class's (kernelclass.nearest)."""
    matching = [e for e in entries if fnmatch.fnmatchcase(case_id, e.pattern)]
    shared = [b for e in matching if e.kernel_class is None for b in e.budgets]
    by_class: dict[str, list[Budget]] = {}
    for e in matching:
        if e.kernel_class is not None:
            by_class.setdefault(e.kernel_class, []).extend(e.budgets)
    if not by_class:
        return shared
    if klass is None:  # no class known (a listing): every class's entries
        return shared + [b for bs in by_class.values() for b in bs]
    if klass.name in by_class:
        return shared + by_class[klass.name]
    known = [kernelclass.from_name(n) for n in by_class]
    near = kernelclass.nearest(klass, known)
    note = f"no budget measured on kernel class {klass.name}: the nearest measured class {near.name}'s entry"
    return shared + [replace(b, note=note) for b in by_class[near.name]]


def evaluate(entries: list[Entry], case_id: str, metrics: dict[str, float],
             klass: kernelclass.KernelClass | None = None) -> list[CheckResult]:
    return [b.evaluate(case_id, metrics.get(b.metric)) for b in applicable(entries, case_id, klass)]
