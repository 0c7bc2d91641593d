"""A run's manifest (results/<run-id>/manifest.json), shared by every process that writes into the run
(two pytest sessions, shards on one machine): each change re-reads it and writes it back under an
exclusive lock, so no process's records or counts are lost, and a record's file name is chosen under
the same lock (split out of suite/run/session.py)."""
from __future__ import annotations

import contextlib
import fcntl
import os
from pathlib import Path
from typing import Callable

from suite.records import results


@contextlib.contextmanager
def locked(run_dir: Path):
    """The run's manifest lock, held exclusively for the block."""
    fd = os.open(run_dir / ".manifest.lock", os.O_RDWR | os.O_CREAT, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        fcntl.flock(fd, fcntl.LOCK_UN)
        os.close(fd)


def update(run_dir: Path, fresh: Callable[[], dict], fields: dict, change: Callable[[dict], None]) -> dict:
    """Apply change(doc) to the manifest on disk under the lock, after setting `fields` (made from
    fresh() if missing); `finished_at` follows the sessions' (a stopped session leaves it to the rerun that
    finishes the run: suite/run/resume.py). Returns the manifest written."""
    from suite.run import resume

    with locked(run_dir):
        path = run_dir / "manifest.json"
        doc = results.read_manifest(run_dir) if path.exists() else fresh()
        doc.update(fields)
        change(doc)
        doc.setdefault("sessions", [])
        doc["finished_at"] = resume.finished_at(doc)
        results.write_json_atomic(path, doc)
        return doc
