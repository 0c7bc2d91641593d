"""What the reward model's loss was computed from, and its padding invariance after training, for the
by-definition relations (relations.py). The recorder wraps trl's `compute_loss` (after any known fault) and hooks
the model's forward: at the first, a middle and the last step it keeps the scores of the chosen and the rejected
rows. After training, in the child, `padding_scores` scores short texts alone and beside a longer text in a batch
the suite pads itself, right and left: a classifier that scores the last non-padding token gives the same score."""
from __future__ import annotations

from typing import Any

from suite.train.backends.preference.recorder import recorded_steps

KEEP_PAIRS = 16
PADDED_TEXTS = 3  # short texts scored alone and padded


class ScoreRecorder:
    def __init__(self, trainer: Any) -> None:
        self.trainer, self.active, self.scores = trainer, False, []
        self.steps = recorded_steps(trainer.args.max_steps)
        self.records: list[dict] = []
        self.inner = trainer.compute_loss
        trainer.compute_loss = self._compute_loss
        trainer.model.register_forward_hook(self._hook)

    def _hook(self, module: Any, args: tuple, output: Any) -> None:
        if self.active and getattr(output, "logits", None) is not None:
            self.scores.append([float(x) for x in output.logits.detach().float().reshape(-1).tolist()])

    def _compute_loss(self, model: Any, inputs: Any, return_outputs: bool = False, **kwargs: Any) -> Any:
        step = self.trainer.state.global_step + 1
        if not (self.trainer.model.training and step in self.steps and step <= self.trainer.args.max_steps):
            return self.inner(model, inputs, return_outputs, **kwargs)
        self.scores, self.active = [], True
        try:
            out = self.inner(model, inputs, return_outputs, **kwargs)
        finally:
            self.active = False
        loss = out[0] if isinstance(out, tuple) else out
        if len(self.scores) == 1:  # one forward of the chosen rows, then the rejected (trl 1.x)
            n = len(self.scores[0]) // 2
            chosen, rejected = self.scores[0][:n], self.scores[0][n:]
        elif len(self.scores) == 2 and len(self.scores[0]) == len(self.scores[1]):  # one each (trl 0.20's)
            chosen, rejected = self.scores
        else:
            chosen, rejected = [], []
        self.records.append({"step": step, "loss": float(loss.detach()), "forwards": len(self.scores),
                             "chosen": chosen[:KEEP_PAIRS], "rejected": rejected[:KEEP_PAIRS],
                             "pairs": len(chosen)})
        return out

    def record(self) -> dict:
        return {"recorded_steps": sorted(self.steps), "micro_batches": self.records}


def _texts(dataset: Any, tokenizer: Any) -> list[str]:
    """The texts scored: a few rows' prompt + chosen as plain text (the suite renders them, not trl)."""
    out = []
    for row in dataset.select(range(min(len(dataset), 8))):
        prompt, chosen = row.get("prompt", ""), row["chosen"]
        if isinstance(chosen, list):  # conversational rows: the chat template renders them
            out.append(tokenizer.apply_chat_template((prompt or []) + chosen, tokenize=False))
        else:
            out.append((prompt or "") + chosen)
    return out


def padding_scores(model: Any, tokenizer: Any, dataset: Any, device: str) -> dict:
    """Each short text's score alone, right-padded and left-padded in a batch with the longest text, the batch
    built by the suite (its own ids, the tokenizer's pad id, its own attention mask), in eval mode."""
    import torch

    texts = _texts(dataset, tokenizer)
    ids = [tokenizer(t)["input_ids"] for t in texts]
    order = sorted(range(len(ids)), key=lambda i: len(ids[i]))
    longest, shorts = ids[order[-1]], [ids[i] for i in order[:PADDED_TEXTS] if len(ids[i]) < len(ids[order[-1]])]
    pad = tokenizer.pad_token_id
    was_training = model.training
    model.eval()
    out = {"alone": [], "right": [], "left": [], "lengths": [], "longest": len(longest)}
    try:
        with torch.no_grad():
            for short in shorts:
                k = len(longest) - len(short)
                batches = {"alone": ([short], [[1] * len(short)]),
                           "right": ([short + [pad] * k, longest], [[1] * len(short) + [0] * k, [1] * len(longest)]),
                           "left": ([[pad] * k + short, longest], [[0] * k + [1] * len(short), [1] * len(longest)])}
                for how, (rows, mask) in batches.items():
                    logits = model(input_ids=torch.tensor(rows, device=device),
                                   attention_mask=torch.tensor(mask, device=device)).logits
                    out[how].append(float(logits[0].reshape(-1)[0]))
                out["lengths"].append(len(short))
    finally:
        model.train(was_training)
    return out
