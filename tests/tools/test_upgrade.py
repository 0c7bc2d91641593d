"""Upgrade check building blocks: pins, environment keys, version windows, bisect."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from suite.errors import SuiteError
from suite.paths import ROOT, TESTS
from suite.tools import envs, upgrade


def test_pins_are_normalised_and_bad_ones_named():
    assert envs.parse_pins("trl==1.15.0, peft==0.21.0") == ("peft==0.21.0", "trl==1.15.0")
    with pytest.raises(envs.EnvError, match="'trl' is not a requirement"):  # spaces separate pins
        envs.parse_pins("trl == 1.15.0")
    assert envs.parse_pins("git+https://github.com/huggingface/trl@main") == ("git+https://github.com/huggingface/trl@main",)
    with pytest.raises(envs.EnvError, match=r"--candidate: 'trl=1.15' is not a requirement"):
        envs.parse_pins("trl=1.15", "--candidate")
    with pytest.raises(envs.EnvError, match="no requirement given"):
        envs.parse_pins("  ")


def test_environment_key_depends_on_pins_python_and_torch():
    a = envs.EnvSpec(("trl==1.15.0",), "3.11.7", "2.13.0")
    assert a.key == envs.EnvSpec(("trl==1.15.0",), "3.11.7", "2.13.0").key
    assert a.key != envs.EnvSpec(("trl==1.16.0",), "3.11.7", "2.13.0").key
    assert a.key != envs.EnvSpec(("trl==1.15.0",), "3.12.1", "2.13.0").key
    assert a.key != envs.EnvSpec(("trl==1.15.0",), "3.11.7", "2.12.0").key


def test_window_between_good_and_bad():
    versions = ["1.12.0", "1.13.0", "1.14.0", "1.14.1", "1.15.0", "1.16.0"]
    assert upgrade.between(versions, "1.13.0", "1.15.0") == ["1.13.0", "1.14.0", "1.14.1", "1.15.0"]
    with pytest.raises(SuiteError, match="must be older"):
        upgrade.between(versions, "1.15.0", "1.13.0")
    with pytest.raises(SuiteError, match="1.13.5 is not among the released versions"):
        upgrade.between(versions, "1.13.5", "1.15.0")


@pytest.mark.parametrize("first_bad", ["1.1", "1.2", "1.5", "1.7"])
def test_bisect_finds_the_first_worse_version_in_log_probes(first_bad):
    versions = ["1.0", "1.1", "1.2", "1.3", "1.4", "1.5", "1.6", "1.7"]
    res = upgrade.bisect(versions, lambda v: versions.index(v) >= versions.index(first_bad))
    assert res.first_bad == first_bad
    assert res.last_good == versions[versions.index(first_bad) - 1]
    assert len(res.probes) <= 4  # the bad end plus log2(8)


def test_bisect_with_no_regression_says_so():
    res = upgrade.bisect(["1.0", "1.1", "1.2"], lambda v: False)
    assert res.first_bad is None and "1.2 is not worse than 1.0" in res.note and list(res.probes) == ["1.2"]


def _frame(*rows: tuple[str, str, str]):
    import pandas as pd

    return pd.DataFrame([{"case_id": c, "metric": m, "verdict": v} for c, m, v in rows])


def test_a_bisect_probe_is_judged_on_what_the_bad_end_fails_on():
    judge = upgrade.Signature(("worse", "newly failing"))
    worse, verdict = judge(_frame(("tiny/lora", "logged_loss", "newly failing"), ("tiny/lora", "final_loss", "worse"),
                                  ("tiny/lora", "step_time_median_s", "within noise")))
    assert worse and judge.keys == {("tiny/lora", "logged_loss"), ("tiny/lora", "final_loss")}
    assert judge.announce == "tiny/lora final_loss, tiny/lora logged_loss"
    # a good commit whose one record crossed the peak-RSS bound is not the regression being bisected...
    worse, verdict = judge(_frame(("tiny/lora", "peak_rss_delta_gib", "worse"), ("tiny/lora", "final_loss", "better")))
    assert not worse and verdict == "no gated verdict; not the bisected regression: tiny/lora peak_rss_delta_gib"
    # ... one that shows the regression is
    worse, verdict = judge(_frame(("tiny/lora", "final_loss", "worse"), ("tiny/lora", "peak_rss_delta_gib", "worse")))
    assert worse and verdict.startswith("1 worse (tiny/lora)")


def test_a_bisect_probe_can_fail_on_any_gated_row_of_the_bad_end():
    # the first frame judged is the bad end's: every gated row of it counts
    judge = upgrade.Signature(("worse",))
    assert judge(_frame(("tiny/lora", "peak_rss_delta_gib", "worse")))[0]
    assert not upgrade.Signature(("worse",))(_frame(("tiny/lora", "peak_rss_delta_gib", "within noise")))[0]


@pytest.mark.slow
def test_cli_refuses_a_bad_pin_before_making_anything(tmp_path):
    root = ROOT
    out = subprocess.run([sys.executable, "-m", "suite", "upgrade-check", "--baseline", "trl=1.15",
                          "--candidate", "trl==1.16.0", "--out", str(tmp_path / "r")], cwd=root,
                         capture_output=True, text=True, timeout=120)
    assert out.returncode == 2
    assert "--baseline: 'trl=1.15' is not a requirement like 'trl==1.15.0'" in out.stderr
    assert not (tmp_path / "r").exists()


@pytest.mark.skipif(os.environ.get("FTSUITE_NETWORK_TESTS") != "1", reason="installs transformers 4.56.2 and "
                    "trl 0.24.0 from PyPI; set FTSUITE_NETWORK_TESTS=1")
def test_an_upgrade_check_across_the_transformers_major(tmp_path):
    """transformers 4.56 reads the tiny model it wrote itself (5.x's files break its tokenizer loader),
    and trl 0.24 gets quantization_config in model_init_kwargs (its SFTTrainer has no such argument)."""
    root = ROOT
    out = subprocess.run([sys.executable, "-m", "suite", "upgrade-check", "--baseline", "transformers==4.56.2 trl==0.24.0",
                          "--candidate", "trl==1.16.0", "-k", "tiny-llama and base and not messages and not prompt "
                          "and not conv and not unsloth and not full", "--results-dir", str(tmp_path / "results"),
                          "--out", str(tmp_path / "report")], cwd=root, capture_output=True, text=True, timeout=900)
    assert "baseline: transformers==4.56.2 trl==0.24.0 -> " in out.stdout, out.stderr[-3000:]
    records = {}
    for f in (tmp_path / "results").glob("*-baseline-*/tiny-llama__*.json"):
        rec = json.loads(f.read_text())
        # the golden curve (recorded under transformers 5) may differ; that is the check doing its job
        failing = sorted(c["name"] for c in rec["checks"] if not c["passed"] and c["name"] != "golden_curve")
        records[rec["case_id"]] = (rec["status"] != "error", rec["environment"]["packages"]["transformers"],
                                   (rec.get("failure") or {}).get("message"), failing)
    assert records == {"tiny-llama/lora/base": (True, "4.56.2", None, []),
                       "tiny-llama/qlora/base": (True, "4.56.2", None, [])}, records


@pytest.mark.slow
def test_repeats_alternate_the_sides_and_probe_once(tmp_path, monkeypatch):
    """--repeats N runs A B A B ... (a drift of the machine reaches both sides), the invariants and the
    compatibility probe only in the first round, and every repeat's records land in one run per side."""
    import shutil

    calls = []
    fixture = TESTS / "fixtures" / "runs" / "tiny-a"

    def fake_prepare(spec):
        return tmp_path / "env" / ("b" if "1.15" in spec.pins[0] else "c"), {"cached": True, "versions": {}}, 0.0

    def fake_run_cases(env_dir, run_id, results_dir, select, checks=upgrade.Checks(), **_):
        calls.append((env_dir.name, checks.invariants, "--benchmark" in select))
        run_dir = results_dir / run_id
        if not run_dir.exists():
            shutil.copytree(fixture, run_dir)
        return upgrade.Timed(run_dir, 1.0, 0.5 if checks.invariants else 0.0, 0)

    monkeypatch.setattr(upgrade, "prepare", fake_prepare)
    monkeypatch.setattr(upgrade, "run_cases", fake_run_cases)
    monkeypatch.setattr(upgrade.envs, "python_of", lambda env_dir: Path(sys.executable))
    code, summary = upgrade.upgrade_check("trl==1.15.0", "trl==1.16.0", ["-m", "tiny"], tmp_path / "out",
                                          tmp_path / "results", ("worse",), "t",
                                          upgrade.Checks(invariants=True, invariants_k=None, compat=False),
                                          repeats=3, benchmark=True)
    assert calls == [("b", True, True), ("c", True, True), ("b", False, True), ("c", False, True),
                     ("b", False, True), ("c", False, True)]
    assert summary["repeats"] == 3 and summary["sides"]["baseline"]["cases_s"] == 3.0
    assert summary["sides"]["candidate"]["invariants_s"] == 0.5
    with pytest.raises(SuiteError, match="--repeats must be at least 1"):
        upgrade.upgrade_check("trl==1.15.0", "trl==1.16.0", [], tmp_path / "o2", tmp_path / "r2", ("worse",), "t",
                              repeats=0)


def test_two_sides_that_resolve_to_the_same_versions_compare_nothing_and_run_nothing(tmp_path, monkeypatch):
    """`--candidate "trl>=1.16"` against `trl==1.16.0` resolves to one stack: said before any case runs,
    and the gate fails (nothing compared) instead of passing a comparison of the stack with itself."""
    versions = {"trl": "1.16.0", "peft": "0.21.2"}
    monkeypatch.setattr(upgrade, "prepare", lambda spec: (tmp_path / spec.pins[0], {"cached": True,
                                                                                   "versions": versions}, 0.0))
    monkeypatch.setattr(upgrade, "run_cases", lambda *a, **k: pytest.fail("a case ran"))
    monkeypatch.setattr(upgrade.envs, "python_of", lambda env_dir: Path(sys.executable))
    said = []
    code, summary = upgrade.upgrade_check("trl==1.16.0", "trl>=1.16", ["-m", "tiny"], tmp_path / "out",
                                          tmp_path / "results", ("nothing compared",), "t", log=said.append)
    assert code == 1 and summary["gated"] == {"nothing compared": 1}
    assert "both sides resolve to the same versions (trl 1.16.0, peft 0.21.2)" in summary["nothing_compared"]
    assert any(line.startswith("nothing to compare: both sides") for line in said)
    assert "Nothing was compared" in (tmp_path / "out" / "report.md").read_text()
    assert json.loads((tmp_path / "out" / "upgrade-check.json").read_text())["gated"] == {"nothing compared": 1}


def test_the_invariants_follow_the_user_s_selection():
    """`-m packing` runs the packing relations too; --invariants-k overrides; a case -k is not passed on
    (it names case ids, which no invariant test has)."""
    from suite.tools.upgrade import Checks, invariant_selection

    assert invariant_selection(["-m", "tiny and packing and not gpu", "-k", "tiny-llama"], Checks()) == [
        "-m", "tiny and packing and not gpu"]
    assert invariant_selection(["-m", "packing"], Checks(invariants_k="logged_loss")) == ["-k", "logged_loss"]
    assert invariant_selection(["-k", "tiny-llama/lora/base"], Checks()) == []


@pytest.mark.slow
def test_a_packing_selection_collects_the_packing_invariants_only():
    root = ROOT
    out = subprocess.run([sys.executable, "-m", "pytest", "--collect-only", "-q", "-n", "0", "-p", "no:cacheprovider",
                          str(root / "tests" / "invariants"), "-m", "tiny and packing and not gpu"], cwd=root,
                         capture_output=True, text=True, timeout=300)
    ids = [line for line in out.stdout.splitlines() if "::" in line]
    assert ids and all("packing" in i or "packed" in i for i in ids), ids


def test_the_upgrade_report_is_titled_by_the_versions_the_sides_resolved(tmp_path, monkeypatch):
    """The title names the change upgrade-check made, also a pinned package the records do not list
    (the control pair's nvidia-ml-py), then the answer."""
    import shutil

    fixture = TESTS / "fixtures" / "runs" / "tiny-a"
    versions = {"b": {"trl": "1.16.0", "nvidia-ml-py": "13.610.43"}, "c": {"trl": "1.16.0", "nvidia-ml-py": "13.615.71"}}

    def fake_prepare(spec):
        side = "b" if "610" in spec.pins[0] else "c"
        return tmp_path / "env" / side, {"cached": True, "versions": versions[side]}, 0.0

    def fake_run_cases(env_dir, run_id, results_dir, select, checks=upgrade.Checks(), **_):
        shutil.copytree(fixture, results_dir / run_id, dirs_exist_ok=True)
        return upgrade.Timed(results_dir / run_id, 1.0, 0.0, 0)

    monkeypatch.setattr(upgrade, "prepare", fake_prepare)
    monkeypatch.setattr(upgrade, "run_cases", fake_run_cases)
    code, summary = upgrade.upgrade_check("nvidia-ml-py==13.610.43", "nvidia-ml-py==13.615.71", ["-m", "tiny"],
                                          tmp_path / "out", tmp_path / "results", ("worse",), "t",
                                          upgrade.Checks(invariants=False, compat=False))
    assert code == 0
    assert (tmp_path / "out" / "report.md").read_text().startswith("## nvidia-ml-py 13.610.43 → 13.615.71: safe\n")
