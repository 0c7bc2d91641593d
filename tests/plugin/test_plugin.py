"""The pytest wiring as a user meets it: markers select cases, bad case files stop collection."""
from __future__ import annotations

import os
import subprocess
import sys
from types import SimpleNamespace

import pytest

from suite.paths import ROOT
from suite.plugin.state import PluginSession
from suite.records import results
from tests.helpers import write_cases

pytest_plugins = ["pytester"]


def pytest_run(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "pytest", "-p", "no:randomly", "-n", "0", *args], cwd=ROOT,
                          capture_output=True, text=True, timeout=300)


def collected(*args: str) -> list[str]:
    out = pytest_run("--collect-only", "-q", "tests/test_matrix.py", *args)
    assert out.returncode == 0, out.stdout + out.stderr
    return [line.split("[", 1)[1].rstrip("]") for line in out.stdout.splitlines() if "test_case[" in line]


@pytest.mark.slow
def test_markers_select_the_matrix():
    qlora = collected("-m", "qlora")
    assert any(i.startswith("tiny-") for i in qlora) and any("7b" in i for i in qlora)
    assert all("/qlora/" in i for i in qlora)
    for marker in ("unsloth", "flash_attn", "packing", "neftune", "full", "lora"):
        assert collected("-m", marker), marker
    both = collected("-m", "lora and packing")
    assert both and all("/lora/" in i and "packing" in i for i in both)
    assert not [i for i in collected("-m", "tiny") if "7b" in i]


@pytest.mark.slow
def test_unknown_marker_is_refused():
    """pytest 9 reads strict markers from the strict_markers ini key, not from addopts alone."""
    bad = ROOT / "tests" / "_tmp_bad_marker_test.py"
    bad.write_text("import pytest\n\n@pytest.mark.qlorra\ndef test_x():\n    pass\n")
    try:
        out = pytest_run("--collect-only", "-q", str(bad))
    finally:
        bad.unlink()
    assert out.returncode != 0 and "'qlorra' not found in `markers`" in out.stdout + out.stderr


@pytest.mark.slow
def test_a_malformed_case_file_stops_collection_naming_file_and_field(tmp_path):
    d = write_cases(tmp_path, "matrix:\n  - {models: [tiny-llama], methods: [lora], features: [packinng]}\n")
    out = pytest_run("--collect-only", "-q", "tests/test_matrix.py", "--cases-dir", str(d))
    assert out.returncode == 4
    text = out.stdout + out.stderr
    assert "matrix.yaml: matrix[0].features[0]: unknown feature 'packinng'" in text
    assert "Traceback" not in text and "ERROR: invalid case file" in text


@pytest.mark.slow
def test_benchmark_option_switches_to_long_runs_and_cli_lists_cases():
    out = subprocess.run([sys.executable, "-m", "suite", "cases"], cwd=ROOT, capture_output=True, text=True)
    assert out.returncode == 0 and "tiny-llama/qlora/base" in out.stdout
    assert collected("--benchmark", "-m", "tiny and qlora")
    bad = subprocess.run([sys.executable, "-m", "suite", "cases", "--cases-dir", "/nonexistent"], cwd=ROOT,
                         capture_output=True, text=True)
    assert bad.returncode == 2 and "case directory not found" in bad.stderr


@pytest.mark.slow
def test_two_pytest_processes_into_one_run_id_keep_every_record(tmp_path):
    """Two real sessions (two shards, or two people) writing one run at once: no record lost or
    overwritten, and the manifest lists every record of both."""
    cases = write_cases(tmp_path / "cases", """
        matrix:
          - {models: [tiny-llama], methods: [lora, full]}
          - {models: [big], methods: [qlora, lora, full]}
    """)
    cmd = [sys.executable, "-m", "pytest", "-p", "no:randomly", "-p", "no:cacheprovider", "-q", "-n", "0",
           str(ROOT / "tests" / "test_matrix.py"), "--rootdir", str(ROOT), "--cases-dir", str(cases),
           "--results-dir", str(tmp_path / "results"), "--run-id", "both", "--no-baselines"]
    env = {**os.environ, "HF_HUB_CACHE": str(tmp_path / "hub")}
    env.pop("FTSUITE_TEST_BIG", None)
    procs = [subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
             for _ in range(2)]
    outs = [p.communicate(timeout=600)[0] for p in procs]
    assert [p.returncode for p in procs] == [0, 0], outs
    run = tmp_path / "results" / "both"
    manifest = results.read_manifest(run)
    files = sorted(p.name for p in run.glob("*.json") if p.name != "manifest.json")
    assert len(files) == 10 and sorted(n for names in manifest["records"].values() for n in names) == files
    recs = [results.read_record(run / f) for f in files]
    for case_id in ("tiny-llama/lora/base", "tiny-llama/full/base", "big/qlora/base"):
        assert sorted(r.repeat for r in recs if r.case_id == case_id) == [0, 1], case_id
    assert sum(manifest["counts"].values()) == 10 and manifest["counts"]["passed"] == 4
    assert len(manifest["sessions"]) == 2 and manifest["finished_at"] and len(manifest["planned"]) == 5
    # each training case had a folder of its own in each session
    assert {p.name for p in run.iterdir() if p.is_dir()} == {"tiny-llama__lora__base", "tiny-llama__lora__base.r1",
                                                             "tiny-llama__full__base", "tiny-llama__full__base.r1"}


@pytest.mark.slow
def test_one_pytest_run_under_xdist_leaves_one_run_folder(tmp_path):
    """`pytest -n 2` without --run-id: the controller's run id reaches both workers (one folder, one
    manifest with a session per worker and every record), not one folder per worker."""
    cases = write_cases(tmp_path / "cases", """
        matrix:
          - {models: [tiny-llama], methods: [lora, full]}
    """)
    cmd = [sys.executable, "-m", "pytest", "-p", "no:randomly", "-p", "no:cacheprovider", "-q", "-n", "2",
           str(ROOT / "tests" / "test_matrix.py"), "--rootdir", str(ROOT), "--cases-dir", str(cases),
           "--results-dir", str(tmp_path / "results"), "--no-baselines"]
    env = {k: v for k, v in os.environ.items() if k not in ("FTSUITE_RUN_ID", "PYTEST_XDIST_WORKER")}
    out = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=600)
    assert out.returncode == 0, out.stdout + out.stderr
    [run] = [p for p in (tmp_path / "results").iterdir() if p.is_dir()]
    manifest = results.read_manifest(run)
    assert len(manifest["sessions"]) == 2 and sorted(manifest["records"]) == ["tiny-llama/full/base",
                                                                              "tiny-llama/lora/base"]
    assert manifest["counts"] == {"passed": 2} and "(2 passed; from 2 sessions)" in out.stdout
    # every session (a worker each) records the command typed, never a worker's sys.argv ['-c']
    for argv in [manifest["argv"], *(s["argv"] for s in manifest["sessions"])]:
        assert argv[:3] == ["python", "-m", "pytest"] and argv[-1] == "--no-baselines", argv


def test_the_controller_hands_its_run_id_to_the_workers_through_the_session_object():
    controller = PluginSession(SimpleNamespace(option=SimpleNamespace(numprocesses=2),
                                               invocation_params=SimpleNamespace(args=("-m", "tiny"))), run_id="r-1")
    workerinput = {"workerid": "gw0", **controller.to_workerinput()}  # what pytest_configure_node sends
    worker = PluginSession(SimpleNamespace(option=SimpleNamespace(numprocesses=None), workerinput=workerinput))
    worker.from_workerinput(workerinput)
    assert worker.run_id == "r-1" and worker.is_worker and not worker.is_controller
    # the manifest records the command the user typed, not a worker's sys.argv (execnet's ['-c'])
    assert worker.user_command() == controller.user_command() and worker.command[-2:] == ["-m", "tiny"]
    assert controller.is_controller and not controller.is_worker
    alone = PluginSession(SimpleNamespace(option=SimpleNamespace()), run_id="own")
    alone.from_workerinput({})  # a controller that sent nothing leaves the worker's own
    assert alone.run_id == "own"


STATE_TEST = """
from suite.plugin.state import PluginSession

def test_case(ft_case):  # parametrized by the plugin; asks for no run, so nothing trains
    pass

def test_the_state(pytestconfig):
    plugin = PluginSession.of(pytestconfig)
    assert plugin is PluginSession.of(pytestconfig)
    assert plugin.run_id == "rid" and plugin.shard == (1, 1) and plugin.cases
    assert plugin.planned and all(i.startswith("tiny-llama/lora/base") for i in plugin.planned)
    assert plugin.baselines_dir is not None and plugin.baselines is None and plugin.run is None
    assert not [a for a in vars(pytestconfig) if a.startswith("_ftsuite")]
"""


def test_the_plugins_keep_their_state_in_one_session_object(pytester: pytest.Pytester, tmp_path):
    pytester.makepyfile(test_m=STATE_TEST)
    result = pytester.runpytest("-p", "suite.plugin.cases", "-p", "suite.plugin.shard", "-p", "suite.plugin.baselines",
                                "-p", "no:cacheprovider", "--run-id", "rid", "--shard", "1/1",
                                "--results-dir", str(tmp_path / "results"), "-k", "the_state or tiny-llama/lora/base")
    assert result.ret == 0 and result.parseoutcomes()["passed"] >= 2, result.stdout.str()
    assert not (tmp_path / "results").exists()  # no case ran, no run folder
