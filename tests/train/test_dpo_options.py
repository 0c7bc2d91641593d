"""DPO's options (cases/dpo_options.yaml, issue 37) on real tiny runs under a known fault each, judged without
baselines (tests.helpers.fault_runs): RPO's loss weights swapped, AOT's label smoothing ignored, the precomputed
reference log-probabilities misaligned by a row. Each breaks the relation aimed at it (and, where the first loss
moves with it, the start check) and leaves the others holding; the clean runs are the shipped cases themselves,
which every tiny-matrix run judges (tests/test_matrix.py)."""
from __future__ import annotations

import pytest

from tests.helpers import assert_fails_alone, fault_runs

pytestmark = [pytest.mark.slow, pytest.mark.xdist_group("dpo-options")]
# the shipped cases' settings, 8 steps (the relations are judged at steps 1, 4 and 8)
DPO = ("matrix:\n  - {{models: [tiny-llama], trainers: [dpo], methods: [lora], datasets: [preference], "
       "option: '{option}', training: {{max_steps: 8, learning_rate: 0.005, extra: {{{extra}}}}}, "
       "checks: {{loss_window: 2, loss_margin: 0.0}}}}\n")
OTHERS = ("dpo_logps_by_definition", "dpo_loss_by_definition", "dpo_rewards_by_definition", "dpo_starts_at_ln2",
          "reference_untouched")


def _run(tmp_path_factory, option: str, extra: str, fault: str):
    matrix = DPO.format(option=option, extra=extra)
    return fault_runs(tmp_path_factory.mktemp(fault), matrix, (fault,))[fault]


def _message(record, name: str) -> str:
    return next(c["message"] for c in record.checks if c["name"] == name)


def test_rpo_with_its_loss_weights_swapped_fails_the_loss_relation(tmp_path_factory):
    rec = _run(tmp_path_factory, "loss_type:sigmoid+sft,loss_weights:1+0.2",
               "loss_type: [sigmoid, sft], loss_weights: [1.0, 0.2]", "dpo_loss_weights_swapped")
    failing = ("dpo_loss_by_definition", "dpo_starts_at_ln2")  # the first loss is weighted wrong too
    assert_fails_alone(rec, "dpo_loss_weights_swapped", failing, tuple(c for c in OTHERS if c not in failing))
    assert "loss weights swapped" in _message(rec, "dpo_loss_by_definition")


def test_aot_with_label_smoothing_ignored_fails_the_loss_relation_alone(tmp_path_factory):
    """AOT's value at a zero log-ratio is ln 2 whatever the smoothing: only the loss relation can see it."""
    rec = _run(tmp_path_factory, "loss_type:aot,label_smoothing:0.1", "loss_type: [aot], label_smoothing: 0.1",
               "dpo_label_smoothing_ignored")
    assert_fails_alone(rec, "dpo_label_smoothing_ignored", "dpo_loss_by_definition",
                       tuple(c for c in OTHERS if c != "dpo_loss_by_definition"))
    assert "label smoothing ignored" in _message(rec, "dpo_loss_by_definition")


def test_misaligned_precomputed_references_fail_the_logps_relation(tmp_path_factory):
    """The loss is its definition of what it read (the loss and rewards relations hold); what it read is not the
    row's reference, which the suite's own reference forward shows at step 1."""
    rec = _run(tmp_path_factory, "precompute_ref_log_probs:true", "precompute_ref_log_probs: true",
               "dpo_precomputed_ref_misaligned")
    failing = ("dpo_logps_by_definition", "dpo_starts_at_ln2")  # another row's reference moves the first loss
    assert_fails_alone(rec, "dpo_precomputed_ref_misaligned", failing, tuple(c for c in OTHERS if c not in failing))
    assert "misaligned rows" in _message(rec, "dpo_logps_by_definition")
