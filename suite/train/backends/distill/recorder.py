"""What the distillation checks judge, captured by the suite's own forwards (trl's loss is not read): at the
recorded steps, the student's logits (the trained model as the step saw it, before its update) and the teacher's
(a copy the suite loads itself from the teacher's path, not trl's `teacher_model`) at each completion token the
loss covers; before and after training, both models' logits on held-out prompts. relations.py turns them into
the divergence by its own formula; trl's `_compute_loss` is called as it is, after the capture."""
from __future__ import annotations

from typing import Any

from suite.train import data

RECORDED_STEPS = 3  # the first steps, each with its logits: enough to hold the definition, small in the record
HELDOUT_PROMPTS = 4
HELDOUT_SEED = 97  # not the training data's seed: prompts the student did not train on


def heldout_texts() -> list[str]:
    rows = data.generate("prompt_only", HELDOUT_PROMPTS, seed=HELDOUT_SEED)
    return [r["prompt"] if isinstance(r["prompt"], str) else " ".join(m["content"] for m in r["prompt"])
            for r in rows]


def _rounded(rows: Any) -> list:
    return [[round(float(x), 6) for x in row] for row in rows.tolist()]


class DistillRecorder:
    """Wraps the trainer's `_compute_loss` (outermost: after any known fault) and records, per micro-batch of
    the first RECORDED_STEPS steps, the student's and the suite's teacher's logits at the loss's tokens."""

    def __init__(self, trainer: Any, teacher: Any, tokenizer: Any) -> None:
        self.trainer, self.teacher, self.tokenizer = trainer, teacher, tokenizer
        self.micro_batches: list[dict] = []
        self.counts: dict[int, tuple[int, int, int]] = {}  # step -> processed, labelled tokens, sequences
        self.batches: list[tuple[int, int, int]] = []  # the same per micro-batch (the profiled step reads the last)
        self.inner = trainer._compute_loss
        trainer._compute_loss = self._compute_loss
        self.heldout = {"before": self.heldout_logits()}

    def _compute_loss(self, student: Any, inputs: dict, num_items_in_batch: Any) -> Any:
        step = self.trainer.state.global_step + 1
        if student.training:
            self._count(step, inputs)
        if student.training and step <= RECORDED_STEPS:
            self.micro_batches.append({"step": step, **self._capture(student, inputs)})
        return self.inner(student, inputs, num_items_in_batch)

    def _count(self, step: int, inputs: dict) -> None:
        labelled = int(inputs["completion_mask"].sum())
        counts = (int(inputs["prompt_mask"].sum()) + labelled, labelled, int(inputs["completion_mask"].size(0)))
        self.batches.append(counts)
        done = self.counts.get(step, (0, 0, 0))
        self.counts[step] = tuple(a + b for a, b in zip(done, counts))

    def per_step(self, steps: int, grad_accum: int) -> list[tuple[int, int, int]]:
        """Processed (prompt and completion), labelled (completion) tokens and sequences per optimizer step."""
        return [self.counts[s] for s in sorted(self.counts) if s <= steps]

    def _capture(self, student: Any, inputs: dict) -> dict:
        import torch

        ids = torch.cat([inputs["prompt_ids"], inputs["completion_ids"]], dim=1)
        mask = torch.cat([inputs["prompt_mask"], inputs["completion_mask"]], dim=1)
        p, keep = inputs["prompt_ids"].size(1), inputs["completion_mask"].bool()
        with torch.no_grad():
            s = student(input_ids=ids, attention_mask=mask).logits[:, p - 1:-1]
            t = self.teacher(input_ids=ids.to(self.teacher.device), attention_mask=mask.to(self.teacher.device))
            t = t.logits[:, p - 1:-1].to(s.device)
        return {"student": _rounded(s[keep].float()), "teacher": _rounded(t[keep].float())}

    def heldout_logits(self) -> dict:
        """Both models' next-token logits at every position of the held-out prompts (teacher-forced)."""
        import torch

        model = self.trainer.model
        enc = self.tokenizer(heldout_texts(), return_tensors="pt", padding=True)
        keep = enc["attention_mask"].bool()
        was_training = model.training
        model.eval()
        with torch.no_grad():
            s = model(**{k: v.to(model.device) for k, v in enc.items()}).logits
            t = self.teacher(**{k: v.to(self.teacher.device) for k, v in enc.items()}).logits.to(s.device)
        model.train(was_training)
        return {"student": _rounded(s[keep.to(s.device)].float()), "teacher": _rounded(t[keep.to(s.device)].float())}

    # TrainerCallback's hooks (duck-typed: transformers calls what a callback defines)
    def __getattr__(self, name: str) -> Any:
        if name.startswith("on_"):
            return lambda *args, **kwargs: None
        raise AttributeError(name)
