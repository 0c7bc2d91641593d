"""The GPU session script's plumbing, on its CPU-capable smoke part: run, report, pack into $OUT."""
from __future__ import annotations

import os
import subprocess
import tarfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def test_smoke_part_runs_reports_and_packs(tmp_path):
    run_id = f"gpu-session-smoke-{os.getpid()}"
    env = {**os.environ, "OUT": str(tmp_path / "out"), "FTSUITE_RESULTS": str(tmp_path / "results"),
           "FTSUITE_REPORTS": str(tmp_path / "reports")}
    # The plumbing, not a measurement: under xdist other tests share the cores, so the CPU profile's
    # budgets (measured with nothing else running) do not apply; an empty budget folder leaves them out.
    (tmp_path / "no-budgets").mkdir()
    proc = subprocess.run(["bash", "benchmarks/gpu_session.sh", "smoke", run_id,
                           "--budgets-dir", str(tmp_path / "no-budgets")], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    out = tmp_path / "out"
    assert sorted(p.name for p in out.iterdir()) == sorted(f"{run_id}.{ext}" for ext in ("html", "log", "md", "tar.gz"))
    assert "tiny-llama/lora/base" in (out / f"{run_id}.md").read_text()
    with tarfile.open(out / f"{run_id}.tar.gz") as tar:
        names = tar.getnames()
    assert f"{run_id}/manifest.json" in names and f"{run_id}/tiny-llama__lora__base.json" in names
    assert not [n for n in names if "/checkpoint" in n]


def test_an_unknown_part_is_a_usage_error(tmp_path):
    proc = subprocess.run(["bash", "benchmarks/gpu_session.sh", "everything", "x"], cwd=ROOT, capture_output=True,
                          text=True, env={**os.environ, "OUT": str(tmp_path)})
    assert proc.returncode == 2 and "unknown part 'everything'" in proc.stderr


def test_a_part_past_its_time_stops_and_still_leaves_its_log(tmp_path):
    """Inside a 10-minute device call the part must stop in time to pack what it has."""
    run_id = f"gpu-session-late-{os.getpid()}"
    env = {**os.environ, "OUT": str(tmp_path / "out"), "FTSUITE_RESULTS": str(tmp_path / "results"),
           "FTSUITE_REPORTS": str(tmp_path / "reports"), "PART_TIMEOUT_S": "1"}
    proc = subprocess.run(["bash", "benchmarks/gpu_session.sh", "smoke", run_id], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 124, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert "ran past PART_TIMEOUT_S=1 s" in proc.stderr and (tmp_path / "out" / f"{run_id}.log").is_file()
