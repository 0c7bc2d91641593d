"""Budgets per hardware profile: declared in cases/budgets/<profile>.yaml, checked in benchmark mode.

A budget entry names the cases it covers (a glob on the case id), the bounds, and where each
number comes from; a measured entry also names the kernel class it was measured on
(suite/judge/kernelclass.py). An entry without a class applies on every class; a class entry applies
on its class, and on a class that has no measured entry for the case, the nearest class's entry
applies and the verdict says so. Every breach fails the case with metric, value, bound, profile and
class named.
"""
from __future__ import annotations

import fnmatch
from dataclasses import dataclass, replace
from pathlib import Path

import yaml

from suite.errors import CaseError, not_utf8
from suite.judge import kernelclass
from suite.judge.checks import CheckResult
from suite.matrix import yamltext

# budget field -> (metric on CUDA, metric on CPU, "max" bound or "min" bound, unit)
BUDGET_FIELDS: dict[str, tuple[str, str, str, str]] = {
    "peak_memory_gib": ("cuda_max_reserved_gib", "peak_rss_gib", "max", "GiB"),
    "step_time_s": ("step_time_median_s", "step_time_median_s", "max", "s"),
    "tokens_per_s": ("tokens_per_s", "tokens_per_s", "min", "tokens/s"),
    "setup_s": ("setup_s", "setup_s", "max", "s"),
    "step_cpu_time_s": ("step_cpu_time_median_s", "step_cpu_time_median_s", "max", "s"),
    "flops_per_step": ("counted_flops_per_step", "counted_flops_per_step", "max", "FLOP"),
}


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

    @property
    def where(self) -> str:
        cls = f", kernel class {self.kernel_class}" if self.kernel_class else ""
        return f"profile {self.profile}{cls}{f'; {self.note}' if self.note else ''}"

    def fails(self, case_id: str, value: float | None) -> str | None:
        if value is None:
            return (f"{case_id}: budget {self.field} on {self.where}: metric {self.metric} was not "
                    f"measured (bound {self.bound:g} {self.unit}, {self.file})")
        ok = value <= self.bound if self.kind == "max" else value >= self.bound
        if ok:
            return None
        op = ">" if self.kind == "max" else "<"
        return (f"{case_id}: budget breached on {self.where}: {self.field} ({self.metric}) = "
                f"{value:.4g} {self.unit} {op} budget {self.bound:g} {self.unit} (declared in {self.file}; "
                f"source: {self.source})")

    def evaluate(self, case_id: str, value: float | None) -> CheckResult:
        breach = self.fails(case_id, value)
        if breach:
            return CheckResult(f"budget:{self.field}", False, breach, value, self.bound)
        return CheckResult(f"budget:{self.field}", True,
                           f"{case_id}: {self.field} ({self.metric}) = {value:.4g} {self.unit} within budget "
                           f"{self.bound:g} {self.unit} on {self.where}", value, self.bound)


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
    entries = []
    for i, raw in enumerate(doc.get("budgets") or []):
        where = f"budgets[{i}]"
        if not isinstance(raw, dict) or not isinstance(raw.get("cases"), str):
            raise CaseError(file, f"{where}.cases", "each entry needs `cases`: a glob on case ids")
        if not isinstance(raw.get("source"), str) or not raw["source"].strip():
            raise CaseError(file, f"{where}.source", "say where the numbers come from")
        klass = raw.get("kernel_class")
        if klass is not None and (not isinstance(klass, str) or not klass.strip()):
            raise CaseError(file, f"{where}.kernel_class", f"must be a kernel class name, got {klass!r}")
        unknown = set(raw) - {"cases", "source", "kernel_class", *BUDGET_FIELDS}
        if unknown:
            raise CaseError(file, f"{where}.{sorted(unknown)[0]}",
                            f"unknown budget field; known: {', '.join(BUDGET_FIELDS)}")
        budgets = []
        for name, (cuda_metric, cpu_metric, kind, unit) in BUDGET_FIELDS.items():
            if name not in raw:
                continue
            value = raw[name]
            if isinstance(value, bool) or not isinstance(value, (int, float)) or value <= 0:
                raise CaseError(file, f"{where}.{name}", f"must be a positive number, got {value!r}")
            metric = cpu_metric if profile == "cpu" else cuda_metric
            budgets.append(Budget(name, metric, float(value), kind, unit, profile, raw["source"].strip(), file, klass))
        entries.append(Entry(raw["cases"], tuple(budgets), klass))
    return entries


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
