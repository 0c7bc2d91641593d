"""KTO's known faults (suite/train/inject.py installs them under FTSUITE_INJECT only), crafted silent changes
of the kind releases shipped, each aimed at one by-definition relation (relations.py): `kto_kl_matched` (the KL
estimate is computed on the batch's own (prompt, completion) pairs, not on mismatched ones) breaks
`kto_kl_by_definition`; `kto_undesirable_ignored` (the undesirable rows' weight is 1 whatever the config says)
breaks `kto_loss_by_definition` on a case that sets `undesirable_weight`; `kto_kl_unclamped` (the estimate is
not clamped at 0) breaks `kto_kl_by_definition`."""
from __future__ import annotations

from typing import Any

from suite.train.backends.base import DeclaredFaults


def kto_faults(trainer: Any, faults: dict[str, float]) -> None:
    if "kto_kl_matched" in faults:
        estimating = trainer._compute_kl_logps

        def matched(model: Any, batch: dict) -> Any:
            own = {**batch, "KL_input_ids": batch["input_ids"], "KL_attention_mask": batch["attention_mask"],
                   "KL_completion_mask": batch["completion_mask"]}
            return estimating(model, own)

        trainer._compute_kl_logps = matched
    if "kto_undesirable_ignored" in faults:
        trainer.undesirable_weight = 1.0
    if "kto_kl_unclamped" in faults:
        _unclamped_kl(trainer)


def _unclamped_kl(trainer: Any) -> None:
    """trl takes the KL estimate as gather_for_metrics(kl).mean().clamp(min=0), its first gather in _compute_loss:
    that gather's result ignores the clamp (the estimate may go below 0, as a release without the clamp would)."""
    import torch

    class Unclamped(torch.Tensor):
        def clamp(self, *args: Any, **kwargs: Any) -> Any:
            return self.as_subclass(torch.Tensor)

    gather, computing, first = trainer.accelerator.gather_for_metrics, trainer._compute_loss, []

    def gather_first(value: Any, *args: Any, **kwargs: Any) -> Any:
        out = gather(value, *args, **kwargs)
        if not first:
            first.append(True)
            return out.as_subclass(Unclamped)
        return out

    def compute(*args: Any, **kwargs: Any) -> Any:
        first.clear()
        trainer.accelerator.gather_for_metrics = gather_first
        try:
            return computing(*args, **kwargs)
        finally:
            trainer.accelerator.gather_for_metrics = gather

    trainer._compute_loss = compute


KTO_FAULTS = DeclaredFaults(("kto_kl_matched", "kto_undesirable_ignored", "kto_kl_unclamped"), kto_faults)
