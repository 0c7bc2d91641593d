"""A causal LM's per-example loss is the same alone and beside longer examples, padded by the trainer's own
collator (right) and padded left: SFTTrainer and the plain Trainer, over the tiny architectures the cases use."""
from __future__ import annotations

import pytest

from suite.invariants import padding
from suite.invariants.harness import ARCH_MODELS
from suite.train import inject

pytestmark = [pytest.mark.slow, pytest.mark.invariant, pytest.mark.tiny, pytest.mark.lora, pytest.mark.adapter]
SFT, PLAIN = padding.CAUSAL_LM_TRAINERS


@pytest.mark.parametrize("arch", sorted(ARCH_MODELS))
def test_sft_per_example_loss_ignores_padding_and_the_batch(arch, tmp_path, invariant):
    invariant.holds(padding.measure_padding(arch, SFT, tmp_path))


@pytest.mark.parametrize("arch", ["llama", "qwen2", "gemma3"])
def test_plain_trainer_per_example_loss_ignores_padding_and_the_batch(arch, tmp_path, invariant):
    invariant.holds(padding.measure_padding(arch, PLAIN, tmp_path))


@pytest.mark.llama
def test_can_fail_when_the_forward_ignores_the_padding_mask(tmp_path, invariant):
    """Llama's forward builds a pure causal mask (inject.py's padding_mask_ignored): left-padded rows attend to their
    pads and only the left relation breaks (right padding sits after every real token, where causality hides it)."""
    verdicts = padding.measure_padding("llama", SFT, tmp_path, faults={"padding_mask_ignored": 1.0})
    invariant.breaks(verdicts, "causal_lm.padding.left")
    assert all(v.passed for v in verdicts if v.relation.name != "causal_lm.padding.left")


@pytest.mark.llama
@pytest.mark.parametrize("trainer", [SFT, PLAIN])
def test_can_fail_when_the_collator_labels_its_padding(trainer, tmp_path, invariant):
    """The collator labels padding with the pad id (inject.py's pad_labelled): the collated relation alone breaks."""
    verdicts = padding.measure_padding("llama", trainer, tmp_path,
                                       tamper=lambda trainer: inject.install(trainer, {"pad_labelled": 1.0}))
    invariant.breaks(verdicts, "causal_lm.padding.collated")
    assert all(v.passed for v in verdicts if v.relation.name != "causal_lm.padding.collated")
