"""The logged loss is the token-level cross-entropy of the batch, for every loss_type trl offers."""
from __future__ import annotations

import pytest

from suite.invariants import labels
from suite.train import compat

pytestmark = [pytest.mark.slow, pytest.mark.invariant, pytest.mark.tiny, pytest.mark.llama]
METHODS = [pytest.param("full", marks=pytest.mark.full),
           pytest.param("lora", marks=[pytest.mark.lora, pytest.mark.adapter])]


@pytest.mark.parametrize("loss_type", compat.sft_loss_types())
@pytest.mark.parametrize("method", METHODS)
def test_logged_loss_is_hand_computed_loss(method, loss_type, tmp_path, invariant):
    invariant.holds(labels.measure_logged_loss(method, loss_type, tmp_path))


@pytest.mark.lora
@pytest.mark.adapter
def test_can_fail_with_a_per_sequence_mean(tmp_path, invariant):
    loss_type = compat.sft_loss_types()[0]  # nll where trl has the option, else None (its only loss)
    verdict = labels.measure_logged_loss("lora", loss_type, tmp_path, trainer_cls=labels.per_sequence_mean_trainer())
    invariant.breaks(verdict, "logged_loss")
