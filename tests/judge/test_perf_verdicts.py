"""Performance verdicts: the bootstrap test on repeats and its detection floor, counted work per step
(exact, so an injected extra forward pass shows), CPU time per step, and what the FLOP count and the
analytic FLOPs disagreeing means. The measured sensitivity is benchmarks/sensitivity.py's, not here:
speed is measured in benchmarks, never asserted from a wall clock in a unit test."""
from __future__ import annotations

import random
import statistics

import pytest

from suite.judge import budgets, hardware
from suite.judge.metrics import METRICS
from suite.cases import load_cases
from suite.paths import ROOT
from suite.report import compare, stats
from suite.run.session import RunSession
from suite.train import inject
from tests.helpers import write_cases

CASE_ID = "tiny-llama/lora/base"


def _noisy(centre: float, rel: float, n: int, seed: int) -> list[float]:
    rng = random.Random(seed)
    return [centre * (1 + rng.uniform(-rel, rel)) for _ in range(n)]


def test_identical_repeats_give_ratio_one_and_a_floor_the_size_of_their_spread():
    base, cand = _noisy(1.0, 0.02, 5, 1), _noisy(1.0, 0.02, 5, 2)
    t = stats.ratio_test(base, cand)
    assert t.low <= 1 <= t.high and not t.excludes_one() or abs(t.ratio - 1) < 0.03
    assert 0.005 < t.floor < 0.06
    wide = stats.ratio_test(_noisy(1.0, 0.25, 5, 1), _noisy(1.0, 0.25, 5, 2))
    assert wide.floor > 3 * t.floor  # a noisier pair states a larger floor


def test_the_test_is_deterministic():
    base, cand = _noisy(1.0, 0.1, 5, 3), _noisy(1.1, 0.1, 5, 4)
    assert stats.ratio_test(base, cand) == stats.ratio_test(base, cand)


def test_the_rank_test_must_agree_where_the_repeats_can_reach_it():
    """The bootstrap interval of 5 repeats is too narrow on its own: overlapping samples are no verdict."""
    separated = stats.ratio_test([1.0, 1.01, 0.99, 1.02, 0.98], [1.1, 1.11, 1.09, 1.12, 1.08])
    assert separated.rank_test and separated.pvalue < stats.ALPHA and separated.significant()
    overlapping = stats.RatioTest(1.2, 1.05, 1.3, 0.1, pvalue=0.3, rank_test=True)
    assert overlapping.excludes_one() and not overlapping.significant()
    three = stats.ratio_test([1.0, 1.0, 1.0], [2.0, 2.0, 2.0])  # 3 a side: no rank test reaches 0.05
    assert not three.rank_test and three.significant()


def test_a_ten_percent_slowdown_with_tight_repeats_is_worse():
    metric = METRICS["step_cpu_time_median_s"]
    j = compare.judge(metric, _noisy(1.0, 0.01, 5, 5), _noisy(1.1, 0.01, 5, 6))
    assert j.verdict == compare.WORSE and j.noise == "repeats" and j.threshold < 0.1


def test_the_same_slowdown_in_noisy_repeats_is_within_noise_and_says_its_floor():
    metric = METRICS["step_cpu_time_median_s"]
    j = compare.judge(metric, _noisy(1.0, 0.3, 5, 7), _noisy(1.1, 0.3, 5, 8))
    assert j.verdict == compare.WITHIN_NOISE and j.threshold > 0.1  # too noisy to see 10%, and it says so


def test_a_change_below_the_practical_minimum_is_not_a_verdict():
    """Five tightly clustered repeats must not turn a 2% drift of a time into a verdict."""
    metric = METRICS["step_time_median_s"]
    j = compare.judge(metric, [1.0, 1.0001, 0.9999, 1.0, 1.0002], [1.02, 1.0201, 1.0199, 1.02, 1.0202])
    assert j.verdict == compare.WITHIN_NOISE and j.threshold == pytest.approx(metric.min_change)


def test_counted_work_has_no_practical_minimum():
    metric = METRICS["counted_flops_per_step"]
    j = compare.judge(metric, [1000.0], [1001.0])
    assert j.verdict == compare.WORSE and compare.judge(metric, [1000.0], [1000.0]).verdict == compare.WITHIN_NOISE


@pytest.mark.parametrize("ratio, recomputes, four_bit, expect", [
    (1.03, False, False, None),
    (1.50, True, False, "recomputes the forward"),
    (0.61, False, True, "4-bit matmul kernels"),
    (1.40, False, False, "no known cause"),
    (0.61, True, False, "no known cause"),  # checkpointing explains more counted work, never less
])
def test_a_flop_disagreement_says_which_figure_is_wrong(ratio, recomputes, four_bit, expect):
    note = hardware.flops_disagreement(ratio, recomputes, four_bit)
    assert note is None if expect is None else expect in note


def test_an_unknown_fault_is_refused_by_name(monkeypatch):
    monkeypatch.setenv(inject.ENV, "compute:0.1,slower")
    with pytest.raises(ValueError, match="FTSUITE_INJECT: unknown fault 'slower'"):
        inject.requested()


def test_every_fault_names_a_seam_that_exists():
    """Each fault's seam (suite/train/inject.py) names a function or method the training code still has: a
    renamed one would leave its fault silently unapplied."""
    for kind, seam in inject.SEAMS.items():
        owner, name = inject.seam_owner(seam.where)
        assert callable(getattr(owner, name, None)), f"{kind}: {seam.where}"
    with pytest.raises(AttributeError):
        inject.seam_owner("suite.train.routes.NoSuchRoute.load")


LORA = ("matrix:\n  - {models: [tiny-llama], methods: [lora], "
        "training: {max_steps: 16, benchmark_steps: 16, learning_rate: 0.01}}\n")


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """One tiny LoRA case trained three times for real: twice as it is, once with one more forward
    pass per loss (FTSUITE_INJECT=forward)."""
    tmp = tmp_path_factory.mktemp("work")
    case = load_cases(write_cases(tmp / "cases", LORA), mode="benchmark")[0]
    (tmp / "no-budgets").mkdir()  # the shipped CPU budgets are for the shipped cases' timings
    session = RunSession(tmp / "results", "w", mode="benchmark", budgets_dir=tmp / "no-budgets")
    out = {}
    for name, fault in (("a", ""), ("b", ""), ("forward", "forward")):
        session.child_env = {inject.ENV: fault}
        res = session.run_case(case)
        assert res.status == "passed", res.reason
        out[name] = res.record
    session.finish()
    return out


def _m(record, name: str) -> float:
    return record.metrics[name]["value"]


@pytest.mark.slow
def test_counted_work_is_the_same_in_two_runs_and_sees_an_extra_forward(runs):
    a, b, fwd = runs["a"], runs["b"], runs["forward"]
    assert _m(a, "counted_flops_per_step") == _m(b, "counted_flops_per_step") > 0  # exact
    # the profiler's operator count is not: it moved 0.4% between two runs of one commit in CI
    assert abs(_m(a, "aten_calls_per_step") / _m(b, "aten_calls_per_step") - 1) <= 0.02
    for name in ("counted_flops_per_step", "aten_calls_per_step"):
        assert _m(fwd, name) > _m(a, name)
        assert compare.judge(METRICS[name], [_m(a, name)], [_m(fwd, name)]).verdict == compare.WORSE
        assert compare.judge(METRICS[name], [_m(a, name)], [_m(b, name)]).verdict == compare.WITHIN_NOISE
    # a forward is about a third of a forward and backward: the count grows by roughly that
    assert 1.2 < _m(fwd, "counted_flops_per_step") / _m(a, "counted_flops_per_step") < 1.6
    assert fwd.resolved["injected"] == {"forward": 1.0} and "injected" not in a.resolved


@pytest.mark.slow
def test_a_record_has_cpu_times_beside_wall_times_and_the_analytic_comparison(runs):
    a = runs["a"]
    assert len(a.step_cpu_times_s) == len(a.step_times_s) > 0
    assert all(t >= 0 for t in a.step_cpu_times_s)
    assert _m(a, "step_cpu_time_median_s") > 0 and _m(a, "train_cpu_s") > 0
    assert a.timing["train_cpu_s"] == _m(a, "train_cpu_s")
    warm = a.case["benchmark"]["warmup_steps"]
    off = sorted(max(w - c, 0.0) for w, c in zip(a.step_times_s[warm:], a.step_cpu_times_s[warm:]))
    assert _m(a, "step_off_cpu_median_s") == pytest.approx(statistics.median(off))
    work = a.work
    assert work["flops"] == sum(work["flops_by_op"].values()) and work["processed_tokens"] > 0
    assert work["vs_analytic"]["ratio"] == pytest.approx(_m(a, "counted_vs_analytic_flops"))
    assert work["vs_analytic"]["note"] is None  # LoRA on a plain llama: the count and the formula agree


@pytest.mark.slow
def test_the_measured_flop_budget_refuses_the_extra_forward(runs):
    """cases/budgets/cpu.yaml's counted-FLOPs bound of tiny-llama/lora/base is the measured count: the
    unchanged run meets it exactly, the run with one more forward pass breaches it, named."""
    entries = budgets.load_profile(ROOT / "cases" / "budgets", "cpu")
    values = {name: _m(runs["a"], name) for name in runs["a"].metrics}
    ok = [c for c in budgets.evaluate(entries, CASE_ID, values) if "flops_per_step" in c.name]
    assert ok and all(c.passed for c in ok)
    values = {name: _m(runs["forward"], name) for name in runs["forward"].metrics}
    bad = [c for c in budgets.evaluate(entries, CASE_ID, values) if "flops_per_step" in c.name]
    assert bad and not any(c.passed for c in bad) and "counted_flops_per_step" in bad[0].message
