"""Nights with planted changes, for `python -m suite history`, and its false-alarm rate on flat series.

    python -m benchmarks.history_fixture OUT          # 30 nights under OUT/night-00 ... night-29
    python -m suite history "OUT/night-*"             # the history of those nights
    python -m benchmarks.history_fixture --false-alarms [--series 500]

Each night is a real record (tests/fixtures/runs/tiny-a, `tiny-llama/full/base`) in its own run
folder with a manifest, one night a day from 2026-11-01, with planted metric values:
step_time_median_s has 4% noise and a 10% step from night 18, the night trl goes 1.15.0 -> 1.16.0;
peak_rss_gib drifts +0.4% a night under 0.5% noise; tokens_per_s is flat with 3% noise.
tests/report/test_history.py analyses the same nights.

--false-alarms: how often a flat series of 30 nights gets a change point or a drift, for Gaussian
noise of 2%, 5% and 10% and for a heavy-tailed noise (5% Gaussian with one night in ten 30% off, as
a shared runner's wall clock does).
"""
from __future__ import annotations

import argparse
import copy
import json
import random
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
REAL = ROOT / "tests" / "fixtures" / "runs" / "tiny-a"
CASE = "tiny-llama/full/base"
SLUG = "tiny-llama__full__base.json"
NIGHTS = 30
STEP_AT = 18  # the first night of the planted step


def noisy(n: int, centre: float, rel: float, seed: int) -> list[float]:
    rng = random.Random(seed)
    return [centre * (1 + rng.gauss(0, rel)) for _ in range(n)]


def heavy(n: int, centre: float, seed: int) -> list[float]:
    rng = random.Random(seed)
    return [centre * (1 + rng.gauss(0, 0.05)) * (1.3 if rng.random() < 0.1 else 1.0) for _ in range(n)]


def planted_series() -> dict[str, list[float]]:
    base = noisy(NIGHTS, 0.20, 0.04, 4)
    return {"step_time_median_s": [v * (1.10 if i >= STEP_AT else 1.0) for i, v in enumerate(base)],
            "peak_rss_gib": [v * (1 + 0.004 * i) for i, v in enumerate(noisy(NIGHTS, 1.5, 0.005, 2))],
            "tokens_per_s": noisy(NIGHTS, 2000.0, 0.03, 3)}


def nightly(root: Path, series: dict[str, list[float]], trl_from: int | None = STEP_AT, name: str = "night") -> Path:
    """NIGHTS run folders, each the real record with the planted values; trl goes 1.15.0 -> 1.16.0
    from night trl_from (in the manifest's and the record's environment)."""
    manifest = json.loads((REAL / "manifest.json").read_text())
    record = json.loads((REAL / SLUG).read_text())
    for i in range(NIGHTS):
        run_id = f"{name}-{i:02d}"
        run = Path(root) / run_id
        run.mkdir(parents=True)
        env = copy.deepcopy(record["environment"])
        env["packages"]["trl"] = "1.16.0" if trl_from is not None and i >= trl_from else "1.15.0"
        rec = copy.deepcopy(record)
        rec.update(run_id=run_id, environment=env, started_at=f"2026-11-{i + 1:02d}T02:00:00+0000")
        for metric, values in series.items():
            rec["metrics"][metric]["value"] = values[i]
        (run / SLUG).write_text(json.dumps(rec))
        man = copy.deepcopy(manifest)
        man.update(run_id=run_id, started_at=rec["started_at"], environment=env, records={CASE: [SLUG]},
                   counts={"passed": 1}, planned=[CASE])
        (run / "manifest.json").write_text(json.dumps(man))
    return Path(root)


def false_alarms(series: int) -> dict[str, int]:
    from suite.report import history

    noises = {"gaussian 2%": lambda s: noisy(NIGHTS, 1.0, 0.02, s),
              "gaussian 5%": lambda s: noisy(NIGHTS, 1.0, 0.05, s),
              "gaussian 10%": lambda s: noisy(NIGHTS, 1.0, 0.10, s),
              "heavy-tailed": lambda s: heavy(NIGHTS, 1.0, s)}
    out = {}
    for label, make in noises.items():
        out[label] = sum(bool(history.change_points(v)) or history.drift(v) is not None
                         for v in (make(10_000 + s) for s in range(series)))
    return out


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("out", nargs="?", help="the folder to write the nights into")
    ap.add_argument("--false-alarms", action="store_true")
    ap.add_argument("--series", type=int, default=500)
    args = ap.parse_args()
    if args.false_alarms:
        print(f"| noise of a flat series ({NIGHTS} nights) | series with a change point or a drift |")
        print("|---|---:|")
        for label, n in false_alarms(args.series).items():
            print(f"| {label} | {n} of {args.series} ({n / args.series:.1%}) |")
        return 0
    if not args.out:
        ap.error("give OUT, or --false-alarms")
    print(nightly(Path(args.out), planted_series()))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
