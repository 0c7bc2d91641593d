"""--shard I/N: disjoint slices that together hold every case; unit tests on slice 1; bad specs refused."""
from __future__ import annotations

import pytest

from suite.cases import load_cases
from suite.plugin.shard import parse_shard, shard_of

pytest_plugins = ["pytester"]

IDS = [f"m{k}/lora/base" for k in range(40)]
TEST_FILE = f"""
import pytest

@pytest.mark.case
@pytest.mark.parametrize("cid", {IDS!r}, ids={IDS!r})
def test_case(cid):
    pass

def test_unit():
    pass
"""


def passed_ids(pytester: pytest.Pytester, *args: str) -> list[str]:
    result = pytester.runpytest("-p", "suite.plugin.shard", *args)
    assert result.ret == 0, result.stdout.str()
    return [r.nodeid.split("::", 1)[1] for r in result.reprec.getreports("pytest_runtest_logreport")
            if r.when == "call" and r.passed]


@pytest.mark.slow
def test_slices_are_disjoint_cover_everything_and_unit_tests_run_once(pytester: pytest.Pytester):
    pytester.makepyfile(test_m=TEST_FILE)
    everything = set(passed_ids(pytester))
    slices = [set(passed_ids(pytester, "--shard", f"{i}/3")) for i in (1, 2, 3)]
    assert set.union(*slices) == everything and sum(map(len, slices)) == len(everything)
    assert ["test_unit" in s for s in slices] == [True, False, False]
    assert all(len(s) >= 5 for s in slices)  # 40 cases in 3: no slice is (nearly) empty
    # an id's slice does not depend on which other cases were selected
    assert set(passed_ids(pytester, "--shard", "2/3", "-k", "m1 or m2 or m3")) <= slices[1]


@pytest.mark.parametrize("spec", ["0/3", "4/3", "1/0", "a/b", "3", "", "1/2/3", "-1/2"])
def test_bad_shard_specs_are_usage_errors(pytester: pytest.Pytester, spec: str):
    pytester.makepyfile(test_m=TEST_FILE)
    result = pytester.runpytest("-p", "suite.plugin.shard", f"--shard={spec}")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines([f"*--shard takes I/N with 1 <= I <= N*got {spec!r}*"])


def test_parse_and_assignment_are_stable():
    assert parse_shard("2/4") == (2, 4) and parse_shard(" 1 / 1 ") == (1, 1)
    # pinned: a change of the hash would move every case to another runner and break its history
    ids = ("tiny-llama/lora/base", "llama2-7b/qlora/gradient_checkpointing", "tiny-qwen2/full/base",
           "mistral-7b/unsloth/packing")
    assert [shard_of(i, 4) for i in ids] == [1, 1, 3, 1]
    assert all(shard_of(i, 1) == 1 for i in IDS)


def test_the_real_matrix_splits_into_disjoint_complete_slices():
    ids = [c.id for c in load_cases("cases")]
    for n in (2, 3, 5):
        slices = [{i for i in ids if shard_of(i, n) == k} for k in range(1, n + 1)]
        assert set.union(*slices) == set(ids) and sum(map(len, slices)) == len(ids)
