"""Completion-only and assistant-only loss: prompts carry no label, no gradient and no loss."""
from __future__ import annotations

import pytest

from suite.invariants import labels

pytestmark = [pytest.mark.slow, pytest.mark.invariant, pytest.mark.tiny, pytest.mark.llama, pytest.mark.lora,
              pytest.mark.adapter]
SETUPS = [
    pytest.param("prompt_completion", "auto", marks=[pytest.mark.prompt_completion, pytest.mark.completion_only]),
    pytest.param("conversational_pc", "auto", marks=[pytest.mark.conversational_pc, pytest.mark.completion_only]),
    pytest.param("conversational_pc", "assistant_only",
                 marks=[pytest.mark.conversational_pc, pytest.mark.assistant_only]),
    pytest.param("messages", "assistant_only", marks=[pytest.mark.messages, pytest.mark.assistant_only]),
]


@pytest.mark.parametrize("dataset,loss", SETUPS)
def test_prompt_is_masked(dataset, loss, tmp_path, invariant):
    invariant.holds(labels.measure_prompt_mask(dataset, loss, tmp_path))


@pytest.mark.prompt_completion
@pytest.mark.completion_only
def test_can_fail_with_a_collator_that_leaves_prompt_labels(tmp_path, invariant):
    verdicts = labels.measure_prompt_mask("prompt_completion", "auto", tmp_path,
                                          collator_wrapper=labels.labels_everywhere)
    for name in ("prompt_mask.labels", "prompt_mask.gradient", "prompt_mask.loss"):
        invariant.breaks(verdicts, name)
