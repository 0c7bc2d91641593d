"""The preference trainers' known fault (suite/train/inject.py installs it under FTSUITE_INJECT only):
`reference`, the base weights the reference model computes with shifted before training (a trained or
shared reference), which `reference_untouched` and DPO's ln 2 / KTO's start must see."""
from __future__ import annotations

from typing import Any

from suite.train.backends.base import DeclaredFaults


def shift_reference(trainer: Any, faults: dict[str, float]) -> None:
    import torch

    model = trainer.model
    with torch.no_grad():  # what the reference computes with: the shared base, or trl's copy
        ref = getattr(trainer, "ref_model", None)
        (ref if ref is not None else model).get_input_embeddings().weight.add_(0.05)


REFERENCE = DeclaredFaults(("reference",), shift_reference)
