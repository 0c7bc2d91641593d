"""The one-call GPU session (benchmarks/gpu_session.py) on a CPU: its stages in order of value with
tiny stand-ins (--plan smoke), its time limit, the stop of a running stage, and what it packs."""
from __future__ import annotations

import json
import os
import subprocess
import sys
import tarfile
import time
from pathlib import Path

import pytest

from benchmarks import gpu_session
from suite.cases import load_cases
from suite.paths import CASES, ROOT
from suite.tools import wheels
from tests.tools.test_wheels import make_wheel


def session(tmp_path: Path, run_id: str, *args: str, timeout: int = 600) -> subprocess.CompletedProcess:
    env = {**os.environ, "OUT": str(tmp_path / "out"), "FTSUITE_RESULTS": str(tmp_path / "results"),
           "FTSUITE_REPORTS": str(tmp_path / "reports"), "PYTHON": sys.executable}
    env.pop("WHEELS", None)
    # The plumbing, not a measurement: under xdist other tests share the cores, so the CPU profile's
    # budgets (measured with nothing else running) do not apply; an empty budget folder leaves them out.
    (tmp_path / "no-budgets").mkdir(exist_ok=True)
    return subprocess.run(["bash", "benchmarks/gpu_session.sh", "--plan", "smoke", *args, run_id,
                           "--budgets-dir", str(tmp_path / "no-budgets")], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=timeout)


@pytest.mark.slow
def test_smoke_part_runs_reports_and_packs(tmp_path):
    """The smoke plan: every stage in the GPU plan's order, stand-ins trained, a carried wheel installed
    into the site folder and put on the path (a stand-in liger_kernel: its stage runs, and its 7B case
    skips on a CPU), unsloth left out (not carried), one run, its report, and the six files the device
    call brings back."""
    run_id = f"gpu-session-smoke-{os.getpid()}"
    make_wheel(tmp_path / "index", "liger-kernel", "0.8.5", module="liger_kernel")
    wheels.download(tmp_path / "whl", ["liger-kernel"], {}, wheels.Target(), index_args=["--no-index", "--find-links",
                    str(tmp_path / "index")], log=lambda s: None)
    proc = session(tmp_path, run_id, "--wheels", str(tmp_path / "whl"), "--site", str(tmp_path / "site"))
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    out = tmp_path / "out"
    assert sorted(p.name for p in out.iterdir()) == sorted(
        [f"{run_id}.{ext}" for ext in ("facts.json", "html", "log", "md", "session.json", "tar.gz")]
        + [f"{run_id}-regression.md"])
    summary = json.loads((out / f"{run_id}.session.json").read_text())
    assert [s["name"] for s in summary["stages"]] == [s.name for s in gpu_session.GPU]
    assert [s["status"] for s in summary["stages"]] == ["passed", "passed", "passed", "skipped", "passed"]
    assert "unsloth does not import: its wheels were not carried" in summary["stages"][3]["reason"]
    liger = summary["stages"][4]["cases_status"]["llama2-7b-shaped/qlora/gradient_checkpointing+liger"]
    assert liger["status"] == "skipped" and liger["reason"]
    assert [(w["status"], w["count"]) for w in summary["wheels"]] == [("installed", 1)]
    assert summary["exit"] == 0 and summary["elapsed_s"] < summary["limit_s"] - 10
    report = (out / f"{run_id}.md").read_text()
    assert all(c in report for c in ("tiny-llama/qlora/base", "tiny-llama/full/base"))
    assert "tiny-llama/lora/base" in (out / f"{run_id}-regression.md").read_text()
    with tarfile.open(out / f"{run_id}.tar.gz") as tar:
        names = tar.getnames()
        records = {case: json.load(tar.extractfile(f"{run}/tiny-llama__{case}__base.json"))
                   for case, run in (("lora", f"{run_id}-regression"), ("qlora", run_id), ("full", run_id))}
    started = {case: r["started_at"] for case, r in records.items()}
    assert [r["mode"] for r in records.values()] == ["regression", "benchmark", "benchmark"]
    assert f"{run_id}/manifest.json" in names and f"{run_id}-regression/manifest.json" in names
    assert f"{run_id}/session/{run_id}.facts.json" in names
    assert not [n for n in names if "/checkpoint" in n]
    assert started["lora"] <= started["qlora"] <= started["full"]  # the stages' order, not the matrix's
    facts = json.loads((out / f"{run_id}.facts.json").read_text())
    assert facts["kernel_class"]["class"] and facts["torch"]["tf32"]["float32_matmul_precision"]
    assert facts["sdpa_runs"] == {"skipped": "no CUDA device"} and "bitsandbytes" in facts


@pytest.mark.slow
def test_a_part_past_its_time_stops_and_still_leaves_its_log(tmp_path):
    """Inside the device call's limit the session must stop in time and pack what it has: with 15 s
    for the cases, a stage is cut or never started, and the call ends before its limit."""
    run_id = f"gpu-session-late-{os.getpid()}"
    t0 = time.monotonic()
    proc = session(tmp_path, run_id, "--limit", "45", "--pack", "30", timeout=300)
    assert proc.returncode == 124, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert time.monotonic() - t0 < 45
    out = tmp_path / "out"
    assert (out / f"{run_id}.log").is_file() and (out / f"{run_id}.tar.gz").is_file()
    summary = json.loads((out / f"{run_id}.session.json").read_text())
    late = [s for s in summary["stages"] if s["status"] == "not started"]
    assert late and "s left before the cases' deadline" in late[0]["reason"] and summary["exit"] == 124
    assert "not started" in proc.stdout


@pytest.mark.slow
def test_a_running_stage_is_stopped_at_the_deadline(tmp_path, monkeypatch):
    """SIGINT to the stage's process group at the deadline, SIGKILL GRACE_S later if it ignores it."""
    monkeypatch.setenv("OUT", str(tmp_path))
    monkeypatch.setattr(gpu_session, "GRACE_S", 1)
    s = gpu_session.Session(gpu_session.parse(["--plan", "smoke", "x"]))
    t0 = time.monotonic()
    code, stopped = s.run([sys.executable, "-c", "import time; print('working', flush=True); time.sleep(60)"],
                          time.monotonic() + 2, "sleeper")
    assert stopped and code != 0 and time.monotonic() - t0 < 10
    stubborn = "import signal, time; signal.signal(signal.SIGINT, signal.SIG_IGN); time.sleep(60)"
    code, stopped = s.run([sys.executable, "-c", stubborn], time.monotonic() + 1, "stubborn")
    assert stopped and code == -9 and time.monotonic() - t0 < 20
    log = (tmp_path / "x.log").read_text()
    assert "working" in log and "sleeper: the limit: SIGINT" in log
    assert "stubborn: still running 1 s after SIGINT: SIGKILL" in log


def test_a_stage_needs_its_time_and_its_wheels(tmp_path, monkeypatch):
    monkeypatch.setenv("OUT", str(tmp_path))
    s = gpu_session.Session(gpu_session.parse(["--limit", "100", "--pack", "45", "x"]))
    late = s.run_stage(gpu_session.Stage("big", "a big one", ("tiny-llama/lora/base",), 120))
    assert late["status"] == "not started" and "needs at least 120 s" in late["reason"]
    missing = s.run_stage(gpu_session.Stage("u", "not carried", ("tiny-llama/lora/base",), 1, ("no_such_module_x",)))
    assert missing["status"] == "skipped" and "no_such_module_x does not import" in missing["reason"]
    assert late["cases_status"] == {"tiny-llama/lora/base": {"status": "no record"}}


def test_the_plans_name_cases_of_the_matrix_in_order_of_value(tmp_path, monkeypatch):
    ids = {c.id for c in load_cases(CASES)}
    for plan in gpu_session.PLANS.values():
        assert not [c for s in plan for c in s.cases if c not in ids]
    gpu = gpu_session.GPU
    assert [s.name for s in gpu] == [s.name for s in gpu_session.SMOKE] == ["tiny", "7b-qlora", "7b-lora", "unsloth",
                                                                             "liger"]
    assert gpu[1].cases == ("llama2-7b-shaped/qlora/gradient_checkpointing",)  # builds the 7B shape, once
    assert [s.needs for s in gpu] == [(), (), (), ("unsloth",), ("liger_kernel",)]
    monkeypatch.setenv("OUT", str(tmp_path))
    picked = gpu_session.Session(gpu_session.parse(["--stages", "liger,tiny", "x"])).plan
    assert [s.name for s in picked] == ["tiny", "liger"]


@pytest.mark.slow
def test_the_sdpa_probe_tries_each_backend_alone():
    """The facts' SDPA table, run on a CPU with a small shape (on the GPU: the 7B shape in bf16)."""
    from benchmarks.gpu_facts import sdpa_runs, summary

    runs = sdpa_runs("cpu", {"batch": 2, "heads": 2, "seq": 16, "head_dim": 16})
    assert runs["math"]["padded"]["ran"] and runs["math"]["causal"]["ms"] >= 0
    assert not runs["efficient_attention"]["padded"]["ran"] and runs["efficient_attention"]["padded"]["error"]
    assert runs["default_padded_kernels"]
    assert any(line.strip().startswith("math ") for line in summary({"sdpa_runs": runs}))


@pytest.mark.parametrize("args, message", [(["--plan", "everything", "x"], "invalid choice: 'everything'"),
                                           (["--limit", "40", "--pack", "10", "x"], "--pack must be at least"),
                                           (["--stages", "tiny,7b", "x"], "--stages: no stage 7b in the gpu plan")])
def test_usage_errors(tmp_path, args, message):
    proc = subprocess.run(["bash", "benchmarks/gpu_session.sh", *args], cwd=ROOT, capture_output=True, text=True,
                          env={**os.environ, "OUT": str(tmp_path), "PYTHON": sys.executable})
    assert proc.returncode == 2 and message in proc.stderr
