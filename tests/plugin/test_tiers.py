"""The extended tier (`tier: extended` rows): left out of a run unless --extended (or an -m naming it), with a line
and a manifest field that say so; a comparison calls such a case neither lost nor hides it."""
from __future__ import annotations

import json
import shutil

import pytest

from suite.errors import CaseError
from suite.matrix import selection
from suite.matrix.load import load_cases
from suite.matrix.support import Support
from suite.paths import TESTS
from suite.records import runs
from suite.report import compare
from suite.run.session import left_out_entry
from suite.train.backends.registry import SUPPORT
from tests.helpers import write_cases

pytest_plugins = ["pytester"]

MATRIX = """
matrix:
  - {models: [tiny-llama], methods: [lora]}
  - {models: [tiny-llama, tiny-qwen2], methods: [full, qlora], tier: extended}
"""
EXTENDED = {"tiny-llama/full/base", "tiny-llama/qlora/base", "tiny-qwen2/full/base", "tiny-qwen2/qlora/base"}


@pytest.fixture
def cases(tmp_path):
    return load_cases(write_cases(tmp_path / "cases", MATRIX), "regression", SUPPORT)


def test_a_row_puts_its_cases_in_the_tier_with_its_marker_and_no_new_fingerprint(cases):
    tier = {c.id for c in cases if c.opt_in}
    assert tier == EXTENDED and all("extended" in c.markers for c in cases if c.opt_in)
    main = next(c for c in cases if not c.opt_in)
    assert main.tier == "main" and "extended" not in main.markers and "tier" not in main.to_dict()
    moved = next(c for c in cases if c.id == "tiny-llama/full/base")
    from dataclasses import replace

    assert replace(moved, tier="main").fingerprint == moved.fingerprint  # the tier is where it runs, not what
    assert moved.to_dict()["tier"] == "extended"


@pytest.mark.parametrize("value", ["extnded", 1, "", None])
def test_a_malformed_tier_names_the_file_and_the_field(tmp_path, value):
    d = write_cases(tmp_path / "cases", f"matrix:\n  - {{models: [tiny-llama], methods: [lora], tier: {json.dumps(value)}}}\n")
    with pytest.raises(CaseError) as err:
        load_cases(d, "regression", SUPPORT)
    assert "matrix.yaml" in str(err.value) and "matrix[0].tier" in str(err.value) and "unknown tier" in str(err.value)


@pytest.mark.parametrize("extended, markexpr, asked", [
    (False, None, set()), (True, None, {"extended"}), (False, "qlora", set()), (False, "extended", {"extended"}),
    (False, "extended and qlora", {"extended"}), (False, "not extended", {"extended"}), (True, "qlora", {"extended"}),
])
def test_which_runs_ask_for_the_tier(extended, markexpr, asked):
    assert selection.tiers_asked(extended, markexpr) == asked


def test_what_is_left_out_and_its_line(cases):
    left = selection.left_out(cases, set())
    assert set(left["extended"]) == EXTENDED and not selection.left_out(cases, {"extended"})
    assert selection.left_out_line(left) == "4 cases of the extended tier left out: --extended runs them"
    assert selection.left_out_line({}) is None


def test_the_manifest_keeps_what_no_session_ran():
    first = left_out_entry(None, {"extended": ["a", "b"]}, planned=["m"])
    assert first == {"extended": ["a", "b"]}
    # a later session into the run with --extended ran them: the tier is no longer left out
    assert left_out_entry(first, {}, planned=["m", "a", "b"]) == {}
    assert left_out_entry(first, {}, planned=["m", "a"]) == {"extended": ["b"]}


@pytest.mark.slow
def test_a_session_writes_the_field_and_the_run_reads_it(tmp_path):
    from suite.run.session import RunSession

    session = RunSession(results_root=tmp_path, run_id="r", profile="cpu", planned=["m"],
                         left_out={"extended": ["a", "b"]})
    session.start()
    session.finish()
    run = runs.load(tmp_path / "r")
    assert run.manifest["left_out"] == {"extended": ["a", "b"]} and run.left_out == {"a": "extended", "b": "extended"}


TEST_FILE = """
def test_case(ft_case):  # parametrized by the plugin; asks for no run, so nothing trains
    pass
"""


def _ran(pytester, cases_dir, *args):
    pytester.makepyfile(test_m=TEST_FILE)
    result = pytester.runpytest("-p", "suite.plugin.cases", "-p", "no:cacheprovider", "--cases-dir", str(cases_dir),
                                "--results-dir", str(pytester.path / "results"), *args)
    ids = {r.nodeid.split("[", 1)[1].rstrip("]") for r in result.reprec.getreports("pytest_runtest_logreport")
           if r.when == "call" and r.passed}
    return result, ids


@pytest.mark.slow
def test_the_plugin_deselects_the_tier_unless_asked(pytester: pytest.Pytester, tmp_path):
    d = write_cases(tmp_path / "cases", MATRIX)
    result, ids = _ran(pytester, d)
    assert ids == {"tiny-llama/lora/base"} and result.parseoutcomes()["deselected"] == 4
    result.stdout.fnmatch_lines(["*4 cases of the extended tier left out: --extended runs them*"])
    result, ids = _ran(pytester, d, "--extended")
    assert ids == EXTENDED | {"tiny-llama/lora/base"} and "left out" not in result.stdout.str()
    result, ids = _ran(pytester, d, "-m", "qlora")  # the count is of what -m chose
    assert not ids
    result.stdout.fnmatch_lines(["*2 cases of the extended tier left out*"])
    assert _ran(pytester, d, "-m", "extended and qlora")[1] == {"tiny-llama/qlora/base", "tiny-qwen2/qlora/base"}


TESTS_FILE = """
import pytest

def test_main():
    pass

@pytest.mark.extended
def test_slow_member():
    pass
"""


@pytest.mark.slow
def test_the_suites_own_tests_in_the_tier_are_left_out_and_counted_apart(pytester: pytest.Pytester, tmp_path):
    """A test of the suite's marked `extended` (not a case) is left out the same way, counted as a test."""
    pytester.makepyfile(test_t=TESTS_FILE)
    args = ("-p", "suite.plugin.cases", "-p", "no:cacheprovider", "--cases-dir", str(write_cases(tmp_path / "c", MATRIX)),
            "--results-dir", str(pytester.path / "results"))
    result = pytester.runpytest(*args)
    result.assert_outcomes(passed=1, deselected=1)
    result.stdout.fnmatch_lines(["*1 test of the extended tier left out: --extended runs them*"])
    pytester.runpytest(*args, "--extended").assert_outcomes(passed=2)


@pytest.mark.slow
def test_a_comparison_says_the_tier_was_left_out_neither_lost_nor_hidden(tmp_path):
    fixtures = TESTS / "fixtures" / "runs"
    base, cand = tmp_path / "verdicts-base", tmp_path / "verdicts-cand"
    shutil.copytree(fixtures / "verdicts-base", base)
    shutil.copytree(fixtures / "verdicts-cand", cand)

    def only_in_baseline():
        df = compare.compare(runs.load(base), [runs.load(cand)])
        return df[(df.case_id == "crafted/only-in-baseline") & (df.metric == compare.STATUS)].iloc[0]

    before = only_in_baseline()
    assert before.verdict == compare.NOT_COMPARABLE and "tier" not in before.note
    manifest = json.loads((cand / "manifest.json").read_text())
    manifest["left_out"] = {"extended": ["crafted/only-in-baseline"]}
    (cand / "manifest.json").write_text(json.dumps(manifest))
    after = only_in_baseline()
    assert after.verdict == compare.NOT_COMPARABLE  # not lost (not planned), not gated, not hidden
    assert after.note == "not in the candidate run: the candidate run left the extended tier out (--extended runs it)"


def test_the_in_process_selection_leaves_the_tier_out_as_the_plugin_does(cases):
    """suite/matrix/selection.py's choose answers as pytest collects (upgrade-check, bisect, canary ask it first)."""
    known = {m for c in cases for m in c.markers}
    assert {c.id for c in selection.choose(cases, selection.Selection("tiny"), known)} == {"tiny-llama/lora/base"}
    assert {c.id for c in selection.choose(cases, selection.Selection("tiny", extended=True), known)} == \
        EXTENDED | {"tiny-llama/lora/base"}
    assert {c.id for c in selection.choose(cases, selection.Selection("extended and full"), known)} == \
        {"tiny-llama/full/base", "tiny-qwen2/full/base"}
    with pytest.raises(selection.SelectionError, match="4 cases of the extended tier left out: --extended runs them"):
        selection.choose(cases, selection.Selection("full or qlora"), known)
    assert selection.Selection.from_args(["-m", "tiny", "--extended"]).extended
