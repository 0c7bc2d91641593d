"""How far the tiny golden curves move across CPU kernel paths, and the tolerances that follow.

    python -m benchmarks.curve_spread                      # run the tiny matrix under each kernel path
    python -m benchmarks.curve_spread --reuse              # reuse results/spread-<path>/ from an earlier call
    python -m benchmarks.curve_spread --reuse --also prev=DIR   # add curves recorded elsewhere (a run or a
                                                                # baselines folder), e.g. from another CPU

Torch's CPU kernels are picked by the vector ISA (`torch.backends.cpu.get_cpu_capability()`);
`ATEN_CPU_CAPABILITY` lowers it, so one machine reaches `default`, `avx2` and, where the CPU has
it, `avx512`. Each path rounds differently; training carries the difference forward. For every
tiny case this measures, over every pair of sources (the kernel paths, the committed golden curves
and any `--also`), the largest per-step difference and the mean residual (mean of the signed
differences over the curve), and per method the tolerance = margin x the largest measurement,
rounded up to two significant digits. It writes benchmarks/curve_spread.json (read by
tests/judge/test_baselines.py, which checks that the declared tolerances cover it) and prints the
table in docs/checks.md.
"""
from __future__ import annotations

import argparse
import itertools
import json
import math
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

from suite.paths import ROOT

OUT = ROOT / "benchmarks" / "curve_spread.json"
# Margins over the largest measured spread: wide where the measured spread is a few ulps (another
# CPU may round a few more), narrower where it is large and measured over several paths.
MARGINS = {"full": 10.0, "lora": 10.0, "qlora": 3.0}


def kernel_paths() -> list[str]:
    from suite.machine import cpu_info

    flags = set(cpu_info()["flags"])
    return ["default", "avx2"] + (["avx512"] if "avx512f" in flags else [])


def run_matrix(path: str) -> Path:
    run_id = f"spread-{path}"
    out = ROOT / "results" / run_id
    if out.exists():
        import shutil

        shutil.rmtree(out)
    env = {**os.environ, "ATEN_CPU_CAPABILITY": path}
    cmd = [sys.executable, "-m", "suite", "run", "-m", "tiny", "--no-baselines", "--run-id", run_id, "-q",
           "-p", "no:cacheprovider"]
    t0 = time.time()
    proc = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True)
    print(f"  {path}: exit {proc.returncode} in {time.time() - t0:.0f} s "
          f"({proc.stdout.strip().splitlines()[-1] if proc.stdout.strip() else 'no output'})", file=sys.stderr)
    return out


def curves_of(folder: Path) -> dict[str, dict[int, float]]:
    """Case id -> {step: loss} from a run folder (passed records) or a baselines folder."""
    out = {}
    for path in sorted(folder.glob("*.json")):
        doc = json.loads(path.read_text())
        if doc.get("kind") == "ftsuite.baseline-curve":
            out[doc["case_id"]] = {int(p["step"]): float(p["loss"]) for p in doc["curve"]}
        elif doc.get("kind") == "ftsuite.case-result" and doc.get("status") == "passed" and doc.get("loss_curve"):
            out[doc["case_id"]] = {int(p["step"]): float(p["loss"]) for p in doc["loss_curve"]}
    return out


def capability_of(folder: Path) -> str | None:
    for path in sorted(folder.glob("*.json")):
        doc = json.loads(path.read_text())
        kernels = ((doc.get("device") or {}).get("kernels") or {}) if doc.get("kind") == "ftsuite.case-result" else {}
        if kernels.get("torch_cpu_capability"):
            return kernels["torch_cpu_capability"]
    return None


def round_up(x: float) -> float:
    if x <= 0:
        return 0.0
    e = math.floor(math.log10(x)) - 1
    return math.ceil(x / 10**e) * 10**e


def measure(sources: dict[str, dict[str, dict[int, float]]]) -> dict:
    cases = sorted(set.intersection(*(set(c) for c in sources.values())))
    per_case = {}
    for case in cases:
        worst_step = worst_mean = 0.0
        for a, b in itertools.combinations(sources, 2):
            ca, cb = sources[a][case], sources[b][case]
            diffs = [ca[s] - cb[s] for s in ca if s in cb]
            worst_step = max(worst_step, max(abs(d) for d in diffs))
            worst_mean = max(worst_mean, abs(statistics.fmean(diffs)))
        ref = next(iter(sources.values()))[case]
        per_case[case] = {"max_step_diff": worst_step, "max_mean_residual": worst_mean,
                          "mean_loss": statistics.fmean(ref.values())}
    methods = {}
    for method, margin in MARGINS.items():
        mine = {c: v for c, v in per_case.items() if c.split("/")[1] == method}
        if not mine:
            continue
        step = max(v["max_step_diff"] for v in mine.values())
        mean = max(v["max_mean_residual"] for v in mine.values())
        atol, drift = round_up(margin * step), round_up(margin * mean)
        loss = min(v["mean_loss"] for v in mine.values())
        methods[method] = {"margin": margin, "max_step_diff": step, "max_mean_residual": mean, "curve_atol": atol,
                           "curve_drift": drift,
                           # a shift of every logged loss by this fraction is the smallest the drift bound sees
                           "smallest_systematic_shift": drift / loss, "smallest_single_step_change": atol / loss}
    return {"kind": "ftsuite.curve-spread", "schema_version": 1, "sources": list(sources), "cases": per_case,
            "methods": methods}


def markdown(doc: dict, declared: dict[str, tuple[float, float]]) -> str:
    lines = ["| case | largest per-step difference | largest mean residual | per-step bound | drift bound |",
             "|---|---:|---:|---:|---:|"]
    for case, v in doc["cases"].items():
        atol, drift = declared.get(case, (math.nan, math.nan))
        lines.append(f"| `{case}` | {v['max_step_diff']:.2g} | {v['max_mean_residual']:.2g} | {atol:.2g} | {drift:.2g} |")
    lines += ["", "| method | margin | largest per-step difference | largest mean residual | curve_atol | curve_drift "
                  "| smallest systematic shift caught | smallest one-step change caught |",
              "|---|---:|---:|---:|---:|---:|---:|---:|"]
    for method, m in doc["methods"].items():
        lines.append(f"| {method} | {m['margin']:g}x | {m['max_step_diff']:.2g} | {m['max_mean_residual']:.2g} | "
                     f"{m['curve_atol']:.2g} | {m['curve_drift']:.2g} | {100 * m['smallest_systematic_shift']:.2g}% "
                     f"| {100 * m['smallest_single_step_change']:.2g}% |")
    return "\n".join(lines) + "\n"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--reuse", action="store_true", help="use results/spread-<path>/ from an earlier call")
    parser.add_argument("--also", action="append", default=[], metavar="LABEL=DIR",
                        help="curves recorded elsewhere: a run folder or a baselines folder")
    parser.add_argument("--no-committed", action="store_true", help="leave the committed golden curves out")
    parser.add_argument("--write", action="store_true", help=f"write {OUT.relative_to(ROOT)}")
    args = parser.parse_args()
    from suite.matrix.load import load_cases

    sources = {}
    for path in kernel_paths():
        folder = ROOT / "results" / f"spread-{path}"
        if not (args.reuse and folder.is_dir()):
            folder = run_matrix(path)
        sources[f"{path} ({capability_of(folder) or '?'})"] = curves_of(folder)
    if not args.no_committed:
        sources["committed"] = curves_of(ROOT / "results" / "baselines" / "cpu")
    for item in args.also:
        label, _, folder = item.partition("=")
        sources[label] = curves_of(Path(folder))
    doc = measure(sources)
    declared = {c.id: (c.checks.curve_atol + c.checks.curve_rtol * min(doc["cases"][c.id]["mean_loss"], 1e9),
                       c.checks.curve_drift) for c in load_cases(ROOT / "cases") if c.id in doc["cases"]}
    print(markdown(doc, declared))
    if args.write:
        OUT.write_text(json.dumps(doc, indent=1) + "\n")
        print(f"wrote {OUT.relative_to(ROOT)}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
