"""History: fixture nights built from a real record (tests/fixtures/runs/tiny-a) with planted
changes, analysed by Apache Otava: a 10% step in a noisy series is found at the right run with what
changed that night, a slow drift is called a drift, flat noisy series raise no change point (the
false-alarm rate is measured here), corrupt and missing runs are named and skipped."""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from benchmarks.history_fixture import CASE, NIGHTS, SLUG, STEP_AT, nightly, noisy, planted_series
from suite.paths import ROOT
from suite.report import history, history_pages


@pytest.fixture(scope="module")
def planted(tmp_path_factory) -> Path:
    """Step time: 4% noise, +10% from night 18 (when trl goes 1.15.0 -> 1.16.0); peak RSS: +0.4% a
    night; tokens/s: flat, 3% noise (benchmarks/history_fixture.py)."""
    return nightly(tmp_path_factory.mktemp("nights"), planted_series())


@pytest.fixture(scope="module")
def analysed(planted) -> history.History:
    return history.analyse([str(planted)])


@pytest.mark.slow
def test_runs_are_ordered_by_start_and_the_frame_holds_every_value(analysed):
    assert [r.name for r in analysed.runs] == [f"night-{i:02d}" for i in range(NIGHTS)]
    assert len(analysed.values(CASE, "step_time_median_s", "regression")) == NIGHTS


def test_a_ten_percent_step_in_a_noisy_series_is_found_at_the_right_night(analysed):
    steps = [c for c in analysed.changes if c.metric == "step_time_median_s"]
    assert len(steps) == 1, steps
    c = steps[0]
    assert (c.run, c.previous, c.direction) == (f"night-{STEP_AT:02d}", f"night-{STEP_AT - 1:02d}", "worse")
    assert 0.05 < c.change < 0.15 and c.pvalue < history.MAX_PVALUE
    assert c.environment == ["trl 1.15.0 → 1.16.0"]
    assert c.bisect == [f'python -m suite bisect --package trl --good 1.15.0 --bad 1.16.0 -k "{CASE}"']


@pytest.mark.slow
def test_a_slow_drift_is_reported_as_a_drift_not_a_step(analysed):
    assert not [c for c in analysed.changes if c.metric == "peak_rss_gib"]
    (d,) = [d for d in analysed.drifts if d.metric == "peak_rss_gib"]
    assert d.direction == "worse" and d.runs == NIGHTS and 0.002 < d.per_run < 0.006
    assert (d.first, d.last) == ("night-00", f"night-{NIGHTS - 1:02d}")


def test_a_flat_noisy_series_has_no_change_point_and_no_drift(analysed):
    assert not [c for c in analysed.changes if c.metric == "tokens_per_s"]
    assert not [d for d in analysed.drifts if d.metric == "tokens_per_s"]


def test_the_step_found_without_a_drift_call_of_its_own(analysed):
    """A step makes Kendall's tau significant too; once the line is out, the step remains, so it
    is a change point and not a drift."""
    assert not [d for d in analysed.drifts if d.metric == "step_time_median_s"]


def test_an_exact_metric_changes_at_the_one_run_it_changed():
    values = [1_000_000.0] * 12 + [1_000_512.0] * 8
    assert [i for i, _ in history.change_points(values)] == [12]
    assert history.change_points([5.0] * 20) == [] and history.drift([5.0] * 20) is None


@pytest.mark.slow
def test_where_a_step_is_found_over_many_noisy_series():
    """The fixture's night is one draw of the noise; over 200 draws (a 10% step at night 18 under 4%
    noise, 2.5 standard deviations) Otava places it exactly in most, within two nights in nearly
    all, and the BIC calls it a drift in few."""
    exact = near = drifts = 0
    for seed in range(200):
        values = [v * (1.10 if i >= STEP_AT else 1.0) for i, v in enumerate(noisy(NIGHTS, 0.2, 0.04, 500 + seed))]
        shifts = [i for i, _ in history.change_points(values)]
        if history.drift(values, shifts) is not None:
            drifts += 1
            continue
        exact += shifts == [STEP_AT]
        near += any(abs(i - STEP_AT) <= 2 for i in shifts)
    assert exact >= 120 and near >= 170 and drifts <= 25, (exact, near, drifts)


def test_a_drift_is_called_a_drift_over_many_series():
    calls = sum(history.drift([v * (1 + 0.004 * i) for i, v in enumerate(noisy(NIGHTS, 1.5, 0.005, 900 + s))])
                is not None for s in range(100))
    assert calls >= 95


def test_false_alarm_rate_on_flat_series():
    """200 flat series of 30 nights, Gaussian noise of 5%: the share with any change point or drift.
    The closing note of the history issue quotes this rate."""
    alarms = 0
    for seed in range(200):
        values = noisy(NIGHTS, 1.0, 0.05, 1000 + seed)
        alarms += bool(history.change_points(values)) or history.drift(values) is not None
    print(f"false alarms on flat series: {alarms}/200")
    assert alarms <= 2  # 1% (measured: 0 of 200; at Otava's own default p < 0.001, 9 of 200)


def test_markdown_lists_the_change_newest_first_with_its_bisect_line(analysed):
    text = history_pages.markdown(analysed)
    assert text.startswith(f"## ftsuite history: {NIGHTS} runs, `night-00`")
    row = next(line for line in text.splitlines() if line.startswith("| worse | `night-18`"))
    assert "`tiny-llama/full/base` | step_time_median_s |" in row and "trl 1.15.0 → 1.16.0" in row
    assert "python -m suite bisect --package trl --good 1.15.0 --bad 1.16.0" in row
    assert "### Drifts (1)" in text and "| worse | `tiny-llama/full/base` | peak_rss_gib |" in text


def test_corrupt_and_missing_runs_are_named_and_skipped(planted, tmp_path):
    broken = tmp_path / "broken-night"
    broken.mkdir()
    (broken / SLUG).write_text('{"kind": "ftsuite.case-result", "schema_version": 1, "case_id": ')  # truncated
    empty = tmp_path / "empty-night"
    empty.mkdir()
    h = history.analyse([str(planted), str(broken), "no-such-night", str(empty)], results_root=tmp_path)
    text = " ".join(h.skipped)
    assert f"{broken / SLUG}: corrupt or truncated JSON" in text and f"{broken}: no readable record" in text
    assert "no-such-night: no such run" in text
    assert str(empty) in text
    assert len(h.runs) == NIGHTS  # the readable ones are all there
    assert "could not be read, skipped" in history_pages.markdown(h)


def test_nothing_readable_is_an_error_not_an_empty_green(tmp_path):
    with pytest.raises(history.HistoryError, match="no readable run among"):
        history.analyse([str(tmp_path / "nothing")], results_root=tmp_path)


@pytest.mark.slow
def test_a_history_of_one_run_analyses_nothing_says_what_it_needs_and_its_gate_fails(planted, capsys):
    from suite import cli

    h = history.analyse([str(planted / "night-01")])
    assert h.series == 0 and len(h.runs) == 1
    text = history_pages.markdown(h)
    assert f"**Nothing analysed**: a series needs at least {history.MIN_POINTS} runs" in text
    assert cli.main(["history", str(planted / "night-01"), "-q"]) == 0  # no gate asked: a page, no verdict
    assert cli.main(["history", str(planted / "night-01"), "-q", "--gate", "1"]) == 1
    assert "gate fails: nothing analysed: a series needs at least 6 runs" in capsys.readouterr().err


@pytest.mark.slow
def test_cli_writes_the_pages_and_gates_on_a_recent_worse_change(planted, tmp_path):
    out = tmp_path / "report"
    run = [sys.executable, "-m", "suite", "history", str(planted / "night-*"), "--out", str(out), "-q"]
    proc = subprocess.run(run, cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    assert {p.name for p in out.iterdir()} == {"history.md", "history.html", "history.json", "history.csv"}
    doc = json.loads((out / "history.json").read_text())
    assert [c["run"] for c in doc["changes"]] == ["night-18"] and doc["drifts"][0]["metric"] == "peak_rss_gib"
    recent = subprocess.run([*run, "--gate", str(NIGHTS - STEP_AT)], cwd=ROOT, capture_output=True, text=True,
                            timeout=300)
    assert recent.returncode == 1 and "gate fails" in recent.stderr and "night-18" in recent.stderr
    older = subprocess.run([*run, "--gate", str(NIGHTS - STEP_AT - 1)], cwd=ROOT, capture_output=True, text=True,
                           timeout=300)
    assert older.returncode == 0, older.stderr


@pytest.mark.parametrize("shift, direction", [(1.5e-5, "changed"), (1e-3, "worse")])
def test_a_runner_class_switch_within_the_band_is_no_change_point_to_gate(tmp_path, shift, direction):
    """A nightly fleet that moves from an AVX2 to an AVX512-BF16 runner at night 18: the full
    fine-tune's final loss moves by less than the measured cross-class band for `full` (2.4e-5):
    the change point says the kernel class switched and is not `worse`; beyond the band it is."""
    from benchmarks.history_fixture import noisy

    values = [v + (shift if i >= STEP_AT else 0.0) for i, v in enumerate(noisy(NIGHTS, 3.0, 1e-7, 7))]
    root = nightly(tmp_path, {"final_loss": values}, trl_from=None)
    for i in range(NIGHTS):
        path = root / f"night-{i:02d}" / SLUG
        rec = json.loads(path.read_text())
        rec["kernel_class"] = "avx512-bf16" if i >= STEP_AT else "avx2"
        path.write_text(json.dumps(rec))
    [change] = [c for c in history.analyse([str(root)]).changes if c.metric == "final_loss"]
    assert change.run == f"night-{STEP_AT:02d}" and change.direction == direction
    assert any(line.startswith("kernel_class avx2 → avx512-bf16") for line in change.environment), change.environment
    assert bool(change.note) == (direction == "changed")
