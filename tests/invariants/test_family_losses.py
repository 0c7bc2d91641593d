"""What the loss is computed on, on each family of 2026 (suite/train/chat.py's STYLES): the logged loss is the
hand-computed loss of the batch (a mixture of experts' adds its router's loss, counted once), and with the loss
on the assistant turns (each family's own chat template, trl's SFTTrainer preparing and collating the rows and
computing the loss and its gradient) the prompt carries no label, no gradient and no loss. The generic can-fail
tests of each relation are tests/invariants/test_logged_loss.py's, test_moe.py's and test_prompt_mask.py's; the
aimed one here breaks one family's relation and no other's. The logged loss has none aimed at a family: trl (1.16)
computes every family's training loss in its own fused LM head (trl/trainer/utils.py: add_fused_lm_head), a MoE's
router loss with Mixtral's function, so no family's own code lies between the backbone both sides share and the
logged loss (a fault in Qwen3-MoE's own load_balancing_loss_func leaves its logged loss as it was: measured)."""
from __future__ import annotations

import pytest

from suite.invariants import family_faults, labels, moe
from suite.train import compat
from suite.train.chat import STYLES

pytestmark = [pytest.mark.invariant, pytest.mark.tiny, pytest.mark.adapter, pytest.mark.lora, pytest.mark.slow]

# each family as a parameter carrying its architecture's marker (-m gemma3 selects its members)
FAMILIES = [pytest.param(arch, marks=getattr(pytest.mark, arch)) for arch in sorted(STYLES)]
# the aimed fault's members in CI: its target and a family of another template style; the rest ("no other family"
# in full) in the extended tier (`--extended`; docs/cases.md: CI time)
AIMED = [pytest.param(arch, marks=[getattr(pytest.mark, arch)] + ([] if arch in ("phi4_mini", "qwen3") else
                                                                   [pytest.mark.extended])) for arch in sorted(STYLES)]


def _logged_loss(arch: str, out):
    """The logged loss's relation for the family: cross-entropy alone, or plus its router's loss."""
    if arch in moe.MOE_ARCHS:
        return moe.measure_aux_counted_once("lora", out, arch=arch)
    loss_type = compat.sft_loss_types()[0]  # nll where trl has the option, else None (its only loss)
    return labels.measure_logged_loss("lora", loss_type, out, arch=arch)


@pytest.mark.parametrize("arch", FAMILIES)
def test_logged_loss_is_hand_computed_on_each_family(arch, tmp_path, invariant):
    invariant.holds(_logged_loss(arch, tmp_path))


@pytest.mark.assistant_only
@pytest.mark.messages
@pytest.mark.parametrize("arch", FAMILIES)
def test_assistant_turns_alone_carry_the_loss_on_each_family(arch, tmp_path, invariant):
    invariant.holds(labels.measure_prompt_mask("messages", "assistant_only", tmp_path, arch=arch))


@pytest.mark.assistant_only
@pytest.mark.messages
@pytest.mark.parametrize("arch", AIMED)
def test_a_phi_generation_block_over_its_role_fails_only_phi4_mini(arch, tmp_path, invariant):
    """Can fail, and aimed: Phi's template opens its generation block before the assistant marker, so
    assistant-only training learns the role header; the families of the other styles train as they should."""
    verdicts = labels.measure_prompt_mask("messages", "assistant_only", tmp_path, arch=arch,
                                          template=family_faults.phi_generation_holds_the_role)
    if arch == "phi4_mini":
        invariant.breaks(verdicts, "prompt_mask.labels")
    else:
        invariant.holds(verdicts)
