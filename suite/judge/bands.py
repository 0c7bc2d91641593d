"""Cross-class bands: how far the references of two kernel classes (suite/kernelclass.py) lie
apart, measured per method and per check from the classes at hand, never set by hand.

A class without references of its own is judged against the nearest class's references within its
method's band (suite/judge/baselines.py); a comparison of two runs on different classes judges its
tight metrics the same way (suite/report/compare.py). The bands live in
`results/baselines/<profile>/bands.json`, written by `python -m suite references bands`, which names
the classes, the cases and the worst case each band came from.
"""
from __future__ import annotations

import itertools
import json
import math
import time
from dataclasses import dataclass
from pathlib import Path

from suite.errors import RecordError

KIND = "ftsuite.cross-class-bands"
SCHEMA_VERSION = 1
FILE = "bands.json"
CURVE = "golden_curve"


@dataclass(frozen=True)
class Band:
    """What a check may differ by across classes: per step (atol) and in mean residual (drift) for a
    curve; `value` for a single number (a reload or reference difference)."""

    atol: float = 0.0
    drift: float = 0.0
    value: float = 0.0
    source: str = ""


@dataclass(frozen=True)
class Bands:
    doc: dict
    path: Path | None = None

    def for_check(self, method: str, check: str) -> Band | None:
        entry = ((self.doc.get("bands") or {}).get(method) or {}).get(check)
        if not isinstance(entry, dict):
            return None
        where = f"{self.path.name if self.path else FILE}: measured between classes " \
                f"{' and '.join(self.doc.get('classes') or [])} over {entry.get('cases')} case(s), " \
                f"worst {entry.get('worst_case')}"
        return Band(float(entry.get("atol", 0.0)), float(entry.get("drift", 0.0)), float(entry.get("value", 0.0)),
                    where)


def path_of(root: Path, profile: str) -> Path:
    return Path(root) / profile / FILE


def load(root: Path, profile: str) -> Bands:
    """The profile's measured bands (an empty set when none were measured: every lookup is None)."""
    path = path_of(root, profile)
    if not path.is_file():
        return Bands({}, None)
    doc = _read(path, KIND)
    if doc.get("schema_version") != SCHEMA_VERSION:
        raise RecordError(str(path), f"field schema_version: {doc.get('schema_version')!r}, this suite reads "
                                     f"{SCHEMA_VERSION}")
    return Bands(doc, path)


def _read(path: Path, kind: str) -> dict:
    """A JSON document of a kind, or RecordError naming the file and the field."""
    try:
        doc = json.loads(path.read_text())
    except (OSError, json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise RecordError(str(path), f"not readable JSON: {exc}") from None
    if not isinstance(doc, dict) or doc.get("kind") != kind:
        raise RecordError(str(path), f"field kind: expected {kind!r}")
    return doc


def _curve_distance(a: list[dict], b: list[dict]) -> tuple[float, float] | None:
    ra, rb = {p["step"]: p["loss"] for p in a}, {p["step"]: p["loss"] for p in b}
    if set(ra) != set(rb) or not ra:
        return None
    diffs = [ra[s] - rb[s] for s in ra]
    return max(abs(d) for d in diffs), abs(sum(diffs) / len(diffs))


def measure(references: dict[str, dict[str, dict]]) -> dict:
    """Bands from references: {class name: {case slug: reference document}}. Per method: the largest
    per-step difference and mean residual between two classes' curves of one case (same fingerprint),
    and for each measured single number (reload, reference) the largest value any class measured."""
    bands: dict[str, dict[str, dict]] = {}

    def widen(method: str, check: str, case_id: str, **values: float) -> None:
        entry = bands.setdefault(method, {}).setdefault(check, {"cases": 0, "worst_case": None})
        entry["cases"] += 1
        key = "atol" if "atol" in values else "value"
        if values[key] > entry.get(key, -math.inf) or entry["worst_case"] is None:
            entry["worst_case"] = case_id
        for k, v in values.items():
            entry[k] = max(entry.get(k, 0.0), v)

    classes = sorted(references)
    for a, b in itertools.combinations(classes, 2):
        for slug in sorted(set(references[a]) & set(references[b])):
            ra, rb = references[a][slug], references[b][slug]
            if ra.get("fingerprint") != rb.get("fingerprint"):
                continue
            dist = _curve_distance(ra["curve"], rb["curve"])
            if dist is not None:
                widen(ra["method"], CURVE, ra["case_id"], atol=dist[0], drift=dist[1])
    for name in classes:
        for ref in references[name].values():
            for check, value in (ref.get("measured") or {}).items():
                if isinstance(value, (int, float)) and math.isfinite(value):
                    widen(ref["method"], check, f"{ref['case_id']} ({name})", value=float(value))
    return {"kind": KIND, "schema_version": SCHEMA_VERSION, "classes": classes,
            "measured_at": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
            "how": "per method: golden_curve atol/drift = the largest per-step difference / |mean residual| between "
                   "two classes' references of one case (same fingerprint); reload_logits and reference_untouched "
                   "value = the largest the references of any class measured",
            "bands": bands}


CLASS_FILE = "class.json"
CLASS_KIND = "ftsuite.kernel-class"


@dataclass(frozen=True)
class ClassBounds:
    """A kernel class's own measured bounds for tight checks (results/baselines/<profile>/<class>/class.json),
    where the class's measurements exceed the case's declared bound: `bound = worst measured on the
    class x (1 + margin)`, each entry naming the runs it was measured on. Absent: the declared bound."""

    name: str
    doc: dict
    path: Path | None = None

    def bound(self, check: str, method: str) -> tuple[float, str] | None:
        entry = ((self.doc.get("bounds") or {}).get(check) or {}).get(method)
        if not isinstance(entry, dict):
            return None
        return float(entry["bound"]), (f"kernel class {self.name}'s measured bound: worst {entry['worst']:.3g} "
                                       f"({entry['case']}) x (1 + {entry['margin']:g}), {entry['measured_on']}")


def class_bounds(root: Path, profile: str, klass: str) -> ClassBounds:
    path = Path(root) / profile / klass / CLASS_FILE
    if not path.is_file():
        return ClassBounds(klass, {}, None)
    doc = _read(path, CLASS_KIND)
    for check, per_method in (doc.get("bounds") or {}).items():
        for method, entry in (per_method or {}).items():
            missing = [k for k in ("bound", "worst", "case", "margin", "measured_on") if k not in (entry or {})]
            if missing:
                raise RecordError(str(path), f"field bounds.{check}.{method}.{missing[0]}: missing")
    return ClassBounds(klass, doc, path)
