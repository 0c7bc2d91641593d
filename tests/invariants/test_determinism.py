"""Two runs of the same tiny case give bit-identical loss curves on a CPU (golden curves rely on it)."""
from __future__ import annotations

import pytest

from suite.invariants.relations import compare
from suite import cases as load
from suite.run.session import RunSession

pytestmark = [pytest.mark.slow, pytest.mark.invariant, pytest.mark.tiny, pytest.mark.llama, pytest.mark.lora,
              pytest.mark.adapter]
CASE_ID = "tiny-llama/lora/base"


def test_two_runs_give_identical_curves(request, tmp_path, invariant):
    case = next(c for c in load.load_cases(request.config.getoption("cases_dir")) if c.id == CASE_ID)
    curves = []
    for run_id in ("first", "second"):
        session = RunSession(results_root=tmp_path, run_id=run_id, keep_checkpoints="never")
        result = session.run_case(case)
        session.finish()
        assert result.status == "passed", result.failure_messages
        curves.append([p["loss"] for p in result.record.loss_curve])
    invariant.holds(compare("determinism.curve", curves[0], curves[1],
                            f"{CASE_ID}, {len(curves[0])} logged losses, two child processes"))


def test_can_fail_when_the_seed_is_not_honoured(tmp_path, invariant):
    from suite.invariants import runs

    invariant.breaks(runs.measure_determinism(tmp_path, second_seed=1), "determinism.curve")
