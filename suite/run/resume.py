"""A stopped run, and how a rerun into its id finishes it (docs/results-schema.md, "A stopped run").

A session that writes into a run lists itself in the manifest and says when it finished. One that was
killed (SIGKILL of the process group, a lost machine) never says so; one that was interrupted (Ctrl-C)
says so with `stopped`. Either way the run is unfinished until a later session into the same run id
runs the planned cases that have no record: the run is finished when every session has ended and every
planned case has a record. The records already written are kept, never rerun: their cases are left out
of the rerun's selection (suite/plugin/state.py). A session that may still be running (another host,
or a live process) is never taken for a stopped one, so two processes writing into one run id at once
keep working as before.
"""
from __future__ import annotations

import socket
import time
from dataclasses import dataclass, field
from pathlib import Path

from suite.errors import RecordError
from suite.records.results import read_manifest

INTERRUPTED = "interrupted"  # a session's `stopped` when it ended on KeyboardInterrupt (SIGINT)


def session_alive(session_id: str) -> bool | None:
    """Whether the process of a session id (`host:pid:time_ns`, suite/run/session.py) still runs: None when
    it ran on another host (it cannot be told from here). A pid reused by a later process is not it."""
    import psutil

    parts = str(session_id).rsplit(":", 2)
    if len(parts) != 3 or not parts[1].isdigit() or not parts[2].isdigit():
        return None
    host, pid, started_ns = parts[0], int(parts[1]), int(parts[2])
    if host != socket.gethostname():
        return None
    try:
        return psutil.Process(pid).create_time() <= started_ns / 1e9 + 1.0
    except (psutil.NoSuchProcess, psutil.ZombieProcess):
        return False
    except psutil.Error:
        return None


def ended(session: dict) -> bool:
    return bool(session.get("finished_at") or session.get("stopped"))


def finished_at(doc: dict) -> str | None:
    """When the run finished, from its manifest: every session ended, and where one was stopped, every
    planned case has a record (the rerun that wrote the last one finished it); else None."""
    sessions = [s for s in doc.get("sessions") or [] if isinstance(s, dict)]
    times = [str(s["finished_at"]) for s in sessions if s.get("finished_at")]
    if not sessions or not all(ended(s) for s in sessions) or not times:
        return None
    if any(s.get("stopped") for s in sessions):
        planned, records = doc.get("planned"), doc.get("records") or {}
        if not isinstance(planned, list) or not all(records.get(c) for c in planned):
            return None
    return max(times)


def mark_gone(doc: dict, by: str) -> None:
    """Mark the sessions whose process is gone (killed before it could say it finished) as stopped."""
    for s in doc.get("sessions") or []:
        if isinstance(s, dict) and not ended(s) and session_alive(s.get("id", "")) is False:
            s["stopped"] = f"its process was gone when session {by} started ({time.strftime('%Y-%m-%dT%H:%M:%S%z')})"


@dataclass(frozen=True)
class Stopped:
    """An unfinished run whose every session has ended: a rerun into its id finishes it."""
    run_id: str
    sessions: int  # how many sessions were stopped (killed or interrupted)
    planned: tuple[str, ...]
    recorded: frozenset[str] = field(default_factory=frozenset)  # case ids with a record: kept, not rerun

    @property
    def missing(self) -> list[str]:
        """The planned cases with no record: what a rerun runs."""
        return [c for c in self.planned if c not in self.recorded]

    def describe(self) -> str:
        """The line a rerun prints at its start."""
        return (f"run {self.run_id} was stopped before it finished ({self.sessions} session"
                f"{'s' if self.sessions != 1 else ''} stopped): this session finishes it, keeping the records "
                f"of {len(self.recorded)} case{'s' if len(self.recorded) != 1 else ''} (not rerun) and running "
                f"the selected cases of the {len(self.missing)} planned without one")


def stopped_run(run_dir: Path) -> Stopped | None:
    """The run at run_dir when it was stopped and nothing writes into it now; None when it finished, was
    never started, may still be running, or has no readable manifest."""
    try:
        doc = read_manifest(run_dir)
    except RecordError:
        return None
    if finished_at(doc) is not None or doc.get("finished_at"):
        return None
    sessions = [s for s in doc.get("sessions") or [] if isinstance(s, dict)]
    running = [s for s in sessions if not ended(s)]
    if not sessions or any(session_alive(s.get("id", "")) is not False for s in running):
        return None
    records = doc.get("records") or {}
    stopped = sum(1 for s in sessions if s.get("stopped") or not s.get("finished_at"))
    return Stopped(str(doc.get("run_id") or run_dir.name), stopped, tuple(str(c) for c in doc.get("planned") or ()),
                   frozenset(str(c) for c, names in records.items() if names))
