"""NEFTune noise is on while training and off once train() returns."""
from __future__ import annotations

import pytest

from suite.invariants import features

pytestmark = [pytest.mark.slow, pytest.mark.invariant, pytest.mark.tiny, pytest.mark.llama, pytest.mark.neftune,
              pytest.mark.lora, pytest.mark.adapter]


def test_noise_during_training_only(tmp_path, invariant):
    invariant.holds(features.measure_neftune(tmp_path))


def test_can_fail_when_noise_is_never_added(tmp_path, invariant):
    invariant.breaks(features.measure_neftune(tmp_path, drop_neftune=True), "neftune.on_in_training")


def test_can_fail_when_the_hook_is_left_registered(tmp_path, invariant):
    verdicts = features.measure_neftune(tmp_path, after_train=features.leave_neftune_on)
    invariant.breaks(verdicts, "neftune.off_after_train")
