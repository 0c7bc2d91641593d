"""What the suite's instrumentation costs: one tiny case through the suite and the same training
as a bare trl script (benchmarks/bare_trl.py), alternating, each in its own forked child.

    python -m benchmarks.overhead [--case tiny-llama/lora/base] [--pairs 5]

Prints the ratio (suite / bare) of the median per-step time (the trainer's own train_runtime /
steps, measured the same way on both sides) and of the median peak RSS (VmHWM, before the
suite's reload check).
"""
from __future__ import annotations

import argparse
import statistics
import tempfile
from pathlib import Path

from benchmarks import bare_trl
from suite.matrix.load import load_cases
from suite.paths import ROOT
from suite.run import runner


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--case", default="tiny-llama/lora/base")
    ap.add_argument("--pairs", type=int, default=5)
    args = ap.parse_args()
    case = {c.id: c for c in load_cases(ROOT / "cases", mode="benchmark")}[args.case]
    runner.ensure_started()
    suite_step, bare_step, suite_mem, bare_mem = [], [], [], []
    with tempfile.TemporaryDirectory() as tmp:
        for i in range(args.pairs):
            order = ("suite", "bare") if i % 2 == 0 else ("bare", "suite")
            for who in order:
                work = Path(tmp) / f"{who}{i}"
                if who == "suite":
                    out = runner.run_in_child(runner.train_case, (case, work), work, 900)
                    p = out.payload
                    suite_step.append(p["train"]["runtime_s"] / p["train"]["steps"])
                    suite_mem.append(p["memory"]["peak_rss_bytes"])
                else:
                    out = runner.run_in_child(bare_trl.train, (case,), work, 900)
                    p = out.payload
                    bare_step.append(p["train_runtime"] / p["steps"])
                    bare_mem.append(p["peak_rss_bytes"])
                if not out.ok:
                    raise SystemExit(f"{who} run failed: {out.message}\n{out.stderr_tail}")
    ms, mb = statistics.median(suite_step), statistics.median(bare_step)
    rs, rb = statistics.median(suite_mem), statistics.median(bare_mem)
    print(f"case {case.id}, {case.steps} steps, {args.pairs} alternating pairs")
    print(f"per-step time  suite {ms * 1e3:8.2f} ms   bare trl {mb * 1e3:8.2f} ms   ratio {ms / mb:.3f}")
    print(f"peak RSS       suite {rs / 2**20:8.1f} MiB  bare trl {rb / 2**20:8.1f} MiB  ratio {rs / rb:.3f}")
    print("all per-step times (ms): suite", [round(x * 1e3, 2) for x in suite_step],
          "bare", [round(x * 1e3, 2) for x in bare_step])
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
