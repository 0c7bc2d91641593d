"""What the release sweep (benchmarks/release_sweep.py) runs and records: the families of cases, the releases
of the window, the order, a cell. Pure functions over the cases and version lists; tests/benchmarks/test_release_sweep.py."""
from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from pathlib import Path

from suite.paths import ROOT

SWEPT = ("trl", "transformers", "peft", "bitsandbytes", "accelerate")


@dataclass(frozen=True)
class Family:
    key: str  # file name of its cells, a column of the table
    cases: tuple[str, ...]  # its representative case ids


def family_key(case) -> str:
    """The family of a case, from its axes: a mixture of experts and the 8-bit optimizer are families of
    their own (their known failures cut across trainers); SFT splits by method, other trainers do not."""
    if case.is_moe:
        return "moe"
    if "adamw_8bit" in case.features:
        return "adamw_8bit"
    from suite.matrix.spec import DEFAULT_TRAINER

    return f"{case.trainer}/{case.method}" if case.trainer == DEFAULT_TRAINER else case.trainer


def _simplest(case, order: int) -> tuple:
    # the base case first, on its format's own loss (not a masked one); an adapter before a full fine-tune
    # (it also loads through peft), then load order
    return (len(case.features), case.loss != "auto", not case.is_adapter, case.quantization.bits is not None, order)


def families(cases) -> list[Family]:
    """One family per key over the tiny CPU cases; its representatives: the simplest case, and within the
    mixture of experts one per method and within the 8-bit optimizer one per trainer (each failed apart)."""
    groups: dict[str, dict[str, tuple]] = {}
    for order, case in enumerate(cases):
        if case.model.size != "tiny" or case.needs_gpu or case.opt_in:  # the main tier's (the extended tier's
            continue                                                       # run with --extended only)
        key = family_key(case)
        sub = case.method if key == "moe" else case.trainer if key == "adamw_8bit" else ""
        best = groups.setdefault(key, {}).get(sub)
        if best is None or _simplest(case, order) < best[0]:
            groups[key][sub] = (_simplest(case, order), case.id)
    fams = [Family(k, tuple(c for _, c in sorted(subs.values()))) for k, subs in groups.items()]
    return sorted(fams, key=_column)


def _column(family: Family) -> tuple:
    # the table's columns: SFT by method, then the other trainers, then the families across trainers
    from suite.matrix.spec import DEFAULT_TRAINER

    across = family.key in ("moe", "adamw_8bit")
    return (not family.key.startswith(f"{DEFAULT_TRAINER}/"), across, family.key)


def floors(pyproject: Path = ROOT / "pyproject.toml") -> dict[str, str]:
    """name -> the floor pyproject.toml declares for it (`name>=X`), for every swept package."""
    text = pyproject.read_text()
    out = {}
    for name in SWEPT:
        m = re.search(rf'"{name}>=([0-9.]+)"', text)
        if not m:
            raise SystemExit(f"{pyproject}: no floor `{name}>=...` in [project] dependencies")
        out[name] = m.group(1)
    return out


def releases(available: list[str], floor: str, ceiling: str) -> list[str]:
    """One release per minor version from floor to ceiling (the control's): the floor for its own minor,
    the ceiling for its own, the newest patch for every minor between."""
    from packaging.version import Version

    lo, hi = Version(floor), Version(ceiling)
    by_minor: dict[tuple[int, int], Version] = {}
    for v in map(Version, available):
        if v.is_prerelease or not lo <= v <= hi:
            continue
        minor = (v.major, v.minor)
        if minor == (lo.major, lo.minor):
            by_minor[minor] = min(by_minor.get(minor, v), v)
        else:
            by_minor[minor] = max(by_minor.get(minor, v), v)
    return [str(v) for _, v in sorted(by_minor.items())]


def spread(items: list) -> list:
    """The items ordered so that any prefix covers the range evenly: both ends first, then midpoints."""
    if len(items) <= 2:
        return list(items)
    out, seen, parts = [items[0], items[-1]], {0, len(items) - 1}, [(0, len(items) - 1)]
    while parts:
        nxt = []
        for lo, hi in parts:
            if hi - lo > 1:
                mid = (lo + hi) // 2
                if mid not in seen:
                    seen.add(mid)
                    out.append(items[mid])
                nxt += [(lo, mid), (mid, hi)]
        parts = nxt
    return out


def sweep_order(by_package: dict[str, list[str]]) -> list[tuple[str, str]]:
    """(package, version) cells, round robin over the packages, each package in `spread` order."""
    queues = {p: spread(vs) for p, vs in by_package.items()}
    out = []
    while any(queues.values()):
        for p in by_package:
            if queues[p]:
                out.append((p, queues[p].pop(0)))
    return out


@dataclass
class Cell:
    """One family on one release: what its representative cases did there."""
    package: str
    version: str
    family: str
    status: str  # ran | skipped | error
    cases: dict[str, dict]  # case id -> {status, reason}
    versions: dict[str, str | None]  # what the environment resolved, the whole stack
    moved: dict[str, str] = field(default_factory=dict)  # package -> version, where not the lock's
    why_moved: str = ""  # pip's words for the conflict that moved them
    suite_commit: str | None = None
    date: str = ""
    run: str = ""


def cell_path(sweep_dir: Path, package: str, version: str, family: str) -> Path:
    return sweep_dir / "cells" / f"{package}-{version}" / f"{family.replace('/', '__')}.json"


def read_cells(sweep_dir: Path) -> list[Cell]:
    cells = []
    for path in sorted((sweep_dir / "cells").glob("*/*.json")):
        try:
            cells.append(Cell(**json.loads(path.read_text())))
        except (ValueError, TypeError) as exc:
            raise SystemExit(f"{path}: not a sweep cell ({exc}); remove it to run the cell again") from None
    return cells


def family_status(outcomes: dict[str, dict]) -> str:
    """error when any representative errored (or left no record), ran when one trained, else skipped."""
    statuses = {o["status"] for o in outcomes.values()}
    if statuses - {"passed", "failed", "skipped"}:
        return "error"
    return "ran" if statuses & {"passed", "failed"} else "skipped"


def first_line(text: str | None) -> str:
    lines = [line.strip() for line in (text or "").strip().splitlines() if line.strip()]
    return lines[0] if lines else ""


def outcome_of(record) -> dict:
    """A record's status and, for a skip or an error, what it said (the exception's line, not the traceback)."""
    reason = record.reason or ""
    if record.status == "error" and isinstance(record.failure, dict):
        lines = [ln.strip() for ln in str(record.failure.get("message") or "").splitlines() if ln.strip()]
        exc = [i for i, ln in enumerate(lines) if re.match(r"^[A-Za-z_.]*(Error|Exception|Interrupt)\b", ln)]
        if exc:  # the last exception's line, and the cause it points to ("... the following error: ...")
            reason = lines[exc[-1]] + (f" {lines[exc[-1] + 1]}" if lines[exc[-1]].endswith(":")
                                       and exc[-1] + 1 < len(lines) else "")
        else:
            reason = "\n".join(lines) or reason
    if record.status == "failed":
        reason = ", ".join(c["name"] for c in record.failed_checks)
    return {"status": record.status, "reason": first_line(reason)[:400]}
