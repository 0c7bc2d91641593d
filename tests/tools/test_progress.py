"""upgrade-check's progress: a line per case record as it lands in a run another process writes."""
from __future__ import annotations

import json
import shutil
import sys

import pytest

from suite.paths import TESTS
from suite.tools.progress import Progress, watch

FIXTURE = TESTS / "fixtures" / "runs" / "tiny-a"


def test_a_line_per_new_record_with_the_count_planned_and_left(tmp_path):
    run = tmp_path / "run"
    run.mkdir()
    manifest = json.loads((FIXTURE / "manifest.json").read_text())
    records = sorted(p.name for p in FIXTURE.glob("*.json") if p.name != "manifest.json")
    (run / "manifest.json").write_text(json.dumps({**manifest, "planned": [f"c{i}" for i in range(7)]}))
    lines: list[str] = []
    progress = Progress(run, "baseline", lines.append)
    progress.poll()
    assert lines == []
    shutil.copy(FIXTURE / records[0], run / records[0])
    (run / "half.json").write_text('{"kind": "ftsuite.case-result", ')  # being written: read on a later poll
    progress.poll()
    progress.poll()
    assert len(lines) == 1
    case_id = json.loads((FIXTURE / records[0]).read_text())["case_id"]
    assert lines[0].startswith(f"baseline: [1/7] {case_id} passed (6 left, 00:0")  # the trimmed record has no wall_s


@pytest.mark.slow
def test_watch_runs_the_command_to_its_end_and_polls_until_then(tmp_path):
    run = tmp_path / "results" / "r"
    code = ("import json, pathlib, shutil, sys, time; d = pathlib.Path(sys.argv[1]); d.mkdir(); "
            "time.sleep(1.5); shutil.copy(sys.argv[2], d / 'x.json'); print('done'); sys.exit(3)")
    lines: list[str] = []
    rc, out = watch([sys.executable, "-c", code, str(run), str(next(FIXTURE.glob("tiny-llama__lora__base.json")))],
                    run, Progress(run, "candidate", lines.append))
    assert rc == 3 and "done" in out
    assert len(lines) == 1 and lines[0].startswith("candidate: [1] tiny-llama/lora/base passed")
