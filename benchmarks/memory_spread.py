"""How far peak memory moves between single runs of one case on one stack: the spread within which a
memory metric measured once a side is `needs repeats` rather than a verdict (suite/report/judgement.py).

    python -m benchmarks.memory_spread RUN_DIR...            # print the table
    python -m benchmarks.memory_spread RUN_DIR... --write    # and benchmarks/memory_spread.json

Records are paired when they measured the same case (case id and fingerprint) on the same stack (the
same package versions), in different runs or as repeats of one run, on any machine; the spread of a
pair is max(a/b, b/a) - 1, the way the comparison reads a tolerance. The json keeps, per metric, the
largest spread, the pair it came from and how many pairs and runs were measured; tests/report/test_compare.py
checks that `Metric.single_run_spread` (suite/judge/metrics.py) covers it.
"""
from __future__ import annotations

import argparse
import itertools
import json
from pathlib import Path

from suite.records import runs
from suite.records.record import CaseRecord

METRICS = ("peak_rss_gib", "peak_rss_delta_gib")
OUT = Path(__file__).with_name("memory_spread.json")


def _stack(record: CaseRecord) -> str:
    packages = record.environment.get("packages") or {}
    return json.dumps(packages, sort_keys=True)


def _label(path: Path) -> str:
    return f"{path.parent.name}/{path.name}"


def measure(run_dirs: list[str]) -> dict:
    """Per metric: the largest spread between two records of one case on one stack, and where it was."""
    groups: dict[tuple[str, str, str], list[tuple[str, CaseRecord]]] = {}
    for arg in run_dirs:
        run = runs.load(arg)
        for rec in run.records:
            if rec.measured:
                groups.setdefault((rec.case_id, rec.fingerprint, _stack(rec)), []).append((_label(run.path), rec))
    out: dict = {"runs": sorted({_label(runs.load(a).path) for a in run_dirs})}
    for metric in METRICS:
        pairs = []
        for (case_id, _, _), recs in groups.items():
            for (ra, a), (rb, b) in itertools.combinations(recs, 2):
                va, vb = a.metric_table().get(metric), b.metric_table().get(metric)
                if va and vb and va > 0 and vb > 0:
                    pairs.append((max(va / vb, vb / va) - 1, case_id, ra, rb, va, vb))
        pairs.sort(reverse=True)
        worst = pairs[0] if pairs else None
        out[metric] = {"pairs": len(pairs), "largest": round(worst[0], 4) if worst else None,
                       "p95": round(pairs[len(pairs) // 20][0], 4) if pairs else None,
                       "worst_pair": {"case": worst[1], "runs": [worst[2], worst[3]],
                                      "values": [round(worst[4], 4), round(worst[5], 4)]} if worst else None}
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("runs", nargs="+", help="run folders (or run ids under results/)")
    ap.add_argument("--write", action="store_true", help=f"write {OUT.name}")
    args = ap.parse_args(argv)
    doc = measure(args.runs)
    print("| metric | pairs | largest spread | 95th percentile | worst pair |\n|---|---:|---:|---:|---|")
    for metric in METRICS:
        m = doc[metric]
        w = m["worst_pair"] or {}
        print(f"| {metric} | {m['pairs']} | {m['largest']:.1%} | {m['p95']:.1%} | {w.get('case')} "
              f"{' vs '.join(w.get('runs', []))}: {w.get('values')} |")
    if args.write:
        OUT.write_text(json.dumps(doc, indent=1) + "\n")
        print(f"wrote {OUT}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
