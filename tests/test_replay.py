"""The replay (no training, seconds): every run folder kept for a machine class under
tests/fixtures/machines/ is judged again by today's checks, references, bands, class bounds and
budgets, and must pass. A bound tightened on one machine that would turn another class red fails here,
on any machine. What cannot be replayed from old numbers is listed in references.REPLAY_LEFT_OUT.

The machines: an Intel Xeon with AVX-512, AVX512-BF16 and AMX (two xdist run folders and a benchmark
run, 2026-12-05) and an AMD EPYC Zen 4 with AVX-512 and AVX512-BF16, no AMX (a regression and a
benchmark run, 2026-12-05); the AVX2 class (AMD EPYC) is replayed from its committed references, the
runs they were recorded from not having been kept.
"""
from __future__ import annotations

import json
import shutil

import pytest

from suite.judge import baselines
from suite.paths import BUDGETS, ROOT, TESTS
from suite.tools import references

MACHINES = TESTS / "fixtures" / "machines"
RUNS = sorted(p for p in MACHINES.glob("*/*") if (p / "manifest.json").is_file())
REFERENCES = ROOT / "results" / "baselines"


def test_there_are_runs_of_more_than_one_machine():
    assert len({p.parent.name for p in RUNS}) >= 2 and len(RUNS) >= 4


@pytest.mark.parametrize("run_dir", RUNS, ids=[f"{p.parent.name}/{p.name}" for p in RUNS])
def test_a_kept_run_passes_today_s_checks(run_dir, tmp_path, request):
    judged, problems = references.replay(run_dir, REFERENCES, request.config.getoption("cases_dir"), BUDGETS,
                                         tmp_path)
    assert judged >= 15, f"{run_dir}: only {judged} records judged"  # an xdist worker's folder holds ~20
    assert not problems, "\n".join(problems)


def test_the_avx2_class_replays_from_its_references(request, tmp_path):
    """Each AVX2 reference, as the run it came from: today's fingerprint, its loss falling, its own curve."""
    from suite.cases import load_cases

    cases = {c.slug: c for c in load_cases(request.config.getoption("cases_dir"))}
    store = baselines.BaselineStore(REFERENCES, profile="cpu")
    kernels = {"torch_cpu_capability": "AVX2", "bitsandbytes": {"avx512bf16": False}}
    files = sorted((REFERENCES / "cpu" / "avx2").glob("*.json"))
    assert len(files) >= 40
    for f in files:
        [result] = store.checks(cases[f.stem], baselines.read_curve(f)["curve"], [], tmp_path, kernels)
        assert result.passed, result.message


def test_a_tightened_bound_fails_the_replay(request, tmp_path):
    """The replay is not a formality: the same Intel run against a reference moved by its own bound."""
    root = tmp_path / "baselines"
    shutil.copytree(REFERENCES, root)
    ref = root / "cpu" / "avx512-bf16" / "tiny-llama__qlora__base.json"
    doc = json.loads(ref.read_text())
    doc["curve"] = [{**p, "loss": p["loss"] + 1.5 * doc["tolerance"]["atol"]} for p in doc["curve"]]
    ref.write_text(baselines.dumps_curve({k: v for k, v in doc.items() if k != "curve"}, doc["curve"]))
    (root / "cpu" / "avx512-bf16" / "class.json").unlink()  # the class's reload bounds gone: back to declared
    run = MACHINES / "intel-xeon-avx512-amx" / "benchmark-tiny-run"
    _, problems = references.replay(run, root, request.config.getoption("cases_dir"), BUDGETS, tmp_path)
    assert any("tiny-llama/dpo/qlora/base/preference (benchmark" in p and "reload" in p for p in problems)
    run = MACHINES / "intel-xeon-avx512-amx" / "regression-run-worker-a"
    other = MACHINES / "intel-xeon-avx512-amx" / "regression-run-worker-b"
    _, problems = references.replay(run, root, request.config.getoption("cases_dir"), BUDGETS, tmp_path)
    _, more = references.replay(other, root, request.config.getoption("cases_dir"), BUDGETS, tmp_path)
    assert any(p.startswith("tiny-llama/qlora/base (regression") and "golden curve" in p for p in problems + more)
