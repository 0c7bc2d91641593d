"""Resuming from a checkpoint continues on the trajectory of an uninterrupted run."""
from __future__ import annotations

import pytest

from suite.invariants import runs

pytestmark = [pytest.mark.slow, pytest.mark.invariant, pytest.mark.tiny, pytest.mark.llama]
METHODS = [pytest.param("full", marks=pytest.mark.full),
           pytest.param("lora", marks=[pytest.mark.lora, pytest.mark.adapter])]


@pytest.mark.parametrize("method", METHODS)
def test_resume_matches_straight_run(method, tmp_path, invariant):
    invariant.holds(runs.measure_resume(method, tmp_path))


@pytest.mark.lora
@pytest.mark.adapter
def test_can_fail_without_optimizer_state(tmp_path, invariant):
    verdicts = runs.measure_resume("lora", tmp_path, tamper=runs.drop_optimizer_state)
    invariant.breaks(verdicts, "resume.weights")
    invariant.breaks(verdicts, "resume.loss")
