"""Cross-entropy computed by hand from logits: the reference the trainer's losses are held to."""
from __future__ import annotations

# The rows and the per-token log-probabilities are the suite's own (suite/train/modeling.py, which each causal-LM
# case's child measures with too): one copy, imported here.
from suite.train.modeling import UNEQUAL_ROWS, per_example_losses, token_logprobs  # noqa: F401

# The hand-computed cross-entropy the relations below hold the trainers' losses to must not come from the
# functions the trainers compute theirs with (issue 36; tests/judge/test_oracles.py scans this module).
_CROSS_ENTROPY = ("transformers.loss.loss_utils.ForCausalLMLoss", "transformers.loss.loss_utils.fixed_cross_entropy",
                  "trl.trainer.utils.selective_log_softmax", "trl.trainer.utils.entropy_from_logits")
FORBIDDEN_ORACLES: dict[str, tuple[str, ...]] = {
    "prompt_mask.loss": _CROSS_ENTROPY,
    "logged_loss": _CROSS_ENTROPY,
    "packing.per_example_loss": _CROSS_ENTROPY,
    "moe.grad_accum.cross_entropy": _CROSS_ENTROPY,
}

def masked_loss(logits, labels, loss_type: str = "nll") -> float:
    """The token-level mean loss over non-masked shifted targets, for the loss types trl documents.

    nll: -log p; dft (Dynamic Fine-Tuning, arXiv 2508.05629): -log p weighted by the detached p.
    """
    logp, mask = token_logprobs(logits, labels)
    if loss_type in ("nll", "chunked_nll"):  # chunked_nll: trl's deprecated alias of nll
        per_token = -logp
    elif loss_type == "dft":
        per_token = -logp * logp.exp()
    else:
        raise NotImplementedError(f"no hand-computed reference for loss_type {loss_type!r}: the installed trl "
                                  f"offers a loss this suite does not know; add its formula to "
                                  f"suite/invariants/losses.py:masked_loss")
    return float(per_token.sum() / mask.sum().clamp(min=1))
