"""Fixed cost of isolating a case in its own process, before (a fresh interpreter per case that
imports torch, transformers, trl and peft) and after (a fork of the preloaded forkserver).

    python -m benchmarks.isolation [--cases 3]

Fixed cost = process start to first training step, minus building the model and trainer.
"""
from __future__ import annotations

import argparse
import statistics
import tempfile
from pathlib import Path

from suite.matrix.load import load_cases
from suite.paths import ROOT
from suite.run import runner

CASES = ["tiny-llama/lora/base", "tiny-qwen2/full/base", "tiny-llama/qlora/base", "tiny-llama/lora/packing"]


def fixed_costs(method: str, cases, tmp: Path) -> list[float]:
    costs = []
    for case in cases:
        work = tmp / f"{method}-{case.slug}"
        out = runner.run_in_child(runner.train_case, (case, work), work, 900, method=method)
        if not out.ok:
            raise SystemExit(f"{case.id} via {method} failed: {out.message}\n{out.stderr_tail}")
        t = out.payload["timing"]
        costs.append(t["setup_s"] - t["build_s"])
    return costs


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--cases", type=int, default=4)
    args = ap.parse_args()
    by_id = {c.id: c for c in load_cases(ROOT / "cases")}
    cases = [by_id[i] for i in CASES[: args.cases]]
    with tempfile.TemporaryDirectory() as tmp:
        spawn = fixed_costs("spawn", cases, Path(tmp))
        runner.ensure_started()
        fork = fixed_costs("forkserver", cases, Path(tmp))
    for name, costs in (("spawn (before)", spawn), ("forkserver (after)", fork)):
        print(f"{name:20s} median {statistics.median(costs):6.2f} s  per case: {[round(c, 2) for c in costs]}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
