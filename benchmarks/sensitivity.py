"""What the performance verdicts can see: inject known faults, compare, count detections and false alarms.

    python -m benchmarks.sensitivity [--case tiny-llama/lora/base] [--steps 60] [--comparisons 10]
                                     [--repeats 5] [--quiet-only]

One tiny case in benchmark mode, each run a real training in its own forked child (suite/run/session.py).
Pools of runs are made interleaved (normal, compute, wait, memory, forward, normal, ...) so that a
drift of the machine reaches every pool alike, first on a quiet machine, then under a competing load
this script starts itself (one busy process per core). The faults (suite/train/inject.py): 10% more CPU
work per step, a 10% wait per step, 5% more resident memory, one more forward pass per loss. Each
comparison draws `--repeats` runs for each side (identical: two disjoint draws from the normal pool)
and judges every metric as a report does (suite/report/compare.py: the bootstrap test on repeats),
printing per metric how often the fault was flagged, how often identical runs raised an alarm, and
the median detection floor the comparisons stated.
"""
from __future__ import annotations

import argparse
import json
import os
import random
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import replace
from pathlib import Path

from suite.judge.metrics import METRICS
from suite.matrix.load import load_cases
from suite.paths import ROOT
from suite.report import compare
from suite.run.session import RunSession

FAULTS = {"normal": "", "compute": "compute:0.10", "wait": "wait:0.10", "memory": "memory:0.05", "forward": "forward"}
WATCH = ("step_time_median_s", "step_cpu_time_median_s", "step_off_cpu_median_s", "train_cpu_s", "tokens_per_s",
         "peak_rss_gib", "counted_flops_per_step", "aten_calls_per_step")
EXPECT = {"compute": ("counted_flops_per_step", "step_cpu_time_median_s", "step_time_median_s", "train_cpu_s"),
          "wait": ("step_time_median_s", "step_off_cpu_median_s"), "memory": ("peak_rss_gib",),
          "forward": ("counted_flops_per_step", "aten_calls_per_step")}


def make_pools(case, plan: dict[str, int], root: Path, run_id: str) -> dict[str, list[dict]]:
    # no budgets: they are verdicts of their own (the measured counted-FLOPs budget of the CPU profile
    # refuses the compute fault at once), and a failed run would end the pool
    no_budgets = root / "no-budgets"
    no_budgets.mkdir(exist_ok=True)
    session = RunSession(root, run_id, mode="benchmark", budgets_dir=no_budgets)
    pools: dict[str, list[dict]] = {k: [] for k in plan}
    for i in range(max(plan.values())):
        for kind, n in plan.items():
            if i >= n:
                continue
            session.child_env = {"FTSUITE_INJECT": FAULTS[kind]}
            res = session.run_case(case)
            if res.status != "passed":
                raise SystemExit(f"{kind} run {i}: {res.status}: {res.reason[:500]}")
            pools[kind].append({k: v["value"] for k, v in res.record.metrics.items()})
    session.finish()
    return pools


def judge(base: list[dict], cand: list[dict], name: str) -> compare.Judgement:
    metric = METRICS[name]
    return compare.judge(replace(metric, rel_tolerance=metric.tolerance_for("cpu")), [r[name] for r in base],
                         [r[name] for r in cand])


def evaluate(pools: dict[str, list[dict]], comparisons: int, repeats: int, seed: int = 0) -> dict:
    rng = random.Random(seed)
    out: dict = {}
    normal = pools["normal"]
    for kind in pools:
        for name in WATCH:
            flagged, floors = 0, []
            for _ in range(comparisons):
                base_idx = rng.sample(range(len(normal)), repeats)
                base = [normal[i] for i in base_idx]
                if kind == "normal":
                    rest = [i for i in range(len(normal)) if i not in base_idx]
                    cand = [normal[i] for i in rng.sample(rest, repeats)]
                else:
                    cand = rng.sample(pools[kind], repeats)
                j = judge(base, cand, name)
                alarm = (compare.WORSE, compare.BETTER) if kind == "normal" else (compare.WORSE,)
                flagged += j.verdict in alarm
                floors.append(j.threshold)
            out[(kind, name)] = (flagged, statistics.median(floors))
    return out


def table(results: dict, comparisons: int, title: str) -> str:
    kinds = sorted({k for k, _ in results}, key=list(FAULTS).index)
    lines = [f"{title}", "", "| metric | " + " | ".join(
        ("false alarms (identical)" if k == "normal" else f"{k} flagged") for k in kinds) + " | median floor |",
             "|---|" + "---:|" * (len(kinds) + 1)]
    for name in WATCH:
        cells = []
        for k in kinds:
            n, _ = results[(k, name)]
            strong = k != "normal" and name in EXPECT.get(k, ())
            cells.append(f"**{n}/{comparisons}**" if strong else f"{n}/{comparisons}")
        floor = results[("normal", name)][1]
        lines.append(f"| {name} | " + " | ".join(cells) + f" | {floor * 100:.2g}% |")
    return "\n".join(lines) + "\n"


def busy(n: int) -> list[subprocess.Popen]:
    # each stops by itself when this script is gone (killed or not), within a second
    code = (f"import os, time\nend = time.time() + 3600\nx = 0\nwhile time.time() < end and os.getppid() == "
            f"{os.getpid()}:\n    for _ in range(100000):\n        x = (x * 31 + 7) % 1000003\n")
    return [subprocess.Popen([sys.executable, "-c", code]) for _ in range(n)]


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--case", default="tiny-llama/lora/base")
    ap.add_argument("--steps", type=int, default=60)
    ap.add_argument("--comparisons", type=int, default=10)
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--quiet-only", action="store_true")
    ap.add_argument("--pools-out", metavar="FILE", help="also write every run's metrics here (JSON)")
    ap.add_argument("--pools-in", metavar="FILE", help="judge the pools of an earlier --pools-out; run nothing")
    args = ap.parse_args()
    if args.pools_in:
        doc = json.loads(Path(args.pools_in).read_text())
        for phase, title in (("quiet", "Quiet machine"), ("loaded", "Under a competing load")):
            if phase in doc:
                print(table(evaluate(doc[phase], args.comparisons, args.repeats), args.comparisons,
                            f"{title} ({doc['case']}, {doc['steps']} steps, {args.repeats} repeats a side, "
                            f"{args.comparisons} comparisons; pools of {args.pools_in}):"))
        return 0
    dump: dict = {"case": args.case, "steps": args.steps}
    case = {c.id: c for c in load_cases(ROOT / "cases", mode="benchmark")}[args.case]
    case = replace(case, training=replace(case.training, benchmark_steps=args.steps))
    n = 2 * args.repeats + 6  # normal pool: two disjoint draws with room to vary
    plan = {"normal": n, "compute": args.repeats + 3, "wait": args.repeats + 3, "memory": args.repeats + 3,
            "forward": args.repeats + 1}
    with tempfile.TemporaryDirectory() as tmp:
        t0 = time.time()
        quiet = dump["quiet"] = make_pools(case, plan, Path(tmp), "quiet")
        print(f"quiet pools: {sum(map(len, quiet.values()))} runs in {time.time() - t0:.0f} s", file=sys.stderr)
        print(table(evaluate(quiet, args.comparisons, args.repeats), args.comparisons,
                    f"Quiet machine ({args.case}, {args.steps} steps, {args.repeats} repeats a side, "
                    f"{args.comparisons} comparisons):"))
        if not args.quiet_only:
            load = busy(os.cpu_count() or 2)
            try:
                t0 = time.time()
                loaded = dump["loaded"] = make_pools(case, {"normal": n, "compute": args.repeats + 3,
                                                            "wait": args.repeats + 3}, Path(tmp), "loaded")
            finally:
                for p in load:
                    p.kill()
            print(f"loaded pools: {sum(map(len, loaded.values()))} runs in {time.time() - t0:.0f} s", file=sys.stderr)
            print(table(evaluate(loaded, args.comparisons, args.repeats), args.comparisons,
                        f"Under a competing load ({os.cpu_count()} busy processes, one per core):"))
    if args.pools_out:
        Path(args.pools_out).write_text(json.dumps(dump, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
