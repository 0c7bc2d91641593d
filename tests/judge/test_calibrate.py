"""Budgets from measured runs: derived from real benchmark records, written below the seeded ones."""
from __future__ import annotations

import pytest

from suite import cli
from suite.judge import budgets, calibrate
from suite.cases import load_cases
from suite.run.session import RunSession
from tests.helpers import write_cases
from tests.judge.test_budgets import SHORT, write_budget

pytestmark = pytest.mark.slow  # every test reads the records of a module fixture that trains

SEEDED = "  # seeded: a comment that must survive\n  - {cases: 'tiny-*', peak_memory_gib: 64, source: a seeded bound}\n"


RUNS = ["cal", "cal2"]


@pytest.fixture(scope="module")
def measured(tmp_path_factory):
    """Three real benchmark records of one tiny case over two runs (two repeats in `cal`, one in `cal2`:
    the fewest a budget is derived from), and a budgets dir with a seeded entry."""
    tmp = tmp_path_factory.mktemp("cal")
    case = load_cases(write_cases(tmp / "cases", SHORT))[0]
    bdir = write_budget(tmp / "budgets", "cpu", SEEDED)
    recs = []
    for run_id, repeats in (("cal", 2), ("cal2", 1)):
        session = RunSession(tmp / "results", run_id, mode="benchmark", budgets_dir=bdir, profile="cpu")
        recs += [session.run_case(case).record for _ in range(repeats)]
    assert all(r.status == "passed" for r in recs), [r.reason for r in recs]
    return tmp, case, recs


def _worst(recs, metric, pick):
    return pick(r.metrics[metric]["value"] for r in recs)


def test_bounds_are_the_worst_repeat_with_the_margin(measured):
    tmp, case, recs = measured
    made = calibrate.derive(RUNS, "cpu", 0.25, 1.0, results_root=tmp / "results")
    entries = made.entries
    assert made.notes == [] and made.refused == [] and [e.case_id for e in entries] == [case.id]
    e = entries[0]
    assert e.measured["peak_memory_gib"] == _worst(recs, "peak_rss_gib", max)
    assert e.measured["tokens_per_s"] == _worst(recs, "tokens_per_s", min)
    assert e.bounds["peak_memory_gib"] >= e.measured["peak_memory_gib"] * 1.25
    assert e.bounds["step_time_s"] >= _worst(recs, "step_time_median_s", max) * 1.25
    assert e.bounds["setup_s"] >= _worst(recs, "setup_s", max) * 2.0
    assert 0 < e.bounds["tokens_per_s"] <= e.measured["tokens_per_s"] / 1.25
    # counted FLOPs are exact: the bound is the measurement itself with the default work margin 0
    assert e.bounds["flops_per_step"] >= e.measured["flops_per_step"] == _worst(recs, "counted_flops_per_step", max)
    assert e.bounds["step_cpu_time_s"] >= _worst(recs, "step_cpu_time_median_s", max) * 1.25
    assert "3 records of 2 runs on 1 machine (" in e.source and "runs cal, cal2, on CPU" in e.source
    assert "trl " in e.source and "x (1 + 0.25)" in e.source
    assert e.basis == budgets.Basis(3, 2, 1)


def test_too_few_records_or_runs_are_refused_by_name(measured, capsys):
    """Two records of one run (repeats) are not a budget: derive refuses the case, says why, and exits 1;
    one more run makes it one."""
    tmp, case, _ = measured
    made = calibrate.derive(["cal"], "cpu", 0.25, 1.0, results_root=tmp / "results")
    assert made.entries == [] and len(made.refused) == 1
    assert f"{case.id} (" in made.refused[0] and "2 records of 1 run on 1 machine" in made.refused[0]
    assert "at least 3 benchmark records over 2 runs" in made.refused[0]
    # the same folder named twice is one run, not two
    assert calibrate.derive(["cal", str(tmp / "results" / "cal")], "cpu", 0.25, 1.0,
                            results_root=tmp / "results").refused
    code = cli.main(["budgets", "derive", "cal", "--profile", "cpu", "--results-dir", str(tmp / "results"),
                     "--budgets-dir", str(tmp / "budgets")])
    err = capsys.readouterr().err
    assert code == 1 and f"refused: {case.id}" in err and "1 case(s) refused" in err
    code = cli.main(["budgets", "derive", *RUNS, "--profile", "cpu", "--results-dir", str(tmp / "results"),
                     "--budgets-dir", str(tmp / "budgets"), "--note", "a quiet machine"])
    out = capsys.readouterr().out
    assert code == 0 and "records: 3\n" in out and "runs: 2\n" in out and "machines: 1\n" in out
    assert "; a quiet machine'" in out


def test_records_of_different_fingerprints_are_refused(measured, tmp_path):
    """A record of an earlier definition of the case measured another case: no budget from the mix."""
    import json
    import shutil

    tmp, case, _ = measured
    other = tmp_path / "other"
    shutil.copytree(tmp / "results" / "cal2", other)
    for path in other.glob("tiny-*.json"):
        doc = json.loads(path.read_text())
        path.write_text(json.dumps({**doc, "fingerprint": "0" * 16}))
    made = calibrate.derive(["cal", str(other)], "cpu", 0.25, 1.0, results_root=tmp / "results")
    assert made.entries == [] and "2 fingerprints" in made.refused[0]


def test_a_one_machine_budget_says_provisional_when_breached(measured, tmp_path):
    tmp, case, recs = measured
    [entry] = calibrate.derive(RUNS, "cpu", 0.25, 1.0, results_root=tmp / "results").entries
    bdir = write_budget(tmp_path, "cpu", "")
    calibrate.write(bdir, "cpu", [entry])
    [memory] = [b for b in budgets.applicable(budgets.load_profile(bdir, "cpu"), case.id)
                if b.field == "peak_memory_gib"]
    message = memory.fails(case.id, memory.bound * 2)
    assert "(provisional: one machine; measured from 3 records of 2 runs on 1 machine; declared in" in message


def test_written_budgets_keep_the_seeded_part_and_load(measured):
    tmp, case, _ = measured
    entries = calibrate.derive(RUNS, "cpu", 0.25, 1.0, results_root=tmp / "results").entries
    path = calibrate.write(tmp / "budgets", "cpu", entries)
    text = path.read_text()
    assert text.startswith("profile: cpu\nbudgets:\n" + SEEDED) and calibrate.MEASURED_MARK in text
    loaded = budgets.applicable(budgets.load_profile(tmp / "budgets", "cpu"), case.id)
    assert sorted(b.field for b in loaded) == ["flops_per_step", "peak_memory_gib", "peak_memory_gib", "setup_s",
                                               "step_cpu_time_s", "step_time_s", "tokens_per_s"]
    assert calibrate.write(tmp / "budgets", "cpu", entries).read_text() == text  # replaces, never appends twice


def test_writing_one_cases_budgets_keeps_the_other_cases_of_its_class(measured, tmp_path):
    """Deriving budgets for a new case replaces that case's entry only: the class's other measured entries
    (earlier runs of other cases) stay, byte for byte, and a re-derived case replaces its old entry."""
    import dataclasses

    tmp, case, _ = measured
    [entry] = calibrate.derive(RUNS, "cpu", 0.25, 1.0, results_root=tmp / "results").entries
    other = dataclasses.replace(entry, case_id="tiny-aaa/full/base", source="an earlier run")
    bdir = write_budget(tmp_path, "cpu", SEEDED)
    calibrate.write(bdir, "cpu", [other])
    kept = calibrate._render_entry(other)
    calibrate.write(bdir, "cpu", [entry])
    text = (bdir / "cpu.yaml").read_text()
    assert kept in text and calibrate._render_entry(entry) in text
    assert text.index(kept) < text.index(f"  # {case.id}: measured")  # sorted by case id
    again = dataclasses.replace(entry, source="a re-derivation")
    calibrate.write(bdir, "cpu", [again])
    text = (bdir / "cpu.yaml").read_text()
    assert "a re-derivation" in text and entry.source not in text and text.count(f"  # {case.id}: measured") == 1
    assert kept in text


def test_a_seeded_bound_the_measurements_breach_is_reported(measured, tmp_path):
    tmp, case, _ = measured
    entries = calibrate.derive(RUNS, "cpu", 0.25, 1.0, results_root=tmp / "results").entries
    bdir = write_budget(tmp_path, "cpu", "  - {cases: 'tiny-llama/*', peak_memory_gib: 0.01, source: a guess}\n")
    [problem] = calibrate.conflicts(bdir, "cpu", entries)
    assert "budgets[0] (tiny-llama/*) peak_memory_gib 0.01 is already breached by tiny-llama/full/base" in problem


def test_unusable_input_is_a_clear_error(measured, capsys):
    tmp, _, _ = measured
    with pytest.raises(calibrate.CalibrationError, match="no benchmark records measured on profile 'h200-141gb'"):
        calibrate.derive(RUNS, "h200-141gb", 0.25, 1.0, results_root=tmp / "results")
    with pytest.raises(calibrate.CalibrationError, match=r"--margin must be in \[0, 1\)"):
        calibrate.derive(RUNS, "cpu", 1.5, 1.0, results_root=tmp / "results")
    assert cli.main(["budgets", "derive", "nope", "--profile", "cpu", "--results-dir", str(tmp / "results")]) == 2
    assert "no such run" in capsys.readouterr().err


def test_a_corrupt_record_is_named_and_the_rest_still_count(measured, tmp_path, capsys):
    import shutil

    tmp, case, _ = measured
    run = tmp_path / "copy"
    shutil.copytree(tmp / "results" / "cal", run)
    (run / "broken.json").write_text('{"schema_version": 1, "kind": ')
    code = cli.main(["budgets", "derive", str(run), str(tmp / "results" / "cal2"), "--profile", "cpu",
                     "--budgets-dir", str(tmp / "budgets")])
    out = capsys.readouterr()
    assert code == 0 and f"- cases: {case.id}" in out.out
    assert "warning: not read: " in out.err and "broken.json" in out.err


def test_time_and_work_margins_are_their_own(measured):
    tmp, _, recs = measured
    e = calibrate.derive(RUNS, "cpu", 0.1, 1.0, results_root=tmp / "results", time_margin=1.0,
                         work_margin=0.02).entries[0]
    assert e.bounds["step_cpu_time_s"] >= _worst(recs, "step_cpu_time_median_s", max) * 2.0
    assert e.bounds["step_time_s"] >= _worst(recs, "step_time_median_s", max) * 2.0
    assert e.bounds["peak_memory_gib"] < e.measured["peak_memory_gib"] * 1.2
    assert _worst(recs, "counted_flops_per_step", max) * 1.02 <= e.bounds["flops_per_step"]
    assert "x (1 + 1) for step time" in e.source and "x (1 + 0.02) for counted FLOPs" in e.source
    assert e.bounds["tokens_per_s"] <= e.measured["tokens_per_s"] / 2
    with pytest.raises(calibrate.CalibrationError, match="must not be negative"):
        calibrate.derive(["cal"], "cpu", 0.1, 1.0, results_root=tmp / "results", work_margin=-0.1)


def test_a_rate_measured_at_zero_gets_no_floor(measured):
    """A step of no loss tokens (GRPO with every completion of the profiled step truncated and masked out) measures
    tokens/s 0: no floor is derived for it (a floor of 0 bounds nothing, and the budget file refuses one); the other
    bounds stay."""
    import dataclasses

    tmp, case, recs = measured
    zero = [dataclasses.replace(r, metrics={**r.metrics, "tokens_per_s": {**r.metrics["tokens_per_s"], "value": 0.0}})
            for r in recs]
    margins = calibrate._margins(0.25, 1.0, None, 0.0)
    made = calibrate._derived(case.id, recs[0].class_name, [calibrate.Measured(r, "cal") for r in zero],
                              budgets.Basis(3, 2, 1), "cpu", margins, "")
    assert "tokens_per_s" not in made.bounds and made.measured["tokens_per_s"] == 0.0
    assert {"peak_memory_gib", "step_time_s", "flops_per_step"} <= set(made.bounds)
    kept = calibrate._derived(case.id, recs[0].class_name, [calibrate.Measured(r, "cal") for r in recs],
                              budgets.Basis(3, 2, 1), "cpu", margins, "")
    assert kept.bounds["tokens_per_s"] > 0
