"""A fault in one family's own modeling code fails that family's case and no other family's: Gemma 3's
sliding-window layers given the plain causal mask (FTSUITE_INJECT=window_ignored, suite/train/inject.py),
as a transformers change that dropped the window would. Each family's case of cases/families.yaml runs
for real, judged against the committed golden curves."""
from __future__ import annotations

import pytest

from suite.cases import load_cases
from suite.judge.baselines import BaselineStore
from suite.paths import ROOT
from suite.run.session import RunSession
from suite.train import inject
from suite.train.chat import STYLES
from tests.helpers import check_outcomes, failed_messages

pytestmark = [pytest.mark.slow, pytest.mark.xdist_group("family-faults")]


@pytest.fixture(scope="module")
def window_ignored(tmp_path_factory) -> dict:
    tmp = tmp_path_factory.mktemp("families")
    # the tiny family cases (the families at full size, cases/large.yaml, share their arch and skip on a CPU)
    # (and each family's extended set, cases/families_extended.yaml: the main tier's one case per family here)
    cases = [c for c in load_cases(ROOT / "cases") if c.model.arch in STYLES and c.model.scale.built and not c.opt_in]
    assert len(cases) == len(STYLES) == 9
    session = RunSession(tmp / "results", "window-ignored", baselines=BaselineStore(ROOT / "results" / "baselines"))
    session.child_env = {inject.ENV: "window_ignored"}
    out = {c.model.arch: session.run_case(c).record for c in cases}
    session.finish()
    return out


def test_the_ignored_window_fails_gemma3_and_no_other_family(window_ignored):
    gemma3 = window_ignored["gemma3"]
    assert gemma3.resolved["injected"] == {"window_ignored": 1.0}
    assert not check_outcomes(gemma3)["golden_curve"], failed_messages(gemma3)
    for arch, record in window_ignored.items():
        if arch != "gemma3":
            assert record.status == "passed", (arch, failed_messages(record))
