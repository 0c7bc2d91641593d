"""A causal LM's per-example loss does not depend on padding or on the batch around it: an example's loss alone
equals its loss in a batch beside longer examples, padded by the trainer's own collator (right, on SFTTrainer
and the plain Trainer) and padded left (as a tokenizer with padding_side="left" pads: generation batches, and
a collator where the tokenizer pads left).

Here it runs over every causal-LM architecture the cases use, for both trainers, with no reference, and
upgrade-check runs it on every candidate release; each causal-LM case's child measures the same relation on its
own trained model too (suite/train/modeling.py, judged as `padding_invariance` by suite/judge/modeling.py, where a
precision without a measured bound is reported not judged).

The loss is the suite's own: cross-entropy over the shifted targets whose label is not -100
(suite/train/modeling.py), never the trainer's or the model's loss function.
"""
from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any, Callable

from suite.invariants import harness as h
from suite.invariants.losses import UNEQUAL_ROWS, per_example_losses
from suite.invariants.relations import Verdict, compare
from suite.matrix.spec import DEFAULT_TRAINER
from suite.train.backends.plain.backend import BACKEND as PLAIN

# The library functions these relations must not call to compute the loss they compare (issue 36).
FORBIDDEN_ORACLES: dict[str, tuple[str, ...]] = {
    "causal_lm.padding.collated": ("torch.nn.functional.cross_entropy", "transformers.loss.loss_utils.ForCausalLMLoss",
                                   "transformers.loss.loss_utils.fixed_cross_entropy",
                                   "trl.trainer.utils.selective_log_softmax", "trl.trainer.utils.entropy_from_logits"),
    "causal_lm.padding.left": ("torch.nn.functional.cross_entropy", "transformers.loss.loss_utils.ForCausalLMLoss",
                               "transformers.loss.loss_utils.fixed_cross_entropy",
                               "trl.trainer.utils.selective_log_softmax", "trl.trainer.utils.entropy_from_logits"),
}
# The trainers that train a causal LM on its own next-token loss: SFTTrainer and transformers' Trainer.
CAUSAL_LM_TRAINERS = (DEFAULT_TRAINER, PLAIN.trainer)


def measure_padding(arch: str, trainer_name: str, out: Path, *, faults: dict[str, float] | None = None,
                    tamper: Callable[[Any], None] | None = None) -> list[Verdict]:
    """After two real training steps, each of four unequal examples (2 to ~50 tokens): its loss alone against
    its loss in the batch of all four as the trainer's collator pads it, and as padded left. `faults`:
    suite/train/inject.py seam faults active throughout; `tamper(trainer)`: a change to the built trainer."""
    case = dataclasses.replace(h.tiny_case("lora", arch=arch, batch_size=len(UNEQUAL_ROWS), max_steps=2,
                                           num_samples=len(UNEQUAL_ROWS), max_length=128), trainer=trainer_name)
    with h.seam_faults(faults):
        built = h.build_trainer(case, out, UNEQUAL_ROWS)
        if tamper is not None:
            tamper(built.trainer)
        h.train_and_log(built)
        trainer = built.trainer
        features = [{k: r[k] for k in ("input_ids", "labels", "completion_mask") if k in r}
                    for r in trainer.train_dataset][:len(UNEQUAL_ROWS)]
        alone = [trainer.data_collator([f]) for f in features]
        alone_losses = [_losses(trainer.model, b)[0] for b in alone]
        collated = trainer.data_collator(features)
        left = _left_padded(alone, built.tokenizer.pad_token_id)
        in_batch, in_left = _losses(trainer.model, collated), _losses(trainer.model, left)
    lengths = [len(f["input_ids"]) for f in features]
    what = f"{case.id} ({arch}, {trainer_name}), rows of {lengths} tokens, after 2 steps"
    side = _padded_side(collated)
    return [compare("causal_lm.padding.collated", in_batch, alone_losses,
                    f"{what}; the trainer's collator padded {side}; per-example losses in the batch "
                    f"{_fmt(in_batch)} vs alone {_fmt(alone_losses)}"),
            compare("causal_lm.padding.left", in_left, alone_losses,
                    f"{what}; padded left; per-example losses in the batch {_fmt(in_left)} vs alone "
                    f"{_fmt(alone_losses)}")]


def _losses(model, batch: dict) -> list[float]:
    """The suite's own per-example cross-entropy of a plain eval-mode forward (labels kept out of it)."""
    logits = h.plain_logits(model, {k: v for k, v in batch.items() if k != "labels"})
    return per_example_losses(logits, batch["labels"])


def _left_padded(alone: list[dict], pad_id: int) -> dict:
    """The examples collated alone, padded left to the longest: pad ids, attention 0, label -100 in front. A row's
    first label is no target alone (nothing precedes it); padded left it would be one, predicted from the last
    pad, so it is -100 here too: the row's targets are exactly its targets alone."""
    import torch

    width = max(b["input_ids"].shape[1] for b in alone)

    def pad(t, value):
        return torch.cat([torch.full((1, width - t.shape[1]), value, dtype=t.dtype), t], dim=1)

    return {"input_ids": torch.cat([pad(b["input_ids"], pad_id) for b in alone]),
            "attention_mask": torch.cat([pad(b.get("attention_mask", torch.ones_like(b["input_ids"])), 0)
                                         for b in alone]),
            "labels": torch.cat([pad(_no_first_target(b["labels"]), -100) for b in alone])}


def _no_first_target(labels):
    import torch

    return torch.cat([torch.full_like(labels[:, :1], -100), labels[:, 1:]], dim=1)


def _padded_side(batch: dict) -> str:
    """Where the collator put the padding of its shortest row (what the relation measured)."""
    mask = batch.get("attention_mask")
    if mask is None or bool(mask.all()):
        return "nothing (no attention mask or no padding)"
    row = mask[int(mask.sum(-1).argmin())]
    return "left" if int(row[0]) == 0 else "right"


def _fmt(values: list[float]) -> str:
    return "[" + ", ".join(f"{v:.6f}" for v in values) + "]"
