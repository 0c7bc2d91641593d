"""save_total_limit (issue 37): the output folder keeps the checkpoints transformers documents, computed by
the suite from the steps the run saved and the eval metrics it logged.

transformers 5.x documents (TrainingArguments.save_total_limit): "Deletes older checkpoints in output_dir.
When load_best_model_at_end=True, the best checkpoint is always retained plus the most recent ones. For
example, save_total_limit=5 keeps the 4 most recent plus the best"; `rotate_checkpoints` also always keeps
the most recent (for resuming). So: without the best, the newest N; with it, the best and the newest filling
N (the newest N where the best is among them), never fewer than the newest and the best.
"""
from __future__ import annotations

from pathlib import Path
from typing import Callable

from suite.invariants import harness as h
from suite.invariants.relations import RELATIONS, Verdict
from suite.train import args as train_args

# The library functions the relation must not call to say what is expected (issue 36).
FORBIDDEN_ORACLES: dict[str, tuple[str, ...]] = {
    "save_total_limit.kept": ("transformers.trainer_utils.rotate_checkpoints", "transformers.trainer_utils.sort_checkpoints",
                              "transformers.trainer.Trainer._sorted_checkpoints",
                              "transformers.trainer.Trainer._rotate_checkpoints"),
}

STEPS = 5  # a save (and an eval) after each of 5 steps of the tiny llama, LoRA: ~3 s alone on a CPU
PREFIX = "checkpoint-"  # transformers' PREFIX_CHECKPOINT_DIR, the folder names the relation reads


class _Saves:
    """The steps the run saved at, as its callbacks saw them."""

    def __init__(self) -> None:
        self.steps: list[int] = []

    def callback(self):
        from transformers import TrainerCallback

        saves = self

        class _Cb(TrainerCallback):
            def on_save(self, args, state, control, **kwargs):
                saves.steps.append(state.global_step)

        return _Cb()


def expected_kept(saved: list[int], limit: int, best: int | None) -> set[int]:
    """The steps whose checkpoints stay, as transformers documents it."""
    newest = sorted(set(saved))
    if best is None or best in newest[-limit:]:
        return set(newest[-limit:])
    return {best, *newest[-max(limit - 1, 1):]}


def best_step(log_history: list[dict], metric: str, greater_is_better: bool, saved: list[int]) -> int:
    """The saved step whose logged metric is best (the first of equals, as a strictly better one replaces it)."""
    logged = [(e["step"], e[metric]) for e in log_history if metric in e and e["step"] in saved]
    if not logged:
        raise RuntimeError(f"the run logged no {metric} at the steps it saved ({saved})")
    best = logged[0]
    for step, value in logged[1:]:
        if (value > best[1]) if greater_is_better else (value < best[1]):
            best = (step, value)
    return best[0]


def measure_save_total_limit(out: Path, limit: int = 2, keep_best: bool = False,
                             fault: Callable | None = None) -> Verdict:
    """A run saving every step with save_total_limit=limit (and load_best_model_at_end: the best by the highest
    eval loss, which the first step has when the loss falls, so that the best is not among the newest)."""
    extra = dict(save_strategy="steps", save_steps=1, save_total_limit=limit)
    metric = "eval_loss"
    if keep_best:
        extra |= dict(eval_strategy="steps", eval_steps=1, eval_on_start=False, load_best_model_at_end=True,
                      metric_for_best_model=metric, greater_is_better=True)
    case = h.tiny_case("lora", max_steps=STEPS, eval_samples=8 if keep_best else 0, extra=extra)
    saves = _Saves()
    kwargs = {"eval_dataset": train_args.eval_dataset(case)} if keep_best else {}  # the case's own eval split
    with h.quiet():
        built = h.build_trainer(case, out, callbacks=(saves.callback(),), **kwargs)
        if fault is not None:
            fault(built.trainer)
        built.trainer.train()
    history = built.trainer.state.log_history
    best = best_step(history, metric, True, saves.steps) if keep_best else None
    expected = expected_kept(saves.steps, limit, best)
    present = {int(p.name[len(PREFIX):]) for p in Path(built.trainer.args.output_dir).glob(PREFIX + "*")
               if p.is_dir() and p.name[len(PREFIX):].isdigit()}
    wrong = sorted(present ^ expected)
    detail = (f"limit {limit}{f', best step {best} (highest {metric})' if keep_best else ''}, saved at {saves.steps}, "
              f"kept {sorted(present)}, expected {sorted(expected)}")
    return RELATIONS["save_total_limit.kept"].measure(len(wrong), detail)


def limit_ignored(trainer) -> None:
    """The fault: the trainer deletes no checkpoint (save_total_limit ignored)."""
    trainer.args.save_total_limit = None
