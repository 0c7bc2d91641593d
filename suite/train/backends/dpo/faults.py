"""DPO's known faults (suite/train/inject.py installs them under FTSUITE_INJECT only), crafted silent changes of
the kind releases shipped, each aimed at one by-definition relation (relations.py):
`dpo_beta_twice` (the sigmoid loss takes beta x beta x the margin: beta applied twice; the rewards keep one beta)
breaks `dpo_loss_by_definition`; `dpo_prompt_token` (the completion mask starts one token early: the sequence
log-probabilities sum the prompt's last token) breaks `dpo_logps_by_definition`; `dpo_rewards_unscaled` (the
logged rewards are the raw log-ratios, beta dropped) breaks `dpo_rewards_by_definition`;
`dpo_label_smoothing_ignored` (the loss reads label smoothing 0 whatever the config says) breaks
`dpo_loss_by_definition` on a case with a loss type that takes it (robust, aot); `dpo_loss_weights_swapped` (the
loss combines its loss types with the weights in reverse order) breaks `dpo_loss_by_definition` on RPO
(sigmoid + sft with unequal weights); `dpo_precomputed_ref_misaligned` (the precomputed reference
log-probabilities a batch carries are the next row's, as when a dataset is reordered after the columns were
added) breaks `dpo_logps_by_definition` on a case with precompute_ref_log_probs."""
from __future__ import annotations

from typing import Any

from suite.train.backends.base import DeclaredFaults


class _BetaTwice:
    """torch.nn.functional as trl's DPO module sees it, but logsigmoid's argument multiplied by beta again."""

    def __init__(self, functional: Any, beta: float) -> None:
        self.functional, self.beta = functional, beta

    def __getattr__(self, name: str) -> Any:
        return getattr(self.functional, name)

    def logsigmoid(self, x: Any) -> Any:
        return self.functional.logsigmoid(x * self.beta)


def _prompt_token(collate: Any) -> Any:
    def collate_one_early(examples: list) -> Any:
        out = collate(examples)
        mask = out["completion_mask"]
        first = mask.int().argmax(1)  # each row's first completion token
        for i, j in enumerate(first.tolist()):
            if j > 0 and bool(mask[i, j]):
                mask[i, j - 1] = 1
        return out

    return collate_one_early


def dpo_faults(trainer: Any, faults: dict[str, float]) -> None:
    if "dpo_beta_twice" in faults:
        from trl.trainer import dpo_trainer

        dpo_trainer.F = _BetaTwice(dpo_trainer.F, trainer.beta)
    if "dpo_prompt_token" in faults:
        trainer.data_collator = _prompt_token(trainer.data_collator)
    if "dpo_rewards_unscaled" in faults:
        computing = trainer._compute_loss

        def unscaled(model: Any, inputs: Any, return_outputs: bool = False) -> Any:
            out = computing(model, inputs, return_outputs)
            metrics = trainer._metrics["train" if trainer.model.training else "eval"]
            for key in ("rewards/chosen", "rewards/rejected", "rewards/margins"):
                metrics[key][-1] /= trainer.beta
            return out

        trainer._compute_loss = unscaled
    if "dpo_label_smoothing_ignored" in faults:
        trainer.label_smoothing = 0.0  # what the loss reads; the config keeps the declared value
    if "dpo_loss_weights_swapped" in faults:
        trainer.loss_weights = list(reversed(trainer.loss_weights))  # what the loss reads; the config keeps its own
    if "dpo_precomputed_ref_misaligned" in faults:
        trainer._compute_loss = _misaligned(trainer._compute_loss)


def _misaligned(computing: Any) -> Any:
    """The precomputed reference columns rolled by one row, in the batch itself (the recorder reads them after)."""
    def with_next_rows(model: Any, inputs: Any, return_outputs: bool = False) -> Any:
        for key in ("ref_chosen_logps", "ref_rejected_logps"):
            if key in inputs:
                inputs[key] = inputs[key].roll(1, 0)
        return computing(model, inputs, return_outputs)

    return with_next_rows


DPO_FAULTS = DeclaredFaults(("dpo_beta_twice", "dpo_prompt_token", "dpo_rewards_unscaled",
                             "dpo_label_smoothing_ignored", "dpo_loss_weights_swapped",
                             "dpo_precomputed_ref_misaligned"), dpo_faults)
