"""`python -m suite ...` (also the `ftsuite` console script). pytest and the CLI share suite/."""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

from suite import wheels
from suite.errors import SuiteError

ROOT = Path(__file__).resolve().parent.parent


def cmd_run(args: argparse.Namespace, extra: list[str]) -> int:
    """Run the matrix through pytest (the same plugin, options and markers as `pytest`)."""
    import pytest

    return int(pytest.main([str(ROOT / "tests" / "test_matrix.py"), "--rootdir", str(ROOT), *extra]))


def cmd_cases(args: argparse.Namespace, extra: list[str]) -> int:
    from suite.cases import load_cases

    cases = load_cases(args.cases_dir)
    for case in cases:
        print(f"{case.id:70s} {' '.join(case.markers)}")
    print(f"{len(cases)} cases in {args.cases_dir}", file=sys.stderr)
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m suite", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    run = sub.add_parser("run", help="run cases; every further argument goes to pytest "
                                     "(-m EXPR, -k EXPR, --benchmark, --run-id ID, ...)")
    run.set_defaults(func=cmd_run)
    cases = sub.add_parser("cases", help="validate cases/ and list every case with its markers")
    cases.add_argument("--cases-dir", default=str(ROOT / "cases"))
    cases.set_defaults(func=cmd_cases)
    wheels.add_parser(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args, extra = parser.parse_known_args(argv)
    if extra and args.command != "run":
        parser.error(f"unrecognized arguments: {' '.join(extra)}")
    try:
        return args.func(args, extra)
    except SuiteError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
