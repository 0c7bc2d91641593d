"""What a preference trainer's loss was computed from, recorded at a few optimizer steps (the first, a middle one,
the last) so the suite can recompute the loss, the implicit rewards and KTO's KL estimate by its own formulas
(definitions.py): a forward hook on the policy (and trl's reference copy, for a full fine-tune) keeps, for every
forward trl runs inside `_compute_loss` with `fused_lm_head`, each row's log-probabilities summed the way trl sums
them, and whether it ran with gradients (the policy's does, the reference's and KTO's KL forwards do not). At
the first step the suite also runs its own forward (logits -> log_softmax -> gather over the completion tokens
its own tokenisation marks: own_logps.py), from the random state trl's policy forward started from, so LoRA
dropout draws the same masks. Nothing of trl's maths is changed; the random state is put back after."""
from __future__ import annotations

from typing import Any, Callable

from suite.train.rng import rng_state, set_rng

KEEP_ROWS = 16  # rows kept per forward (the record stays small)


def recorded_steps(max_steps: int) -> set[int]:
    """The optimizer steps recorded: the first, a middle one and the last (1-based, as trl logs them)."""
    return {1, max(1, (max_steps + 1) // 2), max_steps}


class LogpsRecorder:
    """Wraps the trainer's `_compute_loss` (after any known fault: it records what the loss saw) and hooks the
    forwards it runs; `own(model, inputs)` (optional) is the suite's own recomputation at the first step."""

    def __init__(self, trainer: Any, own: Callable[[Any, Any, dict], dict] | None = None) -> None:
        self.trainer, self.own_forward, self.active = trainer, own, False
        self.steps = recorded_steps(trainer.args.max_steps)
        self.calls: list[dict] = []
        self.records: list[dict] = []
        self.inner = trainer._compute_loss
        trainer._compute_loss = self._compute_loss
        models = (trainer.model, getattr(trainer, "ref_model", None))
        for module in {id(m): m for m in models if m is not None}.values():
            module.register_forward_hook(self._hook, with_kwargs=True)

    def _hook(self, module: Any, args: tuple, kwargs: dict, output: Any) -> None:
        import torch

        log_probs = getattr(output, "log_probs", None)
        if not self.active or not kwargs.get("fused_lm_head") or log_probs is None:
            return
        seq_len = kwargs["labels"].size(1) - 1  # trl keeps the last seq_len positions (virtual tokens before)
        sums = log_probs.detach().float()[:, -seq_len:].sum(-1)
        self.calls.append({"grad": torch.is_grad_enabled(), "ids": kwargs["input_ids"].detach().clone(),
                           "logps": [float(x) for x in sums.tolist()]})

    def _compute_loss(self, model: Any, inputs: Any, return_outputs: bool = False) -> Any:
        step = self.trainer.state.global_step + 1
        if not (self.trainer.model.training and step in self.steps and step <= self.trainer.args.max_steps):
            return self.inner(model, inputs, return_outputs)
        before, self.calls, self.active = rng_state(), [], True
        try:
            out = self.inner(model, inputs, return_outputs)
        finally:
            self.active = False
        loss = out[0] if isinstance(out, tuple) else out
        self.records.append(self._entry(step, float(loss.detach()), inputs))
        if self.own_forward is not None and step == 1 and len(self.records) == 1:
            after = rng_state()
            set_rng(before)  # trl's policy forward drew its dropout masks from here
            try:
                self.records[0]["own"] = self.own_forward(self.trainer, inputs, self.records[0])
            finally:
                set_rng(after)
        return out

    def _entry(self, step: int, loss: float, inputs: Any) -> dict:
        """One micro-batch: its loss as trl returned it, the rows' completion lengths, labels (KTO), and per
        forward whether it had gradients, how many of its rows are the batch's own rows (KTO's KL forwards
        must run on mismatched pairs), and its sums."""
        import torch

        ids = inputs["input_ids"]
        calls = [{"grad": c["grad"], "rows_of_batch": _rows_of(c["ids"], ids), "logps": c["logps"][:KEEP_ROWS * 2]}
                 for c in self.calls]
        entry = {"step": step, "loss": loss, "calls": calls,
                 "completion_tokens": [int(x) for x in inputs["completion_mask"].sum(1).tolist()]}
        if "label" in inputs:
            entry["label"] = [bool(x) for x in torch.as_tensor(inputs["label"]).tolist()]
        if "ref_chosen_logps" in inputs:  # DPO's precompute_ref_log_probs: what the loss read, read after it ran
            entry["reference"] = [float(x) for x in torch.cat([inputs["ref_chosen_logps"][:KEEP_ROWS],
                                                               inputs["ref_rejected_logps"][:KEEP_ROWS]]).tolist()]
        return entry

    def record(self) -> dict:
        return {"recorded_steps": sorted(self.steps), "micro_batches": self.records}


def _rows_of(a: Any, b: Any) -> int:
    """How many rows of a forward's input are the batch's row at the same index (same width, same tokens)."""
    import torch

    if a.shape != b.shape:
        return sum(bool(torch.equal(_unpadded(x), _unpadded(y))) for x, y in zip(a, b))
    return int((a == b).all(1).sum())


def _unpadded(row: Any) -> Any:
    return row[: int((row != row[-1]).nonzero().max()) + 1] if bool((row != row[-1]).any()) else row
