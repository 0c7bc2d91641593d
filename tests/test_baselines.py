"""Golden loss curves (suite/baselines.py): written, compared, updated; nothing passes silently."""
from __future__ import annotations

import json
from dataclasses import replace

import pytest

from suite import baselines
from suite.baselines import BaselineStore, CurveMatches, read_curve
from suite.cases import load_cases
from suite.checks import CheckResult


@pytest.fixture(scope="module")
def tiny_case(request):
    cases = load_cases(request.config.getoption("cases_dir"))
    return next(c for c in cases if c.id == "tiny-llama/lora/base")


def _payload(losses):
    return {"loss_curve": [{"step": i + 1, "loss": x, "grad_norm": 1.0} for i, x in enumerate(losses)]}


CURVE = [3.8, 3.5, 3.1, 2.7, 2.2]


def test_missing_baseline_is_written_and_fails(tmp_path, tiny_case):
    store = BaselineStore(tmp_path / "baselines", profile="cpu")
    [result] = store.checks(tiny_case, _payload(CURVE), [], tmp_path / "run")
    path = tmp_path / "baselines" / "cpu" / f"{tiny_case.slug}.json"
    assert not result.passed and result.name == "golden_curve"
    assert "no golden curve" in result.message and "wrote" in result.message and path.name in result.message
    doc = read_curve(path)
    assert doc["case_id"] == tiny_case.id and doc["fingerprint"] == tiny_case.fingerprint
    assert [p["loss"] for p in doc["curve"]] == CURVE
    assert doc["packages"]["trl"] is not None
    # diff-friendly: one step per line
    assert sum('"step":' in line for line in path.read_text().splitlines()) == len(CURVE)


def test_matching_curve_passes_then_mismatch_writes_the_obtained_curve(tmp_path, tiny_case):
    store = BaselineStore(tmp_path / "b", profile="cpu")
    store.checks(tiny_case, _payload(CURVE), [], tmp_path / "run")
    [ok] = store.checks(tiny_case, _payload([x * (1 + 1e-5) for x in CURVE]), [], tmp_path / "run")
    assert ok.passed, ok.message
    changed = list(CURVE)
    changed[3] += 0.05
    [bad] = store.checks(tiny_case, _payload(changed), [], tmp_path / "run")
    obtained = tmp_path / "run" / tiny_case.slug / "obtained-curve.json"
    assert not bad.passed
    assert "baseline:" in bad.message and "obtained:" in bad.message and obtained.name in bad.message
    assert "step    4: baseline 2.700000  obtained 2.750000" in bad.message
    assert [p["loss"] for p in json.loads(obtained.read_text())["curve"]] == changed


def test_other_fingerprint_is_another_configuration(tmp_path, tiny_case):
    store = BaselineStore(tmp_path / "b", profile="cpu")
    store.checks(tiny_case, _payload(CURVE), [], tmp_path / "run")
    other = replace(tiny_case, training=replace(tiny_case.training, learning_rate=0.5))
    [result] = store.checks(other, _payload(CURVE), [], tmp_path / "run")
    assert not result.passed
    assert "another configuration" in result.message and "--update-baselines" in result.message


def test_update_rewrites_and_passes(tmp_path, tiny_case):
    BaselineStore(tmp_path / "b", profile="cpu").checks(tiny_case, _payload(CURVE), [], tmp_path / "run")
    store = BaselineStore(tmp_path / "b", update=True, profile="cpu")
    [result] = store.checks(tiny_case, _payload([x + 1 for x in CURVE]), [], tmp_path / "run")
    assert result.passed and "rewritten" in result.message
    assert store.events and store.events[0].startswith("rewrote")
    [again] = BaselineStore(tmp_path / "b", profile="cpu").checks(
        tiny_case, _payload([x + 1 for x in CURVE]), [], tmp_path / "run")
    assert again.passed


def test_a_failing_case_never_becomes_a_baseline(tmp_path, tiny_case):
    for update in (False, True):
        store = BaselineStore(tmp_path / "b", update=update, profile="cpu")
        [result] = store.checks(tiny_case, _payload(CURVE), [CheckResult("loss_decreases", False, "flat")],
                                tmp_path / "run")
        assert not result.passed and "failed loss_decreases" in result.message
    assert not (tmp_path / "b").exists()


def test_only_tiny_regression_cases_have_golden_curves(tmp_path, tiny_case, request):
    store = BaselineStore(tmp_path / "b", profile="cpu")
    assert store.checks(tiny_case.with_mode("benchmark"), _payload(CURVE), [], tmp_path / "run") == []
    big = next(c for c in load_cases(request.config.getoption("cases_dir")) if c.model.size == "7b")
    assert store.checks(big, _payload(CURVE), [], tmp_path / "run") == []


def test_curve_tolerances_are_per_step():
    check = CurveMatches(rtol=1e-3, atol=0.0)
    ref = [{"step": 1, "loss": 1.0}, {"step": 2, "loss": 2.0}]
    assert check.mismatches([{"step": 1, "loss": 1.0009}, {"step": 2, "loss": 2.0019}], ref) == []
    assert len(check.mismatches([{"step": 1, "loss": 1.0011}, {"step": 2, "loss": float("nan")}], ref)) == 2
    assert "logged steps differ" in check.mismatches([{"step": 1, "loss": 1.0}], ref)[0]


def test_profile_is_cpu_without_a_gpu(monkeypatch):
    monkeypatch.setattr(baselines.env, "cuda_available", lambda: False)
    assert baselines.current_profile() == "cpu"
    monkeypatch.setattr(baselines.env, "cuda_available", lambda: True)
    monkeypatch.setattr(baselines.env, "capture", lambda: {"gpus": [{"name": "NVIDIA H200", "memory_gib": 139.8}]})
    assert baselines.current_profile() == "h200-141gb"  # the names budgets use (suite/hardware.py)
