"""The architecture-sensitive relations on each family of 2026 (suite/train/chat.py's STYLES: the tiny
families' architectures): a LoRA adapter reloads onto a fresh base to the trained logits and merges into
it without moving them, whatever the family names or fuses its projections. The loss's relations on each family
are in test_family_losses.py, packing's in test_family_packing.py."""
from __future__ import annotations

import pytest

from suite.invariants import saving
from suite.train.chat import STYLES

pytestmark = [pytest.mark.invariant, pytest.mark.tiny, pytest.mark.adapter, pytest.mark.lora, pytest.mark.slow]

# each family as a parameter carrying its architecture's marker (-m gemma3 selects its members)
FAMILIES = [pytest.param(arch, marks=getattr(pytest.mark, arch)) for arch in sorted(STYLES)]
FAMILIES_BY_NAME = sorted(STYLES)


@pytest.mark.parametrize("arch", FAMILIES)
def test_lora_reload_and_merge_on_each_family(arch, tmp_path, invariant):
    invariant.holds(saving.measure_save_load("lora", tmp_path, arch=arch))


# the aimed fault's members in CI: the family that fuses and one that does not; the rest ("no other family" in
# full) in the extended tier (`--extended`; docs/cases.md: CI time)
@pytest.mark.parametrize("arch", [pytest.param(arch, marks=[getattr(pytest.mark, arch)] + (
    [] if arch in ("phi4_mini", "llama3") else [pytest.mark.extended])) for arch in FAMILIES_BY_NAME])
def test_a_fused_projection_merge_fault_fails_only_the_family_that_fuses(arch, tmp_path, invariant):
    """Can fail, and aimed: another adapter merged into the fused projections (qkv_proj, gate_up_proj) breaks
    the merge of Phi-4-mini, the family that fuses them, and no other family's."""
    verdicts = saving.measure_save_load("lora", tmp_path, arch=arch, before_merge=saving.double_fused_lora_b)
    if arch == "phi4_mini":
        invariant.breaks(verdicts, "save_load.merge")
    else:
        invariant.holds(verdicts)
