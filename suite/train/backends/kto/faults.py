"""KTO's known faults (suite/train/inject.py installs them under FTSUITE_INJECT only), crafted silent changes
of the kind releases shipped, each aimed at one by-definition relation (relations.py): `kto_kl_matched` (the KL
estimate is computed on the batch's own (prompt, completion) pairs, not on mismatched ones) breaks
`kto_kl_by_definition`; `kto_undesirable_ignored` (the undesirable rows' weight is 1 whatever the config says)
breaks `kto_loss_by_definition` on a case that sets `undesirable_weight`."""
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


KTO_FAULTS = DeclaredFaults(("kto_kl_matched", "kto_undesirable_ignored"), kto_faults)
