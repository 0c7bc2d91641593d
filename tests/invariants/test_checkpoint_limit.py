"""save_total_limit keeps the newest checkpoints (and the best one with load_best_model_at_end)."""
from __future__ import annotations

import pytest

from suite.invariants import checkpoint_limit as cl

pytestmark = [pytest.mark.slow, pytest.mark.invariant, pytest.mark.tiny, pytest.mark.llama, pytest.mark.options,
              pytest.mark.lora, pytest.mark.adapter]


@pytest.mark.parametrize("limit", [1, 2])
def test_newest_checkpoints_kept(limit, tmp_path, invariant):
    invariant.holds(cl.measure_save_total_limit(tmp_path, limit))


def test_best_checkpoint_kept_besides_the_newest(tmp_path, invariant):
    invariant.holds(cl.measure_save_total_limit(tmp_path, 2, keep_best=True))


def test_can_fail_when_the_limit_is_ignored(tmp_path, invariant):
    invariant.breaks(cl.measure_save_total_limit(tmp_path, 2, fault=cl.limit_ignored), "save_total_limit.kept")


def test_expected_kept_follows_the_documented_rule():
    """The rule itself, without a run: transformers' own example (limit 5: the 4 newest and the best)."""
    saved = list(range(1, 11))
    assert cl.expected_kept(saved, 5, None) == {6, 7, 8, 9, 10}
    assert cl.expected_kept(saved, 5, 2) == {2, 7, 8, 9, 10}
    assert cl.expected_kept(saved, 5, 8) == {6, 7, 8, 9, 10}
    assert cl.expected_kept(saved, 1, 2) == {2, 10}  # the newest stays too (for resuming)
