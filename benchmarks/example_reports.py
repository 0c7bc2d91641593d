"""The committed example reports under reports/examples/, made again from committed inputs.

    python benchmarks/example_reports.py           # rewrite every regenerated example
    python benchmarks/example_reports.py --check   # exit 1 naming each example that differs from its inputs' report
    python benchmarks/example_reports.py --html    # also write report.html beside them (not committed: large)

Each regenerated example is `python -m suite report BASELINE CANDIDATE --out reports/examples/NAME` over
run folders committed under tests/fixtures/; what is committed of it is report.md and comparison.csv
(tests/benchmarks/test_example_reports.py holds them to this script's output). The examples made by earlier
versions from runs that were not kept are listed in reports/examples/README.md with the version that
made them; this script does not touch them.
"""
from __future__ import annotations

import argparse
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from suite.records import runs  # noqa: E402
from suite.report import compare  # noqa: E402
from suite.report import files as report_files  # noqa: E402
from suite.report.model import Report  # noqa: E402

EXAMPLES_DIR = ROOT / "reports" / "examples"
FIXTURES = ROOT / "tests" / "fixtures"
COMMITTED = ("report.md", "comparison.csv")  # the HTML embeds its plots: large, written with --html only


@dataclass(frozen=True)
class Example:
    name: str
    baseline: Path
    candidate: Path
    what: str  # one line for reports/examples/README.md


EXAMPLES = (
    Example("lora-r16-vs-A", FIXTURES / "runs" / "tiny-a", FIXTURES / "runs" / "tiny-b",
            "two real tiny runs, the second with `lora: {r: 16}`: not comparable, with the numbers (README's picture)"),
    Example("verdicts", FIXTURES / "runs" / "verdicts-base", FIXTURES / "runs" / "verdicts-cand",
            "a crafted pair with one case per verdict, lost and unreadable records, broken and known-broken relations"),
    Example("two-machines-avx512-bf16", FIXTURES / "machines" / "amd-epyc-zen4-avx512-bf16" / "benchmark-tiny-run",
            FIXTURES / "machines" / "intel-xeon-avx512-amx" / "benchmark-tiny-run",
            "the tiny matrix benchmarked on two machines of one kernel class (AMD EPYC Zen 4, Intel Xeon with AMX)"),
)


def render(example: Example, out: Path, html: bool = False) -> list[Path]:
    """The example's report into `out`: the committed files, and report.html when asked."""
    rep = Report.build(runs.load(example.baseline), [runs.load(example.candidate)])
    fail_on = compare.parse_fail_on(compare.DEFAULT_FAIL_ON)
    with tempfile.TemporaryDirectory() as tmp:
        written = report_files.write(rep, tmp, fail_on)
        out.mkdir(parents=True, exist_ok=True)
        keep = [*COMMITTED, *(["report.html"] if html else [])]
        for path in written.values():
            if path.name in keep:
                (out / path.name).write_bytes(path.read_bytes())
    return [out / name for name in keep]


def differences(examples: tuple[Example, ...] = EXAMPLES) -> list[str]:
    """Each committed file that differs from what its inputs make today (empty: all agree)."""
    out = []
    with tempfile.TemporaryDirectory() as tmp:
        for ex in examples:
            for made in render(ex, Path(tmp) / ex.name):
                committed = EXAMPLES_DIR / ex.name / made.name
                if not committed.is_file():
                    out.append(f"{_shown(committed)} is missing")
                elif committed.read_bytes() != made.read_bytes():
                    out.append(f"{_shown(committed)} differs from what {_shown(ex.baseline)} and "
                               f"{_shown(ex.candidate)} make today")
    return out


def _shown(path: Path) -> str:
    return str(path.relative_to(ROOT)) if path.is_relative_to(ROOT) else str(path)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--check", action="store_true", help="compare, write nothing; exit 1 on a difference")
    parser.add_argument("--html", action="store_true", help="also write report.html (not committed)")
    args = parser.parse_args()
    if args.check:
        diff = differences()
        for line in diff:
            print(line)
        return 1 if diff else 0
    for ex in EXAMPLES:
        for path in render(ex, EXAMPLES_DIR / ex.name, html=args.html):
            print(path.relative_to(ROOT))
    return 0


if __name__ == "__main__":
    sys.exit(main())
