"""Packing on each family of 2026 (suite/train/chat.py's STYLES): trl's packed (padding-free) sequences do not
see each other in the family's attention (its sliding windows, sinks, linear-attention layers), each example's
loss packed is its loss alone, a packed run trains like an unpacked one, and no sequence start is a target. The
generic can-fail tests are tests/invariants/test_packing.py's and test_packed_starts.py's; the aimed one here
breaks one family's relation and no other's."""
from __future__ import annotations

import pytest

from suite.invariants import family_faults, features, labels
from suite.invariants.relations import RELATIONS
from suite.train.chat import STYLES

pytestmark = [pytest.mark.invariant, pytest.mark.tiny, pytest.mark.adapter, pytest.mark.lora, pytest.mark.packing,
              pytest.mark.slow]



def _known_broken(name: str) -> pytest.MarkDecorator:
    known = RELATIONS[name].known_broken
    return pytest.mark.xfail(strict=True, reason=f"known broken upstream ([{name}], measured "
                                                 f"{known.where_measured()}): {known.why}")


def _families(broken: str | None = None, main: tuple[str, ...] | None = None) -> list:
    """Each family with its marker; where the family's own relation `<arch>.<broken>` is declared known broken
    (suite/invariants/relations.py), its member is a strict xfail saying why. With `main`, the members of the
    other families are in the extended tier (`--extended`; docs/cases.md: CI time)."""
    params = []
    for arch in sorted(STYLES):
        marks = [getattr(pytest.mark, arch)]
        if main is not None and arch not in main:
            marks.append(pytest.mark.extended)
        own = f"{arch}.{broken}"
        if broken and own in RELATIONS and RELATIONS[own].known_broken is not None:
            marks.append(_known_broken(own))
        params.append(pytest.param(arch, marks=marks))
    return params


@pytest.mark.parametrize("arch", _families("packing.no_cross_attention"))
def test_packed_examples_are_isolated_on_each_family(arch, tmp_path, invariant):
    invariant.holds(features.measure_packing_forward(tmp_path, arch=arch))


# two runs per family: in CI the known-broken family's (its finding still stands) and Llama 3's, the others in the
# extended tier (about 40 s of CI alone for the seven)
@pytest.mark.parametrize("arch", _families("packing.run_loss", main=("gpt_oss", "llama3")))
def test_packed_run_equals_unpacked_run_on_each_family(arch, tmp_path, invariant):
    invariant.holds(features.measure_packing_runs(tmp_path, "lora", steps=2, arch=arch))


@pytest.mark.parametrize("arch", _families())
def test_sequence_starts_are_masked_on_each_family(arch, tmp_path, invariant):
    invariant.holds(labels.measure_packed_starts("packing", tmp_path, arch=arch))


# the aimed fault in CI on the two families with sliding windows; "no other family" in full in the extended tier
@pytest.mark.parametrize("arch", _families("packing.no_cross_attention", main=("gemma3", "gemma4")))
def test_a_gemma3_window_across_packed_sequences_fails_only_gemma3(arch, tmp_path, invariant):
    """Can fail, and aimed: Gemma 3's sliding-window mask built without the packed sequences' position_ids lets
    its sliding layer attend across a packed boundary; the other families' masks are their own."""
    with family_faults.gemma3_window_across_packed_sequences():
        verdicts = features.measure_packing_forward(tmp_path, arch=arch)
    if arch == "gemma3":
        invariant.breaks(verdicts, "packing.no_cross_attention")
    else:
        invariant.holds(verdicts)


@pytest.mark.qwen3_5
@_known_broken("qwen3_5.position_ids_alone.packing.no_cross_attention")
def test_qwen3_5_position_ids_alone_do_not_separate_packed_examples(tmp_path, invariant):
    """trl's packed batches carry cu_seq_lens, which transformers' torch fallbacks of Qwen3.5's gated-DeltaNet
    layers refuse (the test above: not applicable on a CPU); the same batches with position_ids alone pass that
    guard, and the linear-attention state runs on across the packed examples."""
    invariant.holds(features.measure_packing_forward(tmp_path, arch="qwen3_5",
                                                     collator_wrapper=features.position_ids_alone))
