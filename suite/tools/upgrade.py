"""Upgrade check and bisect: the same cases on two (or more) version sets of the stack.

upgrade_check: make (or reuse) one environment per version set (suite/tools/envs.py), run the selected
cases in each through the same pytest entry point, and compare the two runs (suite/report/compare.py).
bisect: walk the released versions between a good and a bad one and name the first whose
verdict against the good one turns worse.
"""
from __future__ import annotations

import json
import re
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

from suite.errors import SuiteError
from suite.paths import ROOT, display
from suite.report import files as report_files
from suite.report import model as report_model
from suite.tools import envs
from suite.versions import STACK


def between(versions: list[str], good: str, bad: str) -> list[str]:
    """The versions from good to bad inclusive, in release order."""
    from packaging.version import Version

    g, b = Version(good), Version(bad)
    if not g < b:
        raise SuiteError(f"--good {good} must be older than --bad {bad}")
    inside = [v for v in versions if g <= Version(v) <= b]
    for end in (good, bad):
        if end not in inside:
            raise SuiteError(f"version {end} is not among the released versions: {', '.join(versions[-10:])} ...")
    return inside


@dataclass
class BisectResult:
    first_bad: str | None
    last_good: str | None
    probes: dict[str, bool] = field(default_factory=dict)  # version -> worse than good?
    note: str = ""
    labels: dict[str, str] = field(default_factory=dict)  # version or sha -> how to name it (a commit's subject)


def bisect(versions: list[str], is_worse: Callable[[str], bool]) -> BisectResult:
    """versions[0] is good, versions[-1] is bad; probe log2(n) versions to find the first worse one.

    The bad end is probed first: when it is not worse than the good one there is nothing to find.
    """
    probes: dict[str, bool] = {}

    def probe(v: str) -> bool:
        if v not in probes:
            probes[v] = is_worse(v)
        return probes[v]

    if not probe(versions[-1]):
        return BisectResult(None, versions[-1], probes, f"{versions[-1]} is not worse than {versions[0]}")
    lo, hi = 0, len(versions) - 1  # invariant: versions[lo] good, versions[hi] worse
    while hi - lo > 1:
        mid = (lo + hi) // 2
        if probe(versions[mid]):
            hi = mid
        else:
            lo = mid
    return BisectResult(versions[hi], versions[lo], probes)


@dataclass(frozen=True)
class Checks:
    """What an upgrade check (and each bisect probe) runs besides the selected cases."""
    invariants: bool = True  # tests/invariants/ in each environment, every relation compared
    invariants_k: str | None = None  # a -k expression choosing some invariant tests
    compat: bool = True  # checkpoints saved under one version set loaded under the other


@dataclass
class Timed:
    run_dir: Path
    cases_s: float
    invariants_s: float
    code: int  # pytest's exit code (the cases', else the invariants')


def invariant_selection(select: list[str], checks: Checks) -> list[str]:
    """The invariant tests the user's words choose: --invariants-k when given, else the cases' `-m`
    expression (invariant tests carry the same axis markers: `-m packing` runs the packing relations).
    The cases' `-k` names case ids, which no invariant test has, so it is not passed on."""
    if checks.invariants_k:
        return ["-k", checks.invariants_k]
    if "-m" in select:
        return ["-m", select[select.index("-m") + 1]]
    return []


def check_selection(select: list[str]) -> list[str]:
    """The case ids a -m / -k selection chooses, resolved against cases/ before any environment is made
    or reused: a typo or a selection of nothing is a usage error now, not two environments later."""
    from suite.cases import selected
    from suite.matrix.selection import Selection

    return [case.id for case in selected(Selection.from_args(select))]


def run_cases(env_dir: Path, run_id: str, results_dir: Path, select: list[str], checks: Checks = Checks(),
              log: Callable[[str], None] | None = None, side: str = "") -> Timed:
    """Run the matrix test with the environment's interpreter (then, if asked, the invariant tests,
    whose measurements go into the run folder); with log, a line per case as its record lands."""
    from suite.tools.progress import Progress, watch

    cmd = [str(envs.python_of(env_dir)), "-m", "pytest", str(ROOT / "tests" / "test_matrix.py"), "-q", "-p",
           "no:cacheprovider", "--rootdir", str(ROOT), "--run-id", run_id, "--results-dir", str(results_dir),
           *select]
    t0 = time.time()
    run_dir = results_dir / run_id
    progress = Progress(run_dir, side or run_id, log, t0) if log else None
    code, output = watch(cmd, run_dir, progress, cwd=ROOT, env=envs.pytest_env())
    if not (run_dir / "manifest.json").is_file():
        raise SuiteError(f"no results from {' '.join(cmd)} (exit {code}):\n{output[-2000:]}")
    cases_s, t1 = time.time() - t0, time.time()
    if checks.invariants:
        from suite.records.runs import INVARIANTS_FILE

        if log:
            log(f"{side or run_id}: invariants (tests/invariants {' '.join(invariant_selection(select, checks))}) ...")
        inv = envs.run_pytest(env_dir, [str(ROOT / "tests" / "invariants"), *invariant_selection(select, checks)],
                              log=(lambda line: log(f"{side or run_id}: {line.strip()}")) if log else None,
                              env={"FTSUITE_INVARIANTS_JSON": str(run_dir / INVARIANTS_FILE)})
        code = code or inv
    return Timed(run_dir, cases_s, time.time() - t1 if checks.invariants else 0.0, code)


def prepare(spec: envs.EnvSpec) -> tuple[Path, dict, float]:
    t0 = time.time()
    env_dir, info = envs.ensure_env(spec)
    return env_dir, info, time.time() - t0


def describe(info: dict) -> str:
    versions = info.get("versions", {})
    return ", ".join(f"{k} {v}" for k, v in versions.items() if v) + (" (cached)" if info.get("cached") else "")


def write_summary(path: Path, doc: dict) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(doc, indent=1, default=str) + "\n")


def upgrade_check(baseline: str | envs.EnvSpec, candidate: str | envs.EnvSpec, select: list[str], out: Path,
                  results_dir: Path, fail_on: tuple[str, ...], name: str, checks: Checks = Checks(),
                  log: Callable[[str], None] | None = None, repeats: int = 1,
                  benchmark: bool = False) -> tuple[int, dict]:
    """Run the selected cases (and the invariants) in both environments, load each side's checkpoints
    in the other, and render the report; returns (exit code, summary). A side is pins
    ("trl==1.16.0") or a whole EnvSpec (the control lock's, say)."""
    from suite.records import runs
    from suite.report import compare
    from suite.tools import checkpoints

    if repeats < 1:
        raise SuiteError(f"--repeats must be at least 1, got {repeats}")
    check_selection(select)
    t_start = time.time()
    summary: dict = {"name": name, "select": select, "invariants": checks.invariants, "compat": checks.compat,
                     "repeats": repeats, "benchmark": benchmark, "sides": {}}
    run_dirs, pythons, made = {}, {}, {}
    for side, want in (("baseline", baseline), ("candidate", candidate)):
        spec = want if isinstance(want, envs.EnvSpec) else envs.EnvSpec(envs.parse_pins(want, f"--{side}"))
        env_dir, info, env_s = prepare(spec)
        if log:
            log(f"{side}: environment {env_dir} {'reused' if info['cached'] else 'made'} in {env_s:.1f} s")
        made[side] = (spec, env_dir, info, env_s, f"{name}-{side}-{time.strftime('%Y%m%d-%H%M%S')}")
        pythons[side] = envs.python_of(env_dir)
    same = same_versions(made["baseline"][2], made["candidate"][2])
    if same:
        return 1, nothing_to_compare(summary, made, same, out, log)
    args = [*select, *(["--benchmark"] if benchmark else [])]
    totals = {side: [0.0, 0.0, 0] for side in made}
    for r in range(repeats):
        # alternating, A B A B ...: a drift of the machine reaches both sides alike
        for side in ("baseline", "candidate"):
            spec, env_dir, info, env_s, run_id = made[side]
            if log:
                log(f"{side}: running{f' (repeat {r + 1} of {repeats})' if repeats > 1 else ''} ...")
            timed = run_cases(env_dir, run_id, results_dir, args, checks if r == 0 else Checks(False, None, False),
                              log=log, side=side)
            run_dirs[side] = timed.run_dir
            totals[side][0] += timed.cases_s
            totals[side][1] += timed.invariants_s
            totals[side][2] = totals[side][2] or timed.code
    for side, (spec, env_dir, info, env_s, _) in made.items():
        cases_s, inv_s, code = totals[side]
        summary["sides"][side] = {"pins": " ".join(spec.pins), "env": str(env_dir), "env_cached": info["cached"],
                                  "env_s": round(env_s, 1), "versions": info["versions"], "run": str(run_dirs[side]),
                                  "run_s": round(cases_s + inv_s, 1), "cases_s": round(cases_s, 1),
                                  "invariants_s": round(inv_s, 1), "pytest_exit": code}
    if checks.compat:
        if log:
            log("checkpoint compatibility: loading each side's checkpoints in the other environment ...")
        doc = checkpoints.check(run_dirs["baseline"], run_dirs["candidate"], pythons["baseline"], pythons["candidate"])
        summary["compat"] = {"cases": doc["cases"], "wall_s": doc["wall_s"], "not_checked": doc["not_checked"]}
    summary["wall_s"] = round(time.time() - t_start, 1)
    from suite.report import causes
    from suite.report.answer import versions_changed

    rep = report_model.Report.build(runs.load(run_dirs["baseline"]), [runs.load(run_dirs["candidate"])])
    rep.change = versions_changed(made["baseline"][2]["versions"], made["candidate"][2]["versions"]) or None
    paths = report_files.write(rep, out, fail_on)
    failing = compare.gated(rep.frame, fail_on)
    summary["report"] = {k: str(v) for k, v in paths.items()}
    summary["verdicts"] = compare.counts(rep.frame)
    summary["gated"] = compare.counts(failing) if len(failing) else {}
    summary["no_check_names_a_cause"] = causes.unnamed_cases(rep.frame, rep.candidates)
    write_summary(out / "upgrade-check.json", summary)
    return (1 if len(failing) else 0), summary


def same_versions(base: dict, cand: dict) -> str:
    """The versions both sides resolved to when they are the same (empty: they differ)."""
    if not base.get("versions") or base.get("versions") != cand.get("versions"):
        return ""
    return ", ".join(f"{k} {v}" for k, v in (base.get("versions") or {}).items() if v)


def nothing_to_compare(summary: dict, made: dict, same: str, out: Path, log: Callable[[str], None] | None) -> dict:
    """Two sides that resolve to the same versions would compare a stack with itself: said before any
    case runs, written as the summary and the report, and the gate fails (nothing compared)."""
    from suite.report.verdicts import NOTHING_COMPARED

    why = (f"both sides resolve to the same versions ({same}): an upgrade-check of "
           f"{made['baseline'][0].pins} against {made['candidate'][0].pins} would compare the stack with itself; "
           f"no case was run")
    if log:
        log(f"nothing to compare: {why}")
    for side, (spec, env_dir, info, env_s, _) in made.items():
        summary["sides"][side] = {"pins": " ".join(spec.pins), "env": str(env_dir), "env_cached": info["cached"],
                                  "env_s": round(env_s, 1), "versions": info["versions"], "run": None}
    summary.update(nothing_compared=why, verdicts={NOTHING_COMPARED: 1}, gated={NOTHING_COMPARED: 1})
    out.mkdir(parents=True, exist_ok=True)
    report = out / "report.md"
    report.write_text(f"## ftsuite upgrade-check {summary['name']}\n\n**Gate: fails** · 1 {NOTHING_COMPARED}\n\n"
                      f"Nothing was compared: {why}.\n")
    summary["report"] = {"markdown": str(report)}
    write_summary(out / "upgrade-check.json", summary)
    return summary


# What the canary moves to its newest release (torch stays the machine's: it is the platform).
CANARY_PACKAGES = tuple(n for n in STACK if n != "torch")
GIT_REPOS = {"trl": "huggingface/trl", "peft": "huggingface/peft", "transformers": "huggingface/transformers",
             "accelerate": "huggingface/accelerate"}


def canary_pins(refs: dict[str, str], latest: Callable[[str], str] | None = None) -> tuple[str, ...]:
    """The newest release of every canary package, or a git ref where one is given (trl, peft, ...)."""
    latest = latest or (lambda n: envs.available_versions(n)[-1])
    pins = []
    for name in CANARY_PACKAGES:
        if refs.get(name):
            pins.append(f"git+https://github.com/{GIT_REPOS[name]}@{refs[name]}")
        else:
            pins.append(f"{name}=={latest(name)}")
    return tuple(pins)


def canary(select: list[str], refs: dict[str, str], out: Path, results_dir: Path, fail_on: tuple[str, ...],
           invariants: bool = True, log: Callable[[str], None] = print) -> tuple[int, dict]:
    """The control stack (the lock) against the newest releases: cases and invariants in both, one report."""
    from suite.tools import lock

    unknown = sorted(set(refs) - set(GIT_REPOS))
    if unknown:
        raise SuiteError(f"no git repository known for {', '.join(unknown)}; refs work for {', '.join(GIT_REPOS)}")
    check_selection(select)
    control = envs.EnvSpec(lock.stack_pins(), constraints=lock.LOCK_FILE.read_text())
    newest = envs.EnvSpec(canary_pins(refs))
    log(f"control ({display(lock.LOCK_FILE)}): {' '.join(control.pins)}")
    log(f"canary (newest): {' '.join(newest.pins)}")
    code, summary = upgrade_check(control, newest, select, out, results_dir, fail_on, "canary",
                                  Checks(invariants=invariants), log)
    write_summary(out / "canary.json", summary)
    return code, summary


def commits_between(repo: str | Path, good: str, bad: str) -> list[tuple[str, str]]:
    """(sha, subject) from good to bad inclusive, oldest first, along the first-parent line."""
    def git(*args: str) -> str:
        proc = subprocess.run(["git", "-C", str(repo), *args], capture_output=True, text=True, timeout=120)
        if proc.returncode != 0:
            raise SuiteError(f"git {' '.join(args)} in {repo}: {(proc.stderr or proc.stdout).strip()[-500:]}")
        return proc.stdout.strip()

    good_sha, bad_sha = (git("rev-parse", "--verify", f"{ref}^{{commit}}") for ref in (good, bad))
    proc = subprocess.run(["git", "-C", str(repo), "merge-base", "--is-ancestor", good_sha, bad_sha])
    if proc.returncode != 0:
        raise SuiteError(f"--good {good} is not an ancestor of --bad {bad} in {repo}")
    lines = git("log", "--reverse", "--first-parent", "--format=%H %s", f"{good_sha}..{bad_sha}").splitlines()
    first = git("log", "-1", "--format=%H %s", good_sha)
    return [tuple(line.split(" ", 1)) if " " in line else (line, "") for line in [first, *lines]]


def local_repo(repo: str) -> Path:
    """A repository argument as a local path: an existing folder, else a clone (cached) of the URL."""
    path = Path(repo).expanduser()
    if path.is_dir():
        return path.resolve()
    from suite.train.models import cache_root

    target = cache_root() / "repos" / re.sub(r"[^A-Za-z0-9._-]+", "_", repo)
    if not target.is_dir():
        proc = subprocess.run(["git", "clone", "--quiet", repo, str(target)], capture_output=True, text=True)
        if proc.returncode != 0:
            raise SuiteError(f"cannot clone {repo}: {(proc.stderr or proc.stdout).strip()[-500:]}")
    else:
        subprocess.run(["git", "-C", str(target), "fetch", "--quiet", "--all"], capture_output=True)
    return target


@dataclass
class Signature:
    """What the bad end fails on (its gated case x metric rows) is the regression being bisected: a later
    probe is worse when it shows that, not when one record's noisy metric (peak RSS, a timing) crosses
    its bound somewhere else. The first frame judged is the bad end's."""
    fail_on: tuple[str, ...]
    keys: set[tuple[str, str]] | None = None
    announce: str = ""  # the signature in words, once it is known

    def __call__(self, frame) -> tuple[bool, str]:
        from suite.report import compare

        failing = compare.gated(frame, self.fail_on)
        keys = list(zip(failing["case_id"], failing["metric"]))
        if self.keys is None:
            self.keys = set(keys)
            named = [f"{c} {m}" for c, m in sorted(self.keys)]
            self.announce = ", ".join(named[:8]) + (f" and {len(named) - 8} more" if len(named) > 8 else "")
        aside = sorted({f"{c} {m}" for c, m in keys if (c, m) not in self.keys})
        failing = failing.loc[[k in self.keys for k in keys]]
        verdict = ", ".join(f"{n} {v}" for v, n in compare.counts(failing).items()) or "no gated verdict"
        cases = sorted(set(failing["case_id"]))[:4]
        verdict += f" ({', '.join(cases)})" if cases else ""
        verdict += f"; not the bisected regression: {', '.join(aside[:4])}" if aside else ""
        return len(failing) > 0, verdict


def bisect_package(package: str, good: str, bad: str, select: list[str], results_dir: Path,
                   fail_on: tuple[str, ...], log: Callable[[str], None] = print, repo: str | None = None,
                   checks: Checks = Checks(compat=False)) -> BisectResult:
    """Find the first release (or, with repo, the first commit) of `package` between good and bad
    whose verdict against good is gated on what the bad end fails on (its case x metric rows). Each probe is an environment (cached) with that version
    installed (from source for a commit), the selected cases and the invariants; its cost is logged."""
    from suite.records import runs
    from suite.report import compare

    check_selection(select)
    subjects: dict[str, str] = {}
    if repo:
        where = local_repo(repo)
        commits = commits_between(where, good, bad)
        subjects = dict(commits)
        window = [sha for sha, _ in commits]
        log(f"{len(window)} commits of {package} from {good} to {bad} in {where}")
        pin = lambda sha: f"git+file://{where}@{sha}"  # noqa: E731
        label = lambda sha: f"{sha[:10]} {subjects[sha]}"  # noqa: E731
    else:
        window = between(envs.available_versions(package), good, bad)
        log(f"{len(window)} releases of {package} from {good} to {bad}: {', '.join(window)}")
        pin = lambda version: f"{package}=={version}"  # noqa: E731
        label = lambda version: version  # noqa: E731
    stamp = time.strftime("%Y%m%d-%H%M%S")

    def run_version(version: str) -> Path:
        env_dir, info, env_s = prepare(envs.EnvSpec(envs.parse_pins(pin(version), "--good/--bad")))
        timed = run_cases(env_dir, f"bisect-{package}-{version[:12]}-{stamp}", results_dir, select, checks)
        log(f"  {package} {label(version)}: environment {env_s:.0f} s{' (cached)' if info['cached'] else ''}, "
            f"cases {timed.cases_s:.0f} s" + (f", invariants {timed.invariants_s:.0f} s" if checks.invariants else ""))
        return timed.run_dir

    good_run = runs.load(run_version(window[0]))
    judge = Signature(fail_on)

    def is_worse(version: str) -> bool:
        worse, verdict = judge(compare.compare_runs(good_run, runs.load(run_version(version))))
        if judge.announce:
            log(f"  bisecting for: {judge.announce}")
            judge.announce = ""
        log(f"  {package} {label(version)} vs {label(window[0])}: {verdict}")
        return worse

    result = bisect(window, is_worse)
    result.labels = {v: label(v) for v in result.probes}
    return result
