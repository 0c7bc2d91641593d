"""Budgets per hardware profile: loading, bad input, and real breaches on a tiny case."""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from suite.errors import CaseError
from suite.judge import budgets, hardware
from suite.cases import load_cases
from suite.paths import ROOT
from suite.run.session import RunSession
from tests.helpers import write_cases

# full fine-tunes learn fastest: 16 steps are enough for the loss check
SHORT = "matrix:\n  - {models: [tiny-llama], methods: [full], training: {max_steps: 12, benchmark_steps: 16}}\n"


def write_budget(directory: Path, profile: str, body: str) -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    (directory / f"{profile}.yaml").write_text(f"profile: {profile}\nbudgets:\n{body}")
    return directory


def test_the_shipped_budget_files_load():
    for path in sorted((ROOT / "cases" / "budgets").glob("*.yaml")):
        entries = budgets.load_profile(path.parent, path.stem)
        assert entries, path
        assert all(b.source for e in entries for b in e.budgets)


def test_every_single_gpu_7b_case_has_a_memory_budget_on_the_h200():
    """The globs of the seeded GPU budgets cover real and 7B-shaped model ids alike."""
    entries = budgets.load_profile(ROOT / "cases" / "budgets", "h200-141gb")
    uncovered = [c.id for c in load_cases(ROOT / "cases") if c.model.size == "7b" and not c.distributed
                 and not any(b.field == "peak_memory_gib" for b in budgets.applicable(entries, c.id))]
    assert uncovered == []


@pytest.mark.parametrize("body,field,words", [
    ("  - {cases: 'tiny-*', peak_memory_gib: 1}\n", "budgets[0].source", "say where the numbers come from"),
    ("  - {source: x, peak_memory_gib: 1}\n", "budgets[0].cases", "needs `cases`"),
    ("  - {cases: '*', source: x, peak_mem: 1}\n", "budgets[0].peak_mem", "unknown budget field"),
    ("  - {cases: '*', source: x, step_time_s: -1}\n", "budgets[0].step_time_s", "positive number"),
    ("  - {cases: '*', kernel_class: avx2, source: x, step_time_s: 1}\n", "budgets[0].records",
     "how many benchmark records, runs and machines"),
    ("  - {cases: '*', source: x, records: 3, runs: 2, machines: 0, step_time_s: 1}\n", "budgets[0].machines",
     "at least 1"),
    ("  - {cases: '*', source: x, records: 3, runs: 2, machines: 3, step_time_s: 1}\n", "budgets[0].runs",
     "machines <= runs <= records"),
    ("  - {cases: c, kernel_class: avx2, source: x, records: 3, runs: 2, machines: 1, step_time_s: 1}\n" * 2,
     "budgets[1].cases", "a second measured entry for c on kernel class avx2"),
])
def test_bad_budget_files_name_file_and_field(tmp_path, body, field, words):
    write_budget(tmp_path, "cpu", body)
    with pytest.raises(CaseError) as err:
        budgets.load_profile(tmp_path, "cpu")
    assert err.value.file.endswith("cpu.yaml") and err.value.field == field and words in err.value.message


def test_profile_detection_and_metric_choice():
    assert hardware.detect_profile([]).name == "cpu"
    assert hardware.detect_profile([{"name": "NVIDIA H200", "memory_gib": 139.8}]).name == "h200-141gb"
    assert hardware.detect_profile([{"name": "NVIDIA A100-SXM4-40GB", "memory_gib": 39.4}]).name == "a100-40gb"
    assert hardware.detect_profile([{"name": "NVIDIA A100-SXM4-80GB", "memory_gib": 79.2}]).name == "a100-80gb"
    assert hardware.detect_profile([{"name": "Tesla T4", "memory_gib": 15.0}]).name == "t4-16gb"
    assert hardware.detect_profile([{"name": "NVIDIA RTX 4090", "memory_gib": 24}]).name == "nvidia-rtx-4090-24gb"
    assert hardware.profile_named("h200-141gb").peak_flops["bf16"] == 989e12


def test_budget_bounds_fail_with_metric_value_bound_and_profile():
    b = budgets.Budget("peak_memory_gib", "cuda_max_reserved_gib", 10.0, "max", "GiB", "h200-141gb", "paper", "f.yaml")
    assert b.fails("c", 9.5) is None
    msg = b.fails("c", 12.25)
    assert msg.startswith("c: budget breached on profile h200-141gb: peak_memory_gib (cuda_max_reserved_gib) = 12.25 GiB > budget 10 GiB")
    t = budgets.Budget("tokens_per_s", "tokens_per_s", 100.0, "min", "tokens/s", "cpu", "measured", "f.yaml")
    assert "= 50 tokens/s < budget 100 tokens/s" in t.fails("c", 50.0)
    assert "was not measured" in t.fails("c", None)


def test_the_cpu_profile_gates_cpu_time_and_reports_wall_time(tmp_path):
    """On the CPU profile a wall-clock bound (step time, tokens/s, set-up) breached is reported, not a
    failure, and the CPU time per step gates; on a GPU profile the same bounds gate."""
    body = ("  - {cases: 'c', step_time_s: 0.1, tokens_per_s: 1000, setup_s: 1, step_cpu_time_s: 0.1, "
            "records: 3, runs: 2, machines: 2, kernel_class: avx2, source: crafted}\n")
    loaded = budgets.load_profile(write_budget(tmp_path / "cpu", "cpu", body), "cpu")
    slow_wall = {"step_time_median_s": 0.5, "tokens_per_s": 10.0, "setup_s": 9.0, "step_cpu_time_median_s": 0.05}
    results = {c.name: c for c in budgets.evaluate(loaded, "c", slow_wall)}
    assert all(c.passed for c in results.values())
    wall = results["budget:step_time_s"]
    assert wall.message.startswith("reported, not gated (wall time on the CPU profile") and "> budget 0.1 s" in wall.message
    assert "< budget 1000 tokens/s" in results["budget:tokens_per_s"].message
    [cpu] = [c for c in budgets.evaluate(loaded, "c", {**slow_wall, "step_cpu_time_median_s": 0.2}) if not c.passed]
    assert cpu.name == "budget:step_cpu_time_s" and "= 0.2 s > budget 0.1 s" in cpu.message
    assert "provisional" not in cpu.message and "measured from 3 records of 2 runs on 2 machines" in cpu.message
    on_gpu = budgets.load_profile(write_budget(tmp_path / "gpu", "h200-141gb", body.replace("avx2", "sm90")),
                                  "h200-141gb")
    failed = sorted(c.name for c in budgets.evaluate(on_gpu, "c", {"step_time_median_s": 0.5, "tokens_per_s": 10.0,
                                                                     "setup_s": 9.0, "step_cpu_time_median_s": 0.05})
                    if not c.passed)
    assert failed == ["budget:setup_s", "budget:step_time_s", "budget:tokens_per_s"]


def test_a_bound_from_one_machine_or_too_few_runs_says_provisional():
    one = budgets.Budget("step_cpu_time_s", "step_cpu_time_median_s", 0.1, "max", "s", "cpu", "m", "f.yaml",
                         "avx2", basis=budgets.Basis(3, 2, 1))
    assert "(provisional: one machine; measured from 3 records of 2 runs on 1 machine; declared in f.yaml" \
        in one.fails("c", 0.2)
    few = budgets.Basis(3, 1, 1).provisional
    assert few.startswith("provisional: one machine; 3 record(s) of 1 run(s), fewer than the 3 records over 2 runs")
    assert budgets.Basis(5, 3, 2).provisional == ""


def test_flops_per_token_formulas():
    full = hardware.flops_per_token(100, 100, 10, 2, 8, 16, full=True)
    adapter = hardware.flops_per_token(100, 4, 10, 2, 8, 16, full=False)
    assert full == 6 * 90 + 12 * 2 * 8 * 16
    assert adapter == 4 * 90 + 2 * 4 + 12 * 2 * 8 * 16


@pytest.mark.slow
def test_tight_budgets_fail_a_real_tiny_case_and_generous_ones_pass(tmp_path):
    case = load_cases(write_cases(tmp_path / "cases", SHORT))[0]
    tight = write_budget(tmp_path / "tight", "cpu", "  - {cases: 'tiny-llama/*', peak_memory_gib: 0.01, "
                                                    "step_time_s: 0.000001, step_cpu_time_s: 0.000001, "
                                                    "source: a test}\n")
    res = RunSession(tmp_path / "r", "tight", mode="benchmark", budgets_dir=tight, profile="cpu").run_case(case)
    assert res.status == "failed"
    text = "\n".join(res.failure_messages)
    assert "budget breached on profile cpu: peak_memory_gib (peak_rss_gib) = " in text and "> budget 0.01 GiB" in text
    assert "step_cpu_time_s (step_cpu_time_median_s) = " in text and "> budget 1e-06 s" in text
    assert "step_time_s (step_time_median_s)" not in text  # wall time: reported on the CPU profile, not gated
    [wall] = [c for c in res.record.checks if c["name"] == "budget:step_time_s"]
    assert wall["passed"] and wall["message"].startswith("reported, not gated")
    assert res.record.budgets["enforced"] is True and len(res.record.step_times_s) == 15
    generous = write_budget(tmp_path / "generous", "cpu", "  - {cases: '*', peak_memory_gib: 64, step_time_s: 60, "
                                                          "tokens_per_s: 1, setup_s: 600, source: a test}\n")
    ok = RunSession(tmp_path / "r", "generous", mode="benchmark", budgets_dir=generous, profile="cpu").run_case(case)
    assert ok.status == "passed", ok.failure_messages
    assert sum(c["name"].startswith("budget:") for c in ok.record.checks) == 4
    none = RunSession(tmp_path / "r", "none", mode="benchmark", budgets_dir=tmp_path / "empty",
                      profile="cpu").run_case(case)
    assert none.status == "passed" and "no budget declared" in none.record.budgets["note"]
    regression = RunSession(tmp_path / "r", "reg", budgets_dir=tight, profile="cpu").run_case(case)
    assert regression.status == "passed" and "benchmark mode" in regression.record.budgets["note"]


@pytest.mark.slow
def test_benchmark_mode_feeds_pytest_benchmark_json(tmp_path):
    """The mechanism, not this machine's speed: the budgets are the test's own, generous ones (the committed
    ones, measured alone, once failed this test beside another worker's training: 0.0567 s > 0.018 s)."""
    cases = write_cases(tmp_path / "cases", SHORT)
    out = tmp_path / "bench.json"
    crafted = write_budget(tmp_path / "budgets", "cpu", "  - {cases: '*', peak_memory_gib: 64, step_time_s: 60, "
                                                        "step_cpu_time_s: 60, source: crafted by the test}\n")
    proc = subprocess.run([sys.executable, "-m", "pytest", "-q", "tests/test_matrix.py", "--cases-dir", str(cases),
                           "--benchmark", "--benchmark-repeat", "2", "--benchmark-json", str(out),
                           "--budget-profile", "cpu", "--budgets-dir", str(crafted),
                           "--results-dir", str(tmp_path / "results"), "--run-id", "b"],
                          cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    bench = json.loads(out.read_text())["benchmarks"]
    assert len(bench) == 1
    entry = bench[0]
    assert entry["stats"]["rounds"] == 2 * (15 - 5)  # two repeats x (15 timed gaps - 5 warm-up)
    info = entry["extra_info"]
    assert info["case_id"] == "tiny-llama/full/base" and info["repeats"] == 2
    assert info["packages"]["trl"] and len(info["tokens_per_s"]) == 2 and len(info["peak_rss_gib"]) == 2
    records = sorted(p.name for p in (tmp_path / "results" / "b").glob("*.json"))
    assert records == ["manifest.json", "tiny-llama__full__base.2.json", "tiny-llama__full__base.json"]
    first = json.loads((tmp_path / "results" / "b" / "tiny-llama__full__base.json").read_text())
    assert min(first["step_times_s"][5:]) >= entry["stats"]["min"]  # the rounds are the measured steps
    assert {d["source"] for d in first["budgets"]["declared"]} == {"crafted by the test"}
