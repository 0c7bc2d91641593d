"""Progress of a run that another process writes: one line per case record as it lands.

upgrade-check and canary run pytest in a derived environment for minutes a side; the records it writes
(atomically, suite/records/results.py) are the progress. A `Progress` polls the run folder and says, for
each new record, the case, its outcome, how long it took and how many planned cases are left."""
from __future__ import annotations

import json
import subprocess
import time
from pathlib import Path
from typing import Callable

from suite.errors import RecordError
from suite.records.results import read_record

POLL_S = 1.0


class Progress:
    """Lines like `baseline: [3/58] tiny-llama/lora/base passed in 4.1 s (55 left, 01:12 elapsed)`."""

    def __init__(self, run_dir: Path, side: str, log: Callable[[str], None], t0: float | None = None) -> None:
        self.run_dir, self.side, self.log = run_dir, side, log
        self.t0 = time.time() if t0 is None else t0
        self.seen: set[str] = set()
        self.done = 0

    def planned(self) -> int | None:
        try:
            doc = json.loads((self.run_dir / "manifest.json").read_text())
        except (OSError, ValueError):
            return None
        planned = doc.get("planned")
        return len(planned) if isinstance(planned, list) else None

    def poll(self) -> None:
        """A line for every record that appeared since the last poll (in name order)."""
        if not self.run_dir.is_dir():
            return
        for path in sorted(self.run_dir.glob("*.json")):
            if path.name == "manifest.json" or path.name in self.seen:
                continue
            try:
                rec = read_record(path)
            except RecordError:
                continue  # not a case record, or one being replaced: the next poll reads it
            self.seen.add(path.name)
            self.done += 1
            self.log(self.line(rec.case_id, rec.status, rec.wall_s))

    def line(self, case_id: str, status: str, wall_s: float | None) -> str:
        planned = self.planned()
        count = f"[{self.done}/{planned}]" if planned else f"[{self.done}]"
        left = f"{max(planned - self.done, 0)} left, " if planned else ""
        took = f" in {wall_s:.1f} s" if wall_s is not None else ""
        elapsed = time.time() - self.t0
        return (f"{self.side}: {count} {case_id} {status}{took} "
                f"({left}{int(elapsed // 60):02d}:{int(elapsed % 60):02d} elapsed)")


def watch(cmd: list[str], run_dir: Path, progress: Progress | None, **popen) -> tuple[int, str]:
    """Run cmd to its end, polling the run folder; returns (exit code, the tail of its output)."""
    run_dir.parent.mkdir(parents=True, exist_ok=True)
    with open(run_dir.parent / f".{run_dir.name}.log", "w+") as out:
        proc = subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT, text=True, **popen)
        while proc.poll() is None:
            if progress:
                progress.poll()
            time.sleep(POLL_S)
        if progress:
            progress.poll()
        out.seek(0)
        return proc.returncode, out.read()[-4000:]
