"""Known faults inside the library's modeling code and the collator's padding, for the relations of issue 36
(suite/invariants/moe.py, padding.py): wrappers that suite/train/inject.py's SEAMS and trainer faults install
under FTSUITE_INJECT only (or an invariant test, for the block it measures); nothing on the training path calls
these."""
from __future__ import annotations

from typing import Callable


def mask_without_padding(original: Callable) -> Callable:
    def create_causal_mask(*args, **kwargs):
        kwargs["attention_mask"] = None
        return original(*args, **kwargs)

    return create_causal_mask


def labelling_padding(collator: Callable) -> Callable:
    def collate(examples):
        batch = collator(examples)
        if "attention_mask" in batch:
            padded = batch["attention_mask"] == 0
            batch["labels"] = batch["labels"].masked_scatter(padded, batch["input_ids"][padded])
        return batch

    return collate


def balance_on_probabilities(original: Callable) -> Callable:
    def balance(gate_logits, *args, **kwargs):
        import torch

        if isinstance(gate_logits, tuple):
            gate_logits = tuple(torch.softmax(g, dim=-1) for g in gate_logits)
        return original(gate_logits, *args, **kwargs)

    return balance


def balance_top_one(original: Callable) -> Callable:
    def balance(gate_logits, num_experts=None, top_k=2, attention_mask=None):
        return original(gate_logits, num_experts, 1, attention_mask)

    return balance


def router_returns_probabilities(original: Callable) -> Callable:
    def forward(self, hidden_states):
        import torch

        logits, scores, indices = original(self, hidden_states)
        return torch.softmax(logits.float(), dim=-1).to(logits.dtype), scores, indices

    return forward
