"""The faults the can-fail tests of suite/invariants/packing_long.py plant: wrappers of SFTTrainer's
pack_dataset, apart from the relations' module, whose oracle scan (tests/judge/test_oracles.py) holds it to
never referencing the function it judges."""
from __future__ import annotations

import contextlib
import importlib
from typing import Callable, Iterator

from suite.invariants.relations import NotApplicable

# where SFTTrainer looks pack_dataset up (trl 0.20 to 1.16 import it into the module): the faults wrap it there
PACK_SEAM = "trl.trainer.sft_trainer"


@contextlib.contextmanager
def pack_fault(fault: Callable | None) -> Iterator[None]:
    """SFTTrainer's pack_dataset wrapped by `fault` while the trainer is built (it packs in __init__)."""
    if fault is None:
        yield
        return
    module = importlib.import_module(PACK_SEAM)
    original = getattr(module, "pack_dataset", None)
    if original is None:
        raise NotApplicable(f"{PACK_SEAM} has no pack_dataset for the fault to wrap on the installed trl")
    module.pack_dataset = fault(original)
    try:
        yield
    finally:
        module.pack_dataset = original


def two_conversations(pack):
    """bfd's fault: the first two sequences of each packed row made one (a sequence from two conversations)."""
    def packed(dataset, seq_length, strategy="bfd", *args, **kwargs):
        def merge(row):
            lengths = list(row["seq_lengths"])
            return {"seq_lengths": [lengths[0] + lengths[1], *lengths[2:]] if len(lengths) > 1 else lengths}
        out = pack(dataset, seq_length, strategy, *args, **kwargs)
        if "seq_lengths" not in out.column_names:  # trl before 1.x marks sequences by position_ids
            raise NotApplicable(f"the installed trl's packed rows carry no seq_lengths to merge ({out.column_names})")
        return out.map(merge)
    return packed


def overflow_dropped(pack):
    """bfd_split's fault: the overflow truncated as bfd does (the pieces past max_length lost)."""
    def packed(dataset, seq_length, strategy="bfd", *args, **kwargs):
        return pack(dataset, seq_length, "bfd", *args, **kwargs)
    return packed


def boundary_token_dropped(pack):
    """wrapped's fault: the last token of every row dropped (a token lost at each chunk boundary)."""
    def packed(dataset, seq_length, strategy="bfd", *args, **kwargs):
        out = pack(dataset, seq_length, strategy, *args, **kwargs)
        lists = [c for c in out.column_names if c in ("input_ids", "labels", "attention_mask", "completion_mask",
                                                      "assistant_masks")]
        return out.map(lambda row: {c: row[c][:-1] for c in lists})
    return packed
