"""A stopped run can be finished (suite/run/resume.py, docs/results-schema.md "A stopped run"): a rerun into
its id runs the planned cases that have no record, keeps the records already written, and finishes it.
Killed (SIGKILL of the process group) and interrupted (SIGINT) runs, for real, and the texts after them."""
from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from dataclasses import replace
from pathlib import Path
from types import SimpleNamespace

import pytest

from suite.paths import ROOT
from suite.plugin.state import PluginSession
from suite.records import results, runs
from suite.report import compare
from suite.report import markdown as report_md
from suite.run import resume
from tests.helpers import write_cases

FIXTURES = ROOT / "tests" / "fixtures" / "runs"
SKIPPED, TRAINED = "tiny-llama/lora/liger", "tiny-llama/lora/base"  # liger: skipped without a GPU, in no time


def _session(sid: str, finished: bool = False, stopped: str | None = None) -> dict:
    return {"id": sid, "argv": ["x"], "started_at": "t0", "finished_at": "t1" if finished else None,
            **({"stopped": stopped} if stopped else {})}


def _gone() -> str:
    """The id of a session whose process has exited (a child of ours that ran and was reaped)."""
    proc = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    return f"{socket.gethostname()}:{int(proc.stdout)}:{time.time_ns() - 10**9}"


# -- the rules, on manifests -----------------------------------------------------------------------------------

def test_a_session_is_alive_while_its_process_runs_and_unknown_on_another_host():
    me = f"{socket.gethostname()}:{os.getpid()}:{time.time_ns()}"
    assert resume.session_alive(me) is True
    assert resume.session_alive(_gone()) is False
    assert resume.session_alive(f"other-host:{os.getpid()}:{time.time_ns()}") is None
    # a pid that a later process took is not the session's (the process started after the session did)
    assert resume.session_alive(f"{socket.gethostname()}:{os.getpid()}:1") is False
    assert resume.session_alive("not-a-session-id") is None


def test_a_run_with_a_stopped_session_finishes_when_every_planned_case_has_a_record():
    doc = {"planned": ["a", "b"], "records": {"a": ["a.json"]},
           "sessions": [_session("s1", stopped="gone"), _session("s2", finished=True)]}
    assert resume.finished_at(doc) is None  # b has no record: the rerun ran only a
    doc["records"]["b"] = ["b.json"]
    assert resume.finished_at(doc) == "t1"
    doc["sessions"].append(_session("s3"))  # a session still writing: not yet
    assert resume.finished_at(doc) is None
    clean = {"planned": ["a", "b"], "records": {}, "sessions": [_session("s1", finished=True)]}
    assert resume.finished_at(clean) == "t1"  # no session stopped: finished when it says so, as before


def test_a_stopped_run_is_one_whose_sessions_all_ended(tmp_path):
    run = tmp_path / "r"
    run.mkdir()
    doc = {"schema_version": 2, "kind": results.MANIFEST_KIND, "run_id": "r", "planned": ["a", "b"],
           "records": {"a": ["a.json"]}, "sessions": [_session(_gone())], "finished_at": None}
    results.write_json_atomic(run / "manifest.json", doc)
    stopped = resume.stopped_run(run)
    assert stopped is not None and stopped.missing == ["b"] and stopped.recorded == {"a"}
    assert "keeping the records of 1 case (not rerun)" in stopped.describe()
    doc["sessions"] = [_session(f"{socket.gethostname()}:{os.getpid()}:{time.time_ns()}")]  # alive: writing
    results.write_json_atomic(run / "manifest.json", doc)
    assert resume.stopped_run(run) is None
    doc["sessions"] = [_session("s", finished=True, stopped=resume.INTERRUPTED)]
    results.write_json_atomic(run / "manifest.json", doc)
    assert resume.stopped_run(run).sessions == 1


def test_the_controllers_summary_of_a_run_with_no_record_reads_well(tmp_path):
    """Was "records of run ux-kill (, 1 worker sessions)": an empty count, a plural of one."""
    run = tmp_path / "ux-kill"
    run.mkdir()
    results.write_json_atomic(run / "manifest.json", {
        "schema_version": 2, "kind": results.MANIFEST_KIND, "run_id": "ux-kill", "counts": {}, "records": {},
        "sessions": [_session("s", finished=True, stopped=resume.INTERRUPTED)], "planned": ["a"]})
    options = {"results_dir": str(tmp_path)}
    config = SimpleNamespace(option=SimpleNamespace(numprocesses=1), getoption=options.__getitem__)
    line = PluginSession(config, run_id="ux-kill").summary()
    assert line.startswith(f"records of run ux-kill (no record; from 1 session) in {run}")
    assert "1 planned case(s) have no record; the same command with --run-id ux-kill runs them" in line


def test_a_run_that_does_not_know_its_kernel_class_did_not_change_it():
    """Was "Kernel class changed: avx512-bf16 → -" for a run stopped before its first record (the kernel
    class comes from the records). A change between two known classes is still one."""
    from suite.kernelclass import from_name

    base = runs.load(FIXTURES / "tiny-a")
    base.records = [replace(r, kernel_class=from_name("avx512-bf16")) for r in base.records]
    stopped = runs.load(FIXTURES / "tiny-b")
    stopped.records = [replace(r, kernel_class=None) for r in stopped.records]
    row = compare.environment_diff(base, stopped).set_index("field").loc["kernel_class"]
    assert (row.baseline, row.candidate, bool(row.changed)) == ("avx512-bf16", "unknown", False)
    assert not [line for line in report_md.environment_md(compare.environment_diff(base, stopped))
                if "Kernel class changed" in line]
    other = runs.load(FIXTURES / "tiny-b")
    other.records = [replace(r, kernel_class=from_name("avx2")) for r in other.records]
    assert [line for line in report_md.environment_md(compare.environment_diff(base, other))
            if line.startswith("**Kernel class changed**: avx512-bf16 → avx2")]


# -- real runs, stopped for real -------------------------------------------------------------------------------

def _start(tmp_path: Path, *args: str) -> subprocess.Popen:
    cases = write_cases(tmp_path / "cases", """
        matrix:
          - {models: [tiny-llama], methods: [lora], features: [[liger], []],
             training: {max_steps: 2000, benchmark_steps: 2000}}
    """)
    cmd = [sys.executable, "-m", "suite", "run", "-p", "no:randomly", "-p", "no:cacheprovider", "--cases-dir",
           str(cases), "--results-dir", str(tmp_path / "results"), "--no-baselines", "--run-id", "stop", *args]
    env = {k: v for k, v in os.environ.items() if k != "FTSUITE_RUN_ID"}
    # SIGINT as a terminal delivers it: a test suite started in the background (`bash .ci/run &`) inherits it
    # ignored, and so would the run, which then trains on through the interrupt (it did, in 3 runs of CI here)
    return subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                            start_new_session=True, preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))


def _stop_in_the_training_case(proc: subprocess.Popen, run: Path, sig: signal.Signals) -> str:
    """Wait for the first case's record and the second case's folder (its child started), then signal the
    whole process group (the pytest, its workers, the case's child) as a terminal or a CI runner does."""
    deadline = time.time() + 240
    while time.time() < deadline and proc.poll() is None:
        manifest = run / "manifest.json"
        if (manifest.is_file() and SKIPPED in json.loads(manifest.read_text()).get("records", {})
                and (run / "tiny-llama__lora__base").is_dir()):
            break
        time.sleep(0.2)
    assert proc.poll() is None, "the run ended before it could be stopped:\n" + proc.communicate()[0][-3000:]
    time.sleep(1.0)
    os.killpg(proc.pid, sig)
    return proc.communicate(timeout=120)[0]


def _rerun(tmp_path: Path) -> str:
    """The same command into the same id; the training case's child is stopped after 2 s (an error record:
    what matters is that the run gets its record and finishes, not that the case passes)."""
    proc = _start(tmp_path, "-n", "0", "--case-timeout", "2")
    return proc.communicate(timeout=600)[0]


@pytest.mark.slow
def test_a_killed_run_is_finished_by_a_rerun_into_its_id(tmp_path):
    run = tmp_path / "results" / "stop"
    _stop_in_the_training_case(_start(tmp_path, "-n", "0"), run, signal.SIGKILL)
    before = results.read_manifest(run)
    kept = (run / before["records"][SKIPPED][0]).read_text()
    assert before["finished_at"] is None and before["planned"] == [TRAINED, SKIPPED]
    assert TRAINED not in before["records"]
    listed = runs.describe(run)
    assert "unfinished: 1 of 2 planned cases have no record: rerunning with --run-id stop runs them" in listed
    out = _rerun(tmp_path)
    assert "run stop was stopped before it finished (1 session stopped): this session finishes it" in out, out[-3000:]
    after = results.read_manifest(run)
    assert after["finished_at"], json.dumps(after, indent=1)[-3000:]
    assert after["records"][SKIPPED] == before["records"][SKIPPED]  # kept, not rerun
    assert (run / after["records"][SKIPPED][0]).read_text() == kept
    assert len(after["records"][TRAINED]) == 1 and results.read_record(run / after["records"][TRAINED][0])
    first, second = after["sessions"]
    assert first["finished_at"] is None and "its process was gone" in first["stopped"]
    assert second["finished_at"] and "stopped" not in second
    assert "(unfinished" not in runs.describe(run)


STOPPED = "records of run stop (1 skipped; from 1 session)"


@pytest.mark.slow
def test_an_interrupted_run_under_xdist_says_what_it_kept_records_the_command_and_can_be_finished(tmp_path):
    run = tmp_path / "results" / "stop"
    out = _stop_in_the_training_case(_start(tmp_path, "-n", "1"), run, signal.SIGINT)
    assert STOPPED in out, out[-3000:]
    assert "(, " not in out and "worker sessions" not in out
    assert "1 planned case(s) have no record; the same command with --run-id stop runs them" in out
    manifest = results.read_manifest(run)
    [session] = manifest["sessions"]
    assert session["stopped"] == resume.INTERRUPTED and manifest["finished_at"] is None
    # the command typed, not the worker's sys.argv (execnet's ['-c'])
    for argv in (manifest["argv"], session["argv"]):
        assert argv[:4] == ["python", "-m", "suite", "run"] and argv[-2:] == ["-n", "1"], argv
    # no record half-written: every file the manifest lists reads back
    for names in manifest["records"].values():
        for name in names:
            results.read_record(run / name)
    _rerun(tmp_path)
    assert results.read_manifest(run)["finished_at"]


@pytest.mark.slow
def test_a_stopped_run_whose_cases_all_have_records_is_finished_by_a_rerun_that_runs_nothing(tmp_path):
    """Killed after its last record, before it could say it finished: the rerun runs no case and finishes it."""
    run = tmp_path / "results" / "stop"
    run.mkdir(parents=True)
    results.write_json_atomic(run / "manifest.json", {
        "schema_version": 2, "kind": results.MANIFEST_KIND, "run_id": "stop", "counts": {"skipped": 1},
        "records": {SKIPPED: ["x.json"]}, "planned": [SKIPPED], "sessions": [_session(_gone())],
        "finished_at": None})
    proc = _start(tmp_path, "-n", "0", "-k", "liger")
    out = proc.communicate(timeout=300)[0]
    assert proc.returncode == 5, out[-3000:]  # pytest's: no test ran (every selected case has its record)
    manifest = results.read_manifest(run)
    assert manifest["finished_at"] and len(manifest["sessions"]) == 2, manifest
