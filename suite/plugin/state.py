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

from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterable

import pytest

from suite.errors import CaseError
from suite.judge.baselines import BaselineStore
from suite import cases as load
from suite.matrix import spec
from suite.records.results import new_run_id, read_manifest
from suite.run.session import RunSession

WORKERINPUT_RUN_ID = "ftsuite_run_id"


@dataclass
class PluginSession:
    config: pytest.Config = field(repr=False)
    cases: list[spec.Case] | None = field(default=None, repr=False)  # the case files, loaded once (pytest_configure)
    run_id: str | None = None  # decided by the controller (--run-id, else a new one), handed to xdist workers
    planned: list[str] | None = None  # the case ids this process collected (after -m, -k and --shard)
    shard: tuple[int, int] | None = None  # --shard I/N
    baselines_dir: Path | None = None  # golden loss curves to compare with (suite/plugin/baselines.py); None: none
    update_baselines: bool = False  # --update-baselines
    baselines: BaselineStore | None = None  # made with the run, handed to it
    run: RunSession | None = None  # the ft_session fixture's, made when a case first asks for it
    report_md: str | None = None  # --compare-to's Markdown summary (made at the session's end)

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
        return {WORKERINPUT_RUN_ID: self.run_id}

    def from_workerinput(self, workerinput: dict) -> None:
        """Take what the controller decided (to_workerinput's keys; one it did not send stays as it is)."""
        self.run_id = workerinput.get(WORKERINPUT_RUN_ID) or self.run_id

    # -- collection ---------------------------------------------------------------------------------

    def plan(self, items: Iterable[pytest.Item]) -> None:
        """The cases this session will run: the manifest lists them, so that a case with no record at
        the end is known to be lost, not unselected."""
        self.planned = [item.callspec.params["ft_case"].id for item in items
                        if "ft_case" in getattr(getattr(item, "callspec", None), "params", {})]

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
                                  baselines=self.baselines, planned=self.planned)
        except CaseError as exc:
            raise pytest.UsageError(f"invalid budget file: {exc}") from None
        return self.run

    def close_run(self) -> None:
        if self.run is not None:
            self.run.finish()

    @property
    def run_dir(self) -> Path:
        """results/<run-id>/ (with pytest-xdist, the folder the workers write)."""
        return Path(self.config.getoption("results_dir")) / str(self.run_id)

    def ran(self) -> bool:
        """Whether this session wrote a run: this process, or (on the xdist controller) its workers."""
        return (self.run is not None and self.run.started) or (self.run_dir / "manifest.json").is_file()

    def summary(self) -> str | None:
        """The terminal summary's line: where the records went, with their counts."""
        if self.run is not None and self.run.started:
            counts = ", ".join(f"{n} {k}" for k, n in sorted(self.run.counts.items()))
            return f"records of run {self.run.run_id} ({counts}) in {self.run.run_dir}"
        if self.is_controller and (self.run_dir / "manifest.json").is_file():  # the workers wrote it
            manifest = read_manifest(self.run_dir)
            counts = ", ".join(f"{n} {k}" for k, n in sorted((manifest.get("counts") or {}).items()))
            return (f"records of run {manifest['run_id']} ({counts}, {len(manifest['sessions'])} "
                    f"worker sessions) in {self.run_dir}")
        return None


_KEY = pytest.StashKey[PluginSession]()
