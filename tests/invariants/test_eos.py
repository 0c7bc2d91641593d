"""Every example ends with its stop token, whose label survives collation; padding is -100."""
from __future__ import annotations

import pytest

from suite.invariants import labels

pytestmark = [pytest.mark.slow, pytest.mark.invariant, pytest.mark.tiny, pytest.mark.llama, pytest.mark.lora,
              pytest.mark.adapter]
SETUPS = [
    pytest.param("text", False, marks=pytest.mark.text),
    pytest.param("text", True, marks=pytest.mark.text, id="text-pad_is_eos"),
    pytest.param("prompt_completion", False, marks=pytest.mark.prompt_completion),
    pytest.param("prompt_completion", True, marks=pytest.mark.prompt_completion, id="prompt_completion-pad_is_eos"),
    pytest.param("messages", False, marks=pytest.mark.messages),
    pytest.param("conversational_pc", False, marks=pytest.mark.conversational_pc),
]


@pytest.mark.parametrize("dataset,pad_is_eos", SETUPS)
def test_eos_is_kept(dataset, pad_is_eos, tmp_path, invariant):
    invariant.holds(labels.measure_eos(dataset, tmp_path, pad_is_eos=pad_is_eos))


@pytest.mark.text
def test_can_fail_when_the_collator_masks_pad_ids_and_pad_is_eos(tmp_path, invariant):
    def wrapper(collator):
        return labels.mask_pad_ids(collator, collator.pad_token_id)

    verdicts = labels.measure_eos("text", tmp_path, pad_is_eos=True, collator_wrapper=wrapper)
    invariant.breaks(verdicts, "eos.label_survives")


@pytest.mark.text
def test_can_fail_when_rows_come_tokenised_without_eos(tmp_path, invariant):
    invariant.breaks(labels.measure_eos("text", tmp_path, pretokenised=True), "eos.last_token")


@pytest.mark.text
def test_can_fail_when_padding_is_labelled(tmp_path, invariant):
    def wrapper(collator):
        return labels.pad_labels_with_pad_id(collator, collator.pad_token_id)

    invariant.breaks(labels.measure_eos("text", tmp_path, collator_wrapper=wrapper), "eos.padding_masked")
