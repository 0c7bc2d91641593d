"""Every release in the supported window runs a case of each family or skips it naming what it needs.

    python -m benchmarks.release_sweep                         # sweep what is not recorded yet (resumable)
    python -m benchmarks.release_sweep --only trl==1.3.0       # these cells first (repeatable)
    python -m benchmarks.release_sweep --rerun error           # run the ERROR cells again (after a fix)
    python -m benchmarks.release_sweep --max-minutes 90        # start no release after 90 minutes
    touch results/release-sweep/STOP                           # stop after the release that runs now
    python -m benchmarks.release_sweep --plan                  # the releases and families, in sweep order
    python -m benchmarks.release_sweep --table                 # the Markdown table of the recorded cells

The window is pyproject.toml's floors up to the control lock. For each of trl, transformers, peft,
bitsandbytes and accelerate, one release per minor version (the floor itself for the floor's minor,
else the minor's newest patch, the lock's for its own) is installed in a derived environment
(suite/tools/envs.py, cached) with every other package held at the control lock; where pip cannot
resolve that (the release needs another package older or newer than the lock's), the others move
as little as pip must, never past the lock's, and the cell says which moved and pip's reason. In
each environment the representative cases of every family (benchmarks/release_plan.py: trainer x
method from the case axes, a mixture of experts, the 8-bit optimizer) run once in regression mode,
one at a time, and each family's cell records ran, skipped (the requirement it names) or ERROR (the
exception's line) in results/release-sweep/cells/<package>-<version>/<family>.json. The releases
the lock pins are one run of the control stack itself. The table is in docs/floors.md.

The cases run with the suite of the checkout this script is imported from, and each cell names its
commit: run it from a clone at a commit (`--sweep-dir` pointing back here) while editing the suite.
"""
from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from dataclasses import asdict
from pathlib import Path

from benchmarks import release_plan as plan
from benchmarks.release_table import render
from suite.paths import LOCK_FILE, ROOT
from suite.versions import LOCK_LINE, STACK, norm_name, read_pins

SWEEP_DIR = ROOT / "results" / "release-sweep"
RUN_TIMEOUT_S = 3600  # one environment's cases: a hang must not stop the sweep
RESOLVED = (*STACK, "huggingface-hub", "tokenizers")  # what a cell records of its environment


def control_versions() -> dict[str, str]:
    pins = read_pins(LOCK_FILE)
    return {n: pins[norm_name(n)] for n in RESOLVED if norm_name(n) in pins}


def held_constraints(package: str) -> str:
    """The lock's text without the package's own line: everything else held where the lock pins it."""
    keep = []
    for line in LOCK_FILE.read_text().splitlines():
        m = LOCK_LINE.match(line.split("#", 1)[0].strip())
        if not (m and norm_name(m.group(1)) == norm_name(package)):
            keep.append(line)
    return "\n".join(keep) + "\n"


def conflict_words(message: str) -> str:
    """pip's reason a resolution is impossible, in its own words (the conflict lines), on one line."""
    lines = [ln.strip() for ln in message.splitlines()]
    if "The conflict is caused by:" in lines:
        start = lines.index("The conflict is caused by:") + 1
        stop = next((i for i in range(start, len(lines)) if not lines[i]), len(lines))
        return "; ".join(lines[start:stop])
    hits = [ln for ln in lines if "depends on" in ln or "requires" in ln or ln.startswith("ERROR")]
    return "; ".join(hits[:4]) or plan.first_line(message)


def explain_refusal(pins: tuple[str, ...], constraints: str, message: str) -> str:
    """pip's reason it could not hold the lock (the environment's quiet install leaves it out): the same
    resolution, dry, by this interpreter, whose stack is the lock's."""
    import tempfile

    with tempfile.NamedTemporaryFile("w", suffix=".txt") as held:
        held.write(constraints)
        held.flush()
        proc = subprocess.run([sys.executable, "-m", "pip", "install", "--dry-run", "--disable-pip-version-check",
                               "-c", held.name, *pins], capture_output=True, text=True, timeout=600)
    return conflict_words(proc.stdout + "\n" + proc.stderr) if proc.returncode else conflict_words(message)


def environment(package: str, version: str, sweep_dir: Path, control: dict[str, str]) -> tuple[Path, str]:
    """The derived environment of one release (cached), and pip's words when the lock could not hold the
    others. A refused resolution is remembered beside the cells, so a resumed sweep does not ask again."""
    from suite.tools import envs

    refused = sweep_dir / "refused" / f"{package}-{version}.txt"
    if not refused.is_file():
        held = held_pins(package, version)
        try:
            env_dir, _ = envs.ensure_env(envs.EnvSpec(held, constraints=held_constraints(package)))
            return env_dir, ""
        except envs.EnvError as exc:
            refused.parent.mkdir(parents=True, exist_ok=True)
            refused.write_text(explain_refusal(held, held_constraints(package), str(exc)) + "\n")
    env_dir, _ = envs.ensure_env(envs.EnvSpec(envs.parse_pins(" ".join(moved_pins(package, version, control)))))
    return env_dir, refused.read_text().strip()


def held_pins(package: str, version: str) -> tuple[str, ...]:
    """The release, and the rest of the stack by name (held at the lock by the constraints): named, so that pip
    resolves their requirements too; installed already, unnamed, their requirements would go unchecked (trl
    1.16.0 asks accelerate>=1.10.1, and `pip install accelerate==1.1.0` alone installed it beside, with a
    warning)."""
    return (f"{package}=={version}", *(n for n in STACK if n not in ("torch", package)))


def moved_pins(package: str, version: str, control: dict[str, str]) -> tuple[str, ...]:
    """The others free to move, but no further than the lock: pip keeps what satisfies and steps back the rest."""
    return (f"{package}=={version}", *(f"{n}<={control[n]}" for n in STACK if n not in ("torch", package)
                                       and n in control))


def run_cases(python: Path, run_id: str, runs_dir: Path, case_ids: list[str]) -> tuple[Path, str]:
    """The cases, one at a time, in regression mode; returns the run folder and pytest's last lines."""
    nodes = [f"tests/test_matrix.py::test_case[{c}]" for c in case_ids]
    cmd = [str(python), "-m", "pytest", *nodes, "-n", "0", "-q", "-p", "no:cacheprovider", "--rootdir", str(ROOT),
           "--run-id", run_id, "--results-dir", str(runs_dir), "--keep-checkpoints", "never"]
    from suite.tools.envs import pytest_env

    try:
        proc = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, env=pytest_env(),
                              timeout=RUN_TIMEOUT_S)
        tail = f"pytest exit {proc.returncode}: " + " | ".join((proc.stdout + proc.stderr).strip().splitlines()[-3:])
    except subprocess.TimeoutExpired:
        tail = f"pytest ran past {RUN_TIMEOUT_S} s"
    return runs_dir / run_id, tail


def outcomes(run_dir: Path, case_ids: list[str], tail: str) -> dict[str, dict]:
    """Each case's outcome from its record; a case with no record is lost, which is an error, never a skip."""
    from suite.records.results import load_run

    records, _ = load_run(run_dir) if run_dir.is_dir() else ([], [])
    found = {r.case_id: plan.outcome_of(r) for r in records}
    return {c: found.get(c, {"status": "lost", "reason": f"no record ({tail})"}) for c in case_ids}


def versions_of(python: Path) -> dict[str, str | None]:
    code = ("import importlib.metadata as m, json\n"
            "def v(n):\n try: return m.version(n)\n except m.PackageNotFoundError: return None\n"
            f"print(json.dumps({{n: v(n) for n in {list(RESOLVED)!r}}}))")
    return json.loads(subprocess.run([str(python), "-c", code], capture_output=True, text=True, check=True).stdout)


def commit() -> str | None:
    from suite.records.provenance import git_commit

    info = git_commit(ROOT)
    return None if info["commit"] is None else info["commit"][:12] + ("+dirty" if info["dirty"] else "")


def sweep_release(package: str, version: str, fams: list[plan.Family], sweep_dir: Path,
                  control: dict[str, str], log=print) -> None:
    """Run one release's families and write their cells (the control's release: the control stack itself,
    the running interpreter, its cells written for every package at the lock's release)."""
    t0, is_control, why = time.time(), version == control.get(package), ""
    try:
        if is_control:
            python = Path(sys.executable)
        else:
            env_dir, why = environment(package, version, sweep_dir, control)
            python = env_dir / "bin" / "python"
    except Exception as exc:  # noqa: BLE001 - an environment pip cannot make is that release's finding
        outs = {c: {"status": "no environment", "reason": plan.first_line(str(exc))} for f in fams for c in f.cases}
        write_cells(package, version, fams, outs, {}, why, sweep_dir, "", control)
        log(f"{package} {version}: no environment: {plan.first_line(str(exc))}")
        return
    run_id = f"{'control' if is_control else package + '-' + version}-{time.strftime('%Y%m%d-%H%M%S')}"
    case_ids = [c for f in fams for c in f.cases]
    run_dir, tail = run_cases(python, run_id, sweep_dir / "runs", case_ids)
    outs, versions = outcomes(run_dir, case_ids, tail), versions_of(python)
    for pkg in (plan.SWEPT if is_control else (package,)):
        write_cells(pkg, control[pkg] if is_control else version, fams, outs, versions, why, sweep_dir, run_id,
                    control)
    counts = {s: sum(1 for o in outs.values() if o["status"] == s) for s in {o["status"] for o in outs.values()}}
    log(f"{'control' if is_control else package + ' ' + version}: {counts} in {time.time() - t0:.0f} s")


def write_cells(package: str, version: str, fams: list[plan.Family], outs: dict[str, dict], versions: dict,
                why: str, sweep_dir: Path, run_id: str, control: dict[str, str]) -> None:
    moved = {n: v for n, v in versions.items()
             if n != package and v and control.get(n) and v.split("+")[0] != control[n]}  # 2.13.0+cpu is the lock's
    for fam in fams:
        cases = {c: outs[c] for c in fam.cases}
        cell = plan.Cell(package, version, fam.key, plan.family_status(cases), cases, versions, moved,
                         why if moved else "", commit(), time.strftime("%Y-%m-%d"), run_id)
        path = plan.cell_path(sweep_dir, package, version, fam.key)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(asdict(cell), indent=1) + "\n")


def window(sweep_dir: Path, control: dict[str, str], packages: tuple[str, ...]) -> dict[str, list[str]]:
    """package -> its releases in the window; the index's version lists are kept beside the cells."""
    from suite.tools import envs

    cache = sweep_dir / "available.json"
    known = json.loads(cache.read_text()) if cache.is_file() else {}
    for p in packages:
        if p not in known:
            known[p] = envs.available_versions(p)
            cache.parent.mkdir(parents=True, exist_ok=True)
            cache.write_text(json.dumps(known, indent=1) + "\n")
    floors = plan.floors()
    return {p: plan.releases(known[p], floors[p], control[p]) for p in packages}


def todo(order: list[tuple[str, str]], fams: list[plan.Family], sweep_dir: Path,
         rerun: set[str]) -> list[tuple[str, str, list[plan.Family]]]:
    """Each release with the families it still needs (no cell, or a cell whose status is to be rerun)."""
    out = []
    for package, version in order:
        need = []
        for fam in fams:
            path = plan.cell_path(sweep_dir, package, version, fam.key)
            if not path.is_file() or json.loads(path.read_text())["status"] in rerun:
                need.append(fam)
        if need:
            out.append((package, version, need))
    return out


def parse_args(argv: list[str]) -> argparse.Namespace:
    ap = argparse.ArgumentParser(prog="python -m benchmarks.release_sweep", description=__doc__.splitlines()[0])
    ap.add_argument("--sweep-dir", type=Path, default=SWEEP_DIR, help="cells, runs and caches (default: %(default)s)")
    ap.add_argument("--packages", nargs="+", choices=plan.SWEPT, default=list(plan.SWEPT))
    ap.add_argument("--only", action="append", default=[], metavar="PKG==VER", help="these releases first")
    ap.add_argument("--rerun", nargs="+", default=[], choices=("error", "skipped", "ran"),
                    help="run again the cells with these statuses (a fix since)")
    ap.add_argument("--max-minutes", type=float, default=None, help="start no release after this long")
    ap.add_argument("--just-only", action="store_true", help="run the --only releases and nothing else")
    ap.add_argument("--plan", action="store_true", help="print the releases in sweep order and stop")
    ap.add_argument("--table", action="store_true", help="print the Markdown table of the recorded cells and stop")
    return ap.parse_args(argv)


def main(argv: list[str]) -> int:
    from suite.cases import load_cases

    args = parse_args(argv)
    control = control_versions()
    fams = plan.families(load_cases())
    by_package = window(args.sweep_dir, control, tuple(args.packages))
    if args.table:
        print(render(plan.read_cells(args.sweep_dir), fams, by_package, control, plan.floors()))
        return 0
    first = [tuple(o.split("==", 1)) for o in args.only]
    order = list(dict.fromkeys([*first, *([] if args.just_only else plan.sweep_order(by_package))]))
    work = todo(order, fams, args.sweep_dir, set(args.rerun))
    if args.plan:
        for package, version, need in work:
            print(f"{package}=={version}: {', '.join(f.key for f in need)}")
        return 0
    t0, done_control = time.time(), False
    print(f"{len(work)} releases to run, {sum(len(f.cases) for f in fams)} cases each at most", flush=True)
    for package, version, need in work:
        if args.max_minutes is not None and time.time() - t0 > 60 * args.max_minutes:
            print(f"stopped after {args.max_minutes} minutes; {package} {version} and what follows not run", flush=True)
            return 0
        if (args.sweep_dir / "STOP").is_file():  # a graceful stop between two releases (resume later)
            (args.sweep_dir / "STOP").unlink()
            print(f"stopped (STOP file); {package} {version} and what follows not run", flush=True)
            return 0
        if version == control.get(package) and done_control:
            continue  # the control run wrote every package's cell at the lock's release
        done_control = done_control or version == control.get(package)
        sweep_release(package, version, need, args.sweep_dir, control, log=lambda s: print(s, flush=True))
    print(f"swept in {time.time() - t0:.0f} s", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
