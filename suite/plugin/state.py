"""The plugin's one session object (pytest-benchmark's BenchmarkSession): what a pytest session of ftsuite
knows, kept in `config.stash` and reached with `PluginSession.of(config)`. The hooks in cases.py, shard.py,
baselines.py and compare.py read and write it; the work is here and in the other stages.

Under pytest-xdist the controller decides the run id and hands it to each worker in `workerinput`
(`to_workerinput` / `from_workerinput`): a worker parses the command line afresh and would otherwise make
its own, and one pytest run would write one run folder per worker. The plan (the case ids collected) is
not handed over: the controller collects nothing (xdist's DSession.pytest_collection), and every worker
collects the same items (xdist checks that they agree), so each worker's plan is the session's.
"""
from __future__ import annotations

import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterable

import pytest

from suite.errors import CaseError
from suite.judge.baselines import BaselineStore
from suite import cases as load
from suite.matrix import spec
from suite.matrix.selection import left_out, left_out_line, tiers_asked
from suite.records.results import check_run_id, new_run_id, read_manifest
from suite.run.resume import Stopped, stopped_run
from suite.run.session import RunSession

WORKERINPUT_RUN_ID = "ftsuite_run_id"
WORKERINPUT_COMMAND = "ftsuite_command"
WORKERINPUT_RECORDED = "ftsuite_recorded"


@dataclass
class PluginSession:
    config: pytest.Config = field(repr=False)
    cases: list[spec.Case] | None = field(default=None, repr=False)  # the case files, loaded once (pytest_configure)
    run_id: str | None = None  # decided by the controller (--run-id, else a new one), handed to xdist workers
    planned: list[str] | None = None  # the case ids this process collected (after -m, -k and --shard)
    shard: tuple[int, int] | None = None  # --shard I/N
    shard_plan: list[str] | None = None  # with --shard: the case ids collected before the slice was kept
    baselines_dir: Path | None = None  # golden loss curves to compare with (suite/plugin/baselines.py); None: none
    update_baselines: bool = False  # --update-baselines
    baselines: BaselineStore | None = None  # made with the run, handed to it
    run: RunSession | None = None  # the ft_session fixture's, made when a case first asks for it
    report_md: str | None = None  # --compare-to's Markdown summary (made at the session's end)
    command: list[str] | None = None  # what the user typed (UserCommand; an xdist worker: the controller's)
    stopped: Stopped | None = None  # the run this session reruns into was stopped: it finishes it
    recorded: list[str] | None = None  # ... and leaves out these cases, which have a record (the controller's)
    left_out: dict[str, list[str]] | None = None  # tier -> the case ids it left out (no --extended); None: not known
    tests_left_out: dict[str, int] | None = None  # tier -> how many of the suite's own tests it left out

    @classmethod
    def of(cls, config: pytest.Config) -> PluginSession:
        """The config's session object, made on first use (each plugin module can be loaded alone)."""
        if _KEY not in config.stash:
            config.stash[_KEY] = cls(config)
        return config.stash[_KEY]

    # -- configure: the cases and the run id --------------------------------------------------------

    def configure(self) -> None:
        """Load the cases (a bad case file stops the session here, naming its file and field) and
        decide the run id: the controller's on an xdist worker, else --run-id or a new one."""
        cfg = self.config
        if not cfg.option.help:
            self.load_cases()
            if cfg.getoption("benchmark_repeat") < 1:
                raise pytest.UsageError("--benchmark-repeat must be at least 1")
        if self.is_worker:
            self.from_workerinput(cfg.workerinput)
        self.run_id = self.run_id or cfg.getoption("run_id") or new_run_id()
        try:  # a run id that is no folder name fails here, not in every case that writes a record
            check_run_id(self.run_id)
        except ValueError as exc:
            raise pytest.UsageError(f"--run-id: {exc}") from None
        if not self.is_worker and (self.run_dir / "manifest.json").is_file():
            self.stopped = stopped_run(self.run_dir)
            self.recorded = sorted(self.stopped.recorded) if self.stopped else None

    def check_selection(self) -> None:
        """-m and -k checked as pytest checks them during collection, but at the session's start: under
        pytest-xdist the controller collects nothing, and a worker's UsageError reaches the user as a
        40-line INTERNALERROR (exit 3) instead of pytest's message (exit 4). pytest's own functions, so
        the words and the rules (--strict-markers: every -m name registered) are its own."""
        from _pytest import mark  # no public API parses -m and -k; pytest < 9 does not check -m names

        opt = self.config.option
        if (opt.keyword or "").strip():
            mark._parse_expression(opt.keyword.lstrip(), "Wrong expression passed to '-k'")
        if opt.markexpr:
            expr = mark._parse_expression(opt.markexpr, "Wrong expression passed to '-m'")
            validate = getattr(mark, "_validate_marker_names", None)
            # The names only on the controller: without xdist pytest checks them itself after collection,
            # when a conftest below tests/ has registered its markers; the controller collects nothing, so it
            # knows the plugin's markers and tests/conftest.py's (loaded first), where every marker is declared.
            if validate is not None and self.is_controller:
                validate(expr, self.config)

    def load_cases(self) -> list[spec.Case]:
        if self.cases is None:
            mode = "benchmark" if self.config.getoption("benchmark") else "regression"
            try:
                self.cases = load.load_cases(self.config.getoption("cases_dir"), mode=mode)
            except CaseError as exc:
                raise pytest.UsageError(f"invalid case file: {exc}") from None
        return self.cases

    # -- pytest-xdist: what the controller decided, for its workers ---------------------------------

    @property
    def is_worker(self) -> bool:
        return hasattr(self.config, "workerinput")

    @property
    def is_controller(self) -> bool:
        """The process that hands cases to xdist workers and runs none itself."""
        return bool(getattr(self.config.option, "numprocesses", None)) and not self.is_worker

    def to_workerinput(self) -> dict:
        """What a worker must share with the controller, for xdist's `node.workerinput`."""
        return {WORKERINPUT_RUN_ID: self.run_id, WORKERINPUT_COMMAND: self.user_command(),
                WORKERINPUT_RECORDED: self.recorded}

    def from_workerinput(self, workerinput: dict) -> None:
        """Take what the controller decided (to_workerinput's keys; one it did not send stays as it is)."""
        self.run_id = workerinput.get(WORKERINPUT_RUN_ID) or self.run_id
        self.command = workerinput.get(WORKERINPUT_COMMAND) or self.command
        self.recorded = workerinput.get(WORKERINPUT_RECORDED, self.recorded)

    def user_command(self) -> list[str]:
        """The command the manifest records: `python -m suite run ...` as typed (UserCommand), else pytest's
        arguments (a worker's sys.argv is execnet's `-c`, never the user's)."""
        if self.command is None:
            main = Path(sys.argv[0] if sys.argv else "")
            program = (["python", "-m", "pytest"] if main.name == "__main__.py" and main.parent.name == "pytest"
                       else ["pytest"])
            self.command = program + [str(a) for a in self.config.invocation_params.args]
        return list(self.command)

    # -- collection ---------------------------------------------------------------------------------

    def plan(self, items: Iterable[pytest.Item]) -> None:
        """The cases this session will run: the manifest lists them, so that a case with no record at
        the end is known to be lost, not unselected."""
        self.planned = [cid for cid in map(_case_id, items) if cid is not None]

    def leave_out_recorded(self, items: list[pytest.Item]) -> None:
        """Rerunning into a stopped run: deselect the cases that have a record (they are kept, not rerun)."""
        if not self.recorded:
            return
        done = set(self.recorded)
        keep = [i for i in items if _case_id(i) not in done]
        if len(keep) < len(items):
            self.config.hook.pytest_deselected(items=[i for i in items if _case_id(i) in done])
            items[:] = keep

    def leave_out_tiers(self, items: list[pytest.Item]) -> None:
        """Deselect the cases of an opt-in tier the run did not ask for (--extended, or an -m naming it), and keep
        which, for the manifest and the summary: a run that left a tier out says so, never compares fewer cases
        silently."""
        asked = tiers_asked(self.config.getoption("extended"), self.config.option.markexpr)
        self.left_out = left_out([i.callspec.params["ft_case"] for i in items if _case_id(i) is not None], asked)
        out = {cid for ids in self.left_out.values() for cid in ids}
        # the suite's own tests may sit in a tier too (`@pytest.mark.extended`: the slowest members of a family's
        # parametrization, docs/cases.md), left out the same way and counted apart
        tiers = [t for t in spec.TIERS[1:] if t not in asked]
        tests = [i for i in items if _case_id(i) is None and any(i.get_closest_marker(t) for t in tiers)]
        self.tests_left_out = {t: sum(1 for i in tests if i.get_closest_marker(t)) for t in tiers}
        dropped = [i for i in items if _case_id(i) in out] + tests
        if dropped:
            self.config.hook.pytest_deselected(items=dropped)
            gone = {id(i) for i in dropped}
            items[:] = [i for i in items if id(i) not in gone]

    def tier_line(self) -> str | None:
        """The line that says what the tiers left out (the header after collection, and the summary)."""
        line = left_out_line(self.left_out or {}, self.tests_left_out)
        return f"ftsuite: {line}" if line else None

    def resume_line(self) -> str | None:
        """The report header's line when this session finishes a stopped run."""
        return f"ftsuite: {self.stopped.describe()}" if self.stopped else None

    # -- the run ------------------------------------------------------------------------------------

    def compare_baselines(self, root: Path, update: bool = False) -> None:
        """Check each tiny case's loss curve against the golden curves under root (the store is made
        with the run: it detects the hardware profile, which a session that runs no case need not do)."""
        self.baselines_dir, self.update_baselines = Path(root), update

    def open_run(self) -> RunSession:
        cfg = self.config
        if self.baselines is None and self.baselines_dir is not None:
            self.baselines = BaselineStore(self.baselines_dir, update=self.update_baselines)
        try:
            self.run = RunSession(results_root=Path(cfg.getoption("results_dir")), run_id=self.run_id or new_run_id(),
                                  mode="benchmark" if cfg.getoption("benchmark") else "regression",
                                  timeout_s=cfg.getoption("case_timeout"),
                                  keep_checkpoints=cfg.getoption("keep_checkpoints"),
                                  profile=cfg.getoption("budget_profile"), budgets_dir=cfg.getoption("budgets_dir"),
                                  baselines=self.baselines, planned=self.planned, argv=self.user_command(),
                                  shard=self.shard, shard_plan=self.shard_plan, left_out=self.left_out)
        except CaseError as exc:
            raise pytest.UsageError(f"invalid budget file: {exc}") from None
        return self.run

    def close_run(self, interrupted: bool = False) -> None:
        if self.run is not None:
            self.run.finish(interrupted)

    def finish_stopped(self) -> None:
        """A stopped run whose every planned case had a record already (it was killed after its last one):
        this session ran nothing, and finishes it by writing a session of its own that ran no case."""
        if self.stopped is None or self.is_worker:
            return
        now = stopped_run(self.run_dir)
        if now is not None and not now.missing:
            self.planned = self.planned or []
            run = self.open_run()
            run.start()
            self.close_run()

    @property
    def run_dir(self) -> Path:
        """results/<run-id>/ (with pytest-xdist, the folder the workers write)."""
        return Path(self.config.getoption("results_dir")) / str(self.run_id)

    def ran(self) -> bool:
        """Whether this session wrote a run: this process, or (on the xdist controller) its workers."""
        return (self.run is not None and self.run.started) or (self.run_dir / "manifest.json").is_file()

    def summary(self) -> str | None:
        """The terminal summary's line: where the records went, with their counts (and, for a run that
        stopped before it finished, how to finish it; and what the tiers left out)."""
        text = self._records_summary()
        manifest = read_manifest(self.run_dir) if (self.run_dir / "manifest.json").is_file() else {}
        tiers = left_out_line(manifest.get("left_out") or self.left_out or {})
        return "\n".join(t for t in (text, tiers) if t) or None

    def _records_summary(self) -> str | None:
        if self.run is not None and self.run.started:
            line = f"records of run {self.run.run_id} ({_counts(self.run.counts)}) in {self.run.run_dir}"
        elif self.is_controller and (self.run_dir / "manifest.json").is_file():  # the workers wrote it
            manifest = read_manifest(self.run_dir)
            sessions = len(manifest.get("sessions") or [])
            line = (f"records of run {manifest['run_id']} ({_counts(manifest.get('counts') or {})}; "
                    f"from {sessions} session{'s' if sessions != 1 else ''}) in {self.run_dir}")
        else:
            return None
        stopped = stopped_run(self.run_dir)
        if stopped is not None:
            line += (f"\nthe run stopped before it finished: {len(stopped.missing)} planned case(s) have no record; "
                     f"the same command with --run-id {stopped.run_id} runs them and finishes it")
        return line


def _case_id(item: pytest.Item) -> str | None:
    """The case id of a matrix item (its ft_case parameter), None for any other test."""
    params = getattr(getattr(item, "callspec", None), "params", {})
    return params["ft_case"].id if "ft_case" in params else None


def _counts(counts: dict[str, int]) -> str:
    """`1 failed, 2 passed`, or `no record` (a run stopped before its first record)."""
    return ", ".join(f"{n} {k}" for k, n in sorted(counts.items())) or "no record"


_KEY = pytest.StashKey[PluginSession]()


class UserCommand:
    """A plugin object `python -m suite run` hands to pytest.main: the command the user typed."""

    def __init__(self, argv: list[str]):
        self.argv = list(argv)

    def pytest_configure(self, config: pytest.Config) -> None:
        PluginSession.of(config).command = self.argv
