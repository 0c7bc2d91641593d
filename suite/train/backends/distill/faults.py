"""Distillation's known faults (suite/train/inject.py installs them under FTSUITE_INJECT only), each aimed at one
check: `distill_beta_flipped` (trl's loss reads beta as 1 - beta: forward and reverse KL swapped; a no-op at 0.5,
where the JSD is symmetric) breaks `distill_loss_by_definition` on a beta 0 or 1 case;
`distill_gradient_reversed` (the loss's value as trl computes it, its gradient reversed: the update moves the
student away from the teacher) breaks `distill_divergence_falls` and leaves the logged loss's definition intact."""
from __future__ import annotations

from typing import Any

from suite.train.backends.base import DeclaredFaults


def distill_faults(trainer: Any, faults: dict[str, float]) -> None:
    if "distill_beta_flipped" in faults:
        trainer.beta = 1.0 - trainer.beta
    if "distill_gradient_reversed" in faults:
        computing = trainer._compute_loss

        def reversed_gradient(*args: Any, **kwargs: Any) -> Any:
            loss, *rest = computing(*args, **kwargs)
            return (2 * loss.detach() - loss, *rest)  # the same value, the opposite gradient

        trainer._compute_loss = reversed_gradient


DISTILL_FAULTS = DeclaredFaults(("distill_beta_flipped", "distill_gradient_reversed"), distill_faults)
