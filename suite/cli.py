"""`python -m suite ...` (also the `ftsuite` console script). pytest and the CLI share suite/."""
from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

from suite import options
from suite.errors import SuiteError
from suite.paths import CASES, REPORTS, ROOT, TESTS, display
from suite.tools import wheels


def cmd_run(args: argparse.Namespace, extra: list[str]) -> int:
    """Run the matrix through pytest (the same plugin, options and markers as `pytest`)."""
    import pytest

    from suite.plugin.state import UserCommand

    command = UserCommand(["python", "-m", "suite", *args.argv])  # the manifest records what was typed
    return int(pytest.main([str(TESTS / "test_matrix.py"), "--rootdir", str(ROOT), *extra], plugins=[command]))


def cmd_cases(args: argparse.Namespace, extra: list[str]) -> int:
    from suite.cases import load_cases

    from suite.matrix.selection import left_out, left_out_count

    cases = load_cases(args.cases_dir)
    for case in cases:
        print(f"{case.id:70s} {' '.join(case.markers)}")
    tiers = left_out_count(left_out(cases, set()))  # what a run without --extended leaves out
    print(f"{len(cases)} cases in {args.cases_dir}" + (f"; without --extended a run leaves out {tiers}" if tiers else ""),
          file=sys.stderr)
    return 0


def cmd_history(args: argparse.Namespace, extra: list[str]) -> int:
    """Runs as a time series: change points and drifts, what changed at each; exit 1 with --gate N
    when a worse change point starts in one of the last N runs."""
    from suite.report import history, history_pages

    if not 0 < args.max_pvalue < 1:
        print("error: --max-pvalue must be in (0, 1)", file=sys.stderr)
        return 2
    if args.window < 2:
        print("error: --window must be at least 2", file=sys.stderr)
        return 2
    options.check_out_dir(args.out)
    h = history.analyse(args.runs, args.results_dir, args.cases, args.metrics, args.max_pvalue, args.window)
    if not args.quiet:
        print(history_pages.markdown(h), end="")
    if args.out:
        for kind, path in history_pages.write(h, args.out).items():
            print(f"{kind}: {path}", file=sys.stderr)
    for problem in h.skipped:
        print(f"warning: skipped {problem}", file=sys.stderr)
    if args.gate and not h.series:
        print(f"gate fails: nothing analysed: {h.nothing_analysed()}", file=sys.stderr)
        return 1
    if args.gate:
        recent = {r.name for r in h.runs[-args.gate:]}
        worse = [c for c in h.changes if c.run in recent and c.direction == "worse"]
        if worse:
            print(f"gate fails: {len(worse)} worse change point(s) in the last {args.gate} run(s): "
                  + "; ".join(f"{c.case_id} {c.metric} from {c.run}" for c in worse), file=sys.stderr)
            return 1
    return 0


def cmd_report(args: argparse.Namespace, extra: list[str]) -> int:
    """Compare runs (the first, or --baseline, is the baseline); exit 1 when the gate fails."""
    from suite.records import runs
    from suite.report import compare
    from suite.report import files as report_files
    from suite.report import markdown as report_md
    from suite.report import model as report_model

    try:
        fail_on = compare.parse_fail_on(args.fail_on)
    except ValueError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    options.check_out_dir(args.out)
    names = list(args.runs)
    base_name = args.baseline or names.pop(0)
    baseline = runs.load(base_name, args.results_dir)
    candidates = [runs.load(n, args.results_dir) for n in names]
    candidates = [c for c in candidates if c.path.resolve() != baseline.path.resolve()]
    rep = report_model.Report.build(baseline, candidates)
    if not args.quiet:
        print(report_md.markdown(rep, fail_on), end="")
    if args.out:
        for kind, path in report_files.write(rep, args.out, fail_on).items():
            print(f"{kind}: {path}", file=sys.stderr)
    for run, err in rep.unreadable:
        print(f"warning: skipped an unreadable record of run {run}: {err}", file=sys.stderr)
    failing = compare.gated(rep.gate_frame, fail_on)
    if len(failing):
        what = ", ".join(f"{n} {v}" for v, n in compare.counts(failing).items())
        print(f"gate fails: {what} (--fail-on {args.fail_on})", file=sys.stderr)
        return 1
    return 0


def cmd_merge_shards(args: argparse.Namespace, extra: list[str]) -> int:
    """The run folders of one night's `--shard I/N` slices merged into one run (suite/records/merge.py)."""
    from suite.records import merge, runs

    folders = [runs.resolve(r, args.results_dir) for r in args.shards]
    print(merge.merge(Path(args.out), folders).describe())
    return 0


def cmd_list(args: argparse.Namespace, extra: list[str]) -> int:
    from suite.records import runs

    found = runs.find_runs(args.results_dir)
    for path in found:
        print(runs.describe(path))
    print(f"{len(found)} runs in {args.results_dir}", file=sys.stderr)
    return 0


def cmd_show(args: argparse.Namespace, extra: list[str]) -> int:
    from suite.records import runs
    from suite.report import markdown as report_md
    from suite.report import model as report_model

    rep = report_model.Report.build(runs.load(args.run, args.results_dir), [])
    print(report_md.markdown(rep), end="")
    return 0


def _results_root(args: argparse.Namespace) -> Path:

    return Path(args.results_dir)


def _selection(args: argparse.Namespace) -> list[str]:
    sel = ["-m", args.m] if args.m else []
    return sel + (["-k", args.k] if args.k else [])


def cmd_upgrade_check(args: argparse.Namespace, extra: list[str]) -> int:
    """Run the selected cases under two version sets and gate on the comparison."""
    from suite.report import compare
    from suite.tools import upgrade

    fail_on = compare.parse_fail_on(args.fail_on)
    options.check_out_dir(args.out)
    name = Path(args.out).name
    t0 = time.time()
    checks = upgrade.Checks(invariants=not args.no_invariants, invariants_k=args.invariants_k,
                            compat=not args.no_compat)
    code, summary = upgrade.upgrade_check(args.baseline, args.candidate, _selection(args), Path(args.out),
                                          _results_root(args), fail_on, name, checks, log=print,
                                          repeats=args.repeats, benchmark=args.benchmark)
    _print_sides(summary, code, t0, "upgrade-check")
    return code


def _print_sides(summary: dict, code: int, t0: float, what: str) -> None:
    if summary.get("nothing_compared"):
        print(f"{what}: gate fails: nothing compared: {summary['nothing_compared']}; "
              f"report: {summary['report'].get('markdown', '')}")
        return
    for side, info in summary["sides"].items():
        inv = f", invariants {info['invariants_s']} s" if summary.get("invariants") else ""
        print(f"{side}: {info['pins']} -> {upgrade_describe(info)}"
              f"; environment {info['env_s']} s, cases {info['cases_s']} s{inv}, run {info['run']}")
    compat = summary.get("compat")
    if isinstance(compat, dict):
        print(f"checkpoint compatibility: {', '.join(compat['cases']) or 'no case'} in {compat['wall_s']} s"
              + (f" (not checked: {', '.join(compat['not_checked'])})" if compat["not_checked"] else ""))
    counted = lambda doc: ", ".join(f"{n} {v}" for v, n in doc.items()) or "none"  # noqa: E731
    print(f"verdicts: {counted(summary['verdicts'])}; report: {summary['report'].get('markdown', '')}")
    print(f"{what} wall time {time.time() - t0:.0f} s; gate "
          + (f"fails: {counted(summary['gated'])}" if code else "passes"))


def upgrade_describe(info: dict) -> str:
    from suite.tools import upgrade

    return upgrade.describe({"versions": info["versions"], "cached": info["env_cached"]})


def cmd_canary(args: argparse.Namespace, extra: list[str]) -> int:
    """The control lock's stack against the newest releases: cases and invariants, one report, gated."""
    from suite.report import compare
    from suite.tools import upgrade

    fail_on = compare.parse_fail_on(args.fail_on)
    options.check_out_dir(args.out)
    refs = dict(ref.split("=", 1) for ref in args.ref)
    t0 = time.time()
    code, summary = upgrade.canary(_selection(args), refs, Path(args.out), _results_root(args), fail_on,
                                   invariants=not args.no_invariants)
    _print_sides(summary, code, t0, "canary")
    return code


def cmd_lock(args: argparse.Namespace, extra: list[str]) -> int:
    from suite.tools import lock

    if args.action == "check":
        return lock.check()
    return lock.refresh(args.set, args.newest, args.rerecord)


def cmd_bisect(args: argparse.Namespace, extra: list[str]) -> int:
    """Name the first release between --good and --bad whose verdict against --good is gated."""
    from suite.report import compare
    from suite.tools import upgrade

    checks = upgrade.Checks(invariants=not args.no_invariants, invariants_k=args.invariants_k, compat=False)
    res = upgrade.bisect_package(args.package, args.good, args.bad, _selection(args), _results_root(args),
                                 compare.parse_fail_on(args.fail_on), repo=args.repo, checks=checks)
    if res.first_bad is None:
        print(f"no regression: {res.note}")
        return 0
    what = "commit" if args.repo else "release"
    name = res.labels.get(res.first_bad, res.first_bad)
    last = res.labels.get(res.last_good, res.last_good)
    print(f"first bad {what}: {args.package} {name} (last good: {last}); probed {len(res.probes)}: "
          + ", ".join(f"{res.labels.get(v, v).split(' ')[0]}={chr(10007) if w else chr(10003)}"
                      for v, w in res.probes.items()))
    return 1


def cmd_budgets_derive(args: argparse.Namespace, extra: list[str]) -> int:
    """Budget entries from measured benchmark records; printed, or written with --write. Exit 1 when a
    case was refused (too few records or runs): the others' entries are still printed or written."""
    from suite.judge import calibrate

    made = calibrate.derive(args.runs, args.profile, args.margin, args.setup_margin, _results_root(args),
                            args.select, time_margin=args.time_margin, work_margin=args.work_margin, note=args.note)
    for note in made.notes:
        print(f"warning: {note}", file=sys.stderr)
    for problem in calibrate.conflicts(args.budgets_dir, args.profile, made.entries):
        print(f"warning: {problem}", file=sys.stderr)
    for why in made.refused:
        print(f"refused: {why}", file=sys.stderr)
    if args.write and made.entries:
        path = calibrate.write(args.budgets_dir, args.profile, made.entries)
        print(f"wrote {len(made.entries)} measured entries to {path}")
    elif made.entries:
        print(calibrate.render(made.entries), end="")
    if made.refused:
        print(f"{len(made.refused)} case(s) refused, no entry derived for them", file=sys.stderr)
    return 1 if made.refused else 0


def cmd_references(args: argparse.Namespace, extra: list[str]) -> int:
    """Per-kernel-class references: import a run from another machine, measure bands, record this class."""
    from suite.judge.baselines import current_profile
    from suite.tools import references

    root, profile = Path(args.baselines_dir), args.profile or current_profile()
    if args.action == "record":
        return references.record(args.run_id, extra)
    if args.action == "class-bounds":
        path, doc = references.derive_class_bounds(args.runs, root, profile, Path(args.cases_dir), args.margin)
        print(json.dumps(doc["bounds"], indent=1))
        print(f"wrote {path}")
        return 0
    if args.action == "machines":
        for line in references.list_machines(root, profile, Path(args.cases_dir), args.write):
            print(line)
        return 0
    if args.action == "import":
        return _import_references(args, root, profile)
    path, doc = references.measure_bands(root, profile, Path(args.cases_dir))
    print(references.render_bands(doc))
    print(f"wrote {path}")
    return 0


def _import_references(args: argparse.Namespace, root: Path, profile: str) -> int:
    """Exit 0 when the import imported (the bands' re-measure is a note then), 2 on bad input."""
    from suite.tools import references

    fixtures = Path(args.fixtures) if args.fixtures else None
    done = references.import_runs(args.runs, root, profile, Path(args.cases_dir), fixtures)
    for line in done.lines:
        print(line)
    if not done.worked:
        print("error: no record of these runs could be imported (each left out above, with why)", file=sys.stderr)
        return 2
    try:
        path, doc = references.measure_bands(root, profile, Path(args.cases_dir))
    except references.ReferenceError as exc:
        print(f"note: cross-class bands not re-measured: {exc}", file=sys.stderr)
        return 0
    print(references.render_bands(doc))
    print(f"bands: {display(path)}")
    return 0


def _add_selection(p: argparse.ArgumentParser, default_m: str = "tiny") -> None:
    """The cases to run and the gate, shared by upgrade-check, bisect and canary."""
    p.add_argument("-m", default=default_m, metavar="EXPR", help=f"marker expression (default: {default_m})")
    p.add_argument("-k", default=None, metavar="EXPR", help="case id expression, as pytest -k")
    options.add_fail_on(p.add_argument)
    options.add_results_dir(p.add_argument)


def _add_invariant_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("--no-invariants", action="store_true", help="run the cases only, not tests/invariants/")
    p.add_argument("--invariants-k", metavar="EXPR", default=None, help="a -k expression choosing invariant tests")


def _add_quiet(p: argparse.ArgumentParser) -> None:
    p.add_argument("-q", "--quiet", action="store_true", help="do not print the Markdown")


def _add_run(sub: argparse._SubParsersAction) -> None:
    run = sub.add_parser("run", help="run cases; every further argument goes to pytest "
                                     "(-m EXPR, -k EXPR, --benchmark, --run-id ID, ...)")
    run.set_defaults(func=cmd_run)


def _add_cases(sub: argparse._SubParsersAction) -> None:
    cases = sub.add_parser("cases", help="validate cases/ and list every case with its markers")
    options.add_cases_dir(cases.add_argument)
    cases.set_defaults(func=cmd_cases)


def _add_upgrade_check(sub: argparse._SubParsersAction) -> None:
    up = sub.add_parser("upgrade-check", help="the same cases under two version sets of the stack, one report, "
                                              "exit 1 when the gate fails")
    up.add_argument("--baseline", required=True, metavar="PINS", help='e.g. "trl==1.15.0 peft==0.21.2"')
    up.add_argument("--candidate", required=True, metavar="PINS", help='e.g. "trl==1.16.0"')
    up.add_argument("--repeats", type=int, default=1, metavar="N",
                    help="run each side N times, alternating (A B A B ...); with 3 or more, every metric is judged by a "
                         "bootstrap test on the repeats and the report states each one's detection floor")
    up.add_argument("--benchmark", action="store_true", help="benchmark mode: long runs, budgets enforced")
    up.add_argument("--no-compat", action="store_true",
                    help="do not load each side's checkpoints in the other environment")
    _add_invariant_options(up)
    _add_selection(up)
    up.add_argument("--out", default=str(REPORTS / "upgrade-check"), metavar="DIR")
    up.set_defaults(func=cmd_upgrade_check)


def _add_bisect(sub: argparse._SubParsersAction) -> None:
    bis = sub.add_parser("bisect", help="walk the releases of a package between --good and --bad and name the "
                                        "first whose verdict turns worse")
    bis.add_argument("--package", required=True)
    bis.add_argument("--good", required=True, metavar="VERSION|REF")
    bis.add_argument("--bad", required=True, metavar="VERSION|REF")
    bis.add_argument("--repo", metavar="PATH|URL", default=None,
                     help="bisect the commits between --good and --bad (git refs) of this repository of the package, "
                          "installing each probe from source; without it, the released versions")
    _add_invariant_options(bis)
    _add_selection(bis)
    bis.set_defaults(func=cmd_bisect)


def _add_canary(sub: argparse._SubParsersAction) -> None:
    can = sub.add_parser("canary", help="the control lock's stack against the newest releases of the stack "
                                        "(or git refs): cases and invariants in both, one report, exit 1 when the "
                                        "gate fails")
    can.add_argument("--ref", action="append", default=[], metavar="PKG=REF",
                     help="a git ref instead of the newest release, e.g. trl=main (trl, peft, transformers, "
                          "accelerate); repeatable")
    can.add_argument("--no-invariants", action="store_true", help="run the cases only")
    can.add_argument("--out", default=str(REPORTS / "canary"), metavar="DIR")
    _add_selection(can)
    can.set_defaults(func=cmd_canary)


def _add_report(sub: argparse._SubParsersAction) -> None:
    rep = sub.add_parser("report", help="compare runs: Markdown on stdout, HTML/CSV/JSON with --out; "
                                        "exit 1 when the gate fails")
    rep.add_argument("runs", nargs="+", metavar="RUN", help="run ids under results/ or folders; the first "
                                                           "is the baseline unless --baseline is given")
    rep.add_argument("--baseline", metavar="RUN", help="the baseline run (then every RUN is a candidate)")
    rep.add_argument("--out", metavar="DIR", help="write report.md, report.html, comparison.csv/.json here")
    options.add_fail_on(rep.add_argument)
    _add_quiet(rep)
    options.add_results_dir(rep.add_argument)
    rep.set_defaults(func=cmd_report)


def _add_history(sub: argparse._SubParsersAction) -> None:
    his = sub.add_parser("history", help="runs as a time series: change points (Apache Otava) and drifts per case "
                                         "and metric, with what changed in the environment at each")
    his.add_argument("runs", nargs="+", metavar="RUN|DIR|GLOB", help="run ids, run folders, folders holding runs "
                                                                     "(a nightly's downloaded artifacts) or globs")
    his.add_argument("--out", metavar="DIR", help="write history.md, history.html, history.json and history.csv here")
    his.add_argument("-k", "--cases", default="*", metavar="GLOB", help="case ids to follow (a glob)")
    his.add_argument("--metrics", default="*", metavar="GLOB", help="metrics to follow (a glob)")
    his.add_argument("--max-pvalue", type=float, default=1e-4, help="Otava's significance for a change point")
    his.add_argument("--window", type=int, default=30, help="Otava's window of runs for its split step")
    his.add_argument("--gate", type=int, default=0, metavar="N",
                     help="exit 1 when a worse change point starts in one of the last N runs (Otava needs a few runs "
                          "after a shift to see it: a step shows a night or more after it happened)")
    _add_quiet(his)
    options.add_results_dir(his.add_argument)
    his.set_defaults(func=cmd_history)


def _add_budgets(sub: argparse._SubParsersAction) -> None:
    bud = sub.add_parser("budgets", help="budgets from measured runs").add_subparsers(dest="action", required=True)
    der = bud.add_parser("derive", help="per-case budget entries from benchmark records: the worst measured value "
                                        "with a margin; printed, or written into cases/budgets/PROFILE.yaml")
    der.add_argument("runs", nargs="+", help="run ids or folders of records (repeats and several runs: the worst "
                                             "counts); a case needs 3 records over 2 runs or is refused")
    der.add_argument("--profile", required=True, help="the hardware profile the records were measured on")
    der.add_argument("--margin", type=float, default=0.25, help="room for memory, step time and tokens/s (0.25: 25%%)")
    der.add_argument("--time-margin", type=float, default=None,
                     help="room for step time and step CPU time (default: --margin; may exceed 1)")
    der.add_argument("--work-margin", type=float, default=0.0, help="room for counted FLOPs per step (default 0: exact)")
    der.add_argument("--setup-margin", type=float, default=1.0, help="room for set-up time, which depends on the "
                                                                     "disk cache (1.0: twice the measured)")
    der.add_argument("--select", default="*", help="a glob on case ids")
    der.add_argument("--note", default="", help="said in every derived entry's source (e.g. how busy the machine "
                                                "was)")
    options.add_budgets_dir(der.add_argument)
    der.add_argument("--write", action="store_true", help="replace the measured block of the profile's file")
    options.add_results_dir(der.add_argument)
    der.set_defaults(func=cmd_budgets_derive)


def _add_lock(sub: argparse._SubParsersAction) -> None:
    lk = sub.add_parser("lock", help="the control lock (requirements/control.txt)").add_subparsers(
        dest="action", required=True)
    ref = lk.add_parser("refresh", help="resolve requirements/control.in (with --set/--newest) into control.txt, run "
                                        "the tiny matrix and the invariants under it, and write it only if they pass")
    ref.add_argument("--set", action="append", default=[], metavar="NAME==VERSION",
                     help="move one package of the control stack, e.g. transformers==5.24.0; repeatable")
    ref.add_argument("--newest", action="store_true", help="move every package but torch to its newest release")
    ref.add_argument("--rerecord", metavar="REASON", default=None,
                     help="re-record the golden curves under the new set (on purpose: the reason goes into the lock)")
    ref.set_defaults(func=cmd_lock)
    chk = lk.add_parser("check", help="exit 1 when the installed stack is not the lock's")
    chk.set_defaults(func=cmd_lock)


def _add_reference_options(p: argparse.ArgumentParser) -> None:
    """Where the references are and which profile: every `references` action has them."""
    options.add_baselines_dir(p.add_argument)
    p.add_argument("--profile", default=None, help="hardware profile (default: this machine's)")
    p.add_argument("--cases-dir", default=str(CASES))
    p.set_defaults(func=cmd_references)


def _add_references(sub: argparse._SubParsersAction) -> None:
    refs = sub.add_parser("references", help="golden curves and tight bounds per kernel class "
                                             "(docs/kernel-classes.md)").add_subparsers(dest="action", required=True)
    imp = refs.add_parser("import", help="other machines' regression run(s) into their kernel class's references "
                                         "(new ones written, existing ones confirmed), then bands; exit 0 imported, "
                                         "2 bad input")
    imp.add_argument("runs", nargs="+", help="run folders (several: xdist workers of one run, other machines)")
    imp.add_argument("--fixtures", metavar="DIR", default=None,
                     help="keep a copy of each run's records under DIR/<run folder>/ for the replay test, e.g. "
                          "tests/fixtures/machines/intel-xeon-avx512-amx (default: no copy)")
    _add_reference_options(imp)
    mac = refs.add_parser("machines", help="each reference's machines, runs and spread (provisional: one machine)")
    mac.add_argument("--write", action="store_true", help="store the fields in references recorded before they existed")
    _add_reference_options(mac)
    rec = refs.add_parser("record", help="this machine's kernel class: the tiny matrix with --update-baselines "
                                         "(further arguments go to pytest); then run `references bands`")
    rec.add_argument("--run-id", default="references")
    _add_reference_options(rec)
    bnd = refs.add_parser("bands", help="measure the cross-class bands from the references at hand")
    _add_reference_options(bnd)
    cb = refs.add_parser("class-bounds", help="a kernel class's own bounds for reload and reference checks from "
                                              "its runs, where they measured more than the declared bound")
    cb.add_argument("runs", nargs="+", help="run folders of one kernel class (regression and benchmark)")
    cb.add_argument("--margin", type=float, default=0.5, help="room over the worst measured value (0.5: x1.5)")
    _add_reference_options(cb)


def _add_merge_shards(sub: argparse._SubParsersAction) -> None:
    mer = sub.add_parser("merge-shards", help="merge the run folders of one night's --shard I/N slices into one "
                                              "run (checked: one plan, disjoint; a missing slice's cases are lost)")
    mer.add_argument("out", metavar="OUT", help="the merged run's folder (new or empty; its name is the run id)")
    mer.add_argument("shards", nargs="+", metavar="RUN", help="the shards' run ids under results/ or folders")
    options.add_results_dir(mer.add_argument)
    mer.set_defaults(func=cmd_merge_shards)


def _add_list(sub: argparse._SubParsersAction) -> None:
    lst = sub.add_parser("list", help="runs under results/ with their environments")
    options.add_results_dir(lst.add_argument)
    lst.set_defaults(func=cmd_list)


def _add_show(sub: argparse._SubParsersAction) -> None:
    show = sub.add_parser("show", help="one run: status and key metrics of every case")
    show.add_argument("run", metavar="RUN")
    options.add_results_dir(show.add_argument)
    show.set_defaults(func=cmd_show)


def build_parser() -> argparse.ArgumentParser:
    """The CLI: one subcommand per `_add_*`, in the order `--help` lists them."""
    parser = argparse.ArgumentParser(prog="python -m suite", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    _add_run(sub)
    _add_cases(sub)
    wheels.add_parser(sub)
    _add_upgrade_check(sub)
    _add_bisect(sub)
    _add_canary(sub)
    _add_report(sub)
    _add_history(sub)
    _add_merge_shards(sub)
    _add_budgets(sub)
    _add_lock(sub)
    _add_references(sub)
    _add_list(sub)
    _add_show(sub)
    return parser


# Exit codes of the suite's own commands (docs/exit-codes.md); `run` returns pytest's own.
EXIT_PASS, EXIT_GATE, EXIT_USAGE, EXIT_SUITE = 0, 1, 2, 3


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    argv = list(sys.argv[1:] if argv is None else argv)
    args, extra = parser.parse_known_args(argv)
    args.argv = argv
    if extra and args.command != "run" and getattr(args, "action", None) != "record":
        parser.error(f"unrecognized arguments: {' '.join(extra)}")
    try:
        return args.func(args, extra)
    except (SuiteError, ValueError) as exc:  # input errors: a message, not a traceback
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except Exception as exc:  # noqa: BLE001 - a bug of the suite: one line, the traceback in a file
        print(f"error: the suite itself failed ({type(exc).__name__}: {exc}); this is a bug, not your input: "
              f"the traceback is in {_save_traceback(argv)}", file=sys.stderr)
        return EXIT_SUITE


def _save_traceback(argv: list[str]) -> str:
    """The current exception's traceback, with the command, in a file of its own (its path)."""
    import tempfile
    import traceback

    fd, path = tempfile.mkstemp(prefix=f"ftsuite-error-{time.strftime('%Y%m%d-%H%M%S')}-", suffix=".txt")
    with open(fd, "w") as fh:
        fh.write(f"python -m suite {' '.join(argv)}\n\n{traceback.format_exc()}")
    return path
