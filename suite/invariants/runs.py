"""Invariants that compare two real training runs: gradient accumulation, trainable set (resume: resume.py).

Each `measure_*` trains tiny models in this process and returns one Verdict per relation; the
keyword arguments are the seams a "can fail" test uses to break the relation on purpose.
"""
from __future__ import annotations

from pathlib import Path
from typing import Callable

from suite.invariants import harness as h
from suite.invariants.losses import UNEQUAL_ROWS
from suite.invariants.relations import RELATIONS, Verdict, compare, count
from suite.train import compat
from suite.train.backends.registry import BACKENDS, backend_for


# The library functions each relation here must not call to compute what it expects (issue 36: a relation
# that calls the function it judges cannot see a change inside it); tests/judge/test_oracles.py scans the
# module for them. An empty tuple: the relation compares two real runs, or the trainer's output with the
# case's own settings, and computes no expected value a library function could supply.
FORBIDDEN_ORACLES: dict[str, tuple[str, ...]] = {
    "grad_accum.loss": (),
    "grad_accum.weights": (),
    "determinism.curve": (),
    "trainable.set": (),
    "trainable.frozen_unchanged": (),
    "trainable.lora_b_nonzero": (),
}


def measure_grad_accum(method: str, out: Path, *, accumulate: int = 4, steps: int = 3,
                       trainer_cls=None) -> list[Verdict]:
    """Batch B x accumulation 1 against batch 1 x accumulation B on rows of very unequal length."""
    rows = UNEQUAL_ROWS[:accumulate]
    runs = []
    for bs, ga in ((accumulate, 1), (1, accumulate)):
        case = h.tiny_case(method, batch_size=bs, grad_accum=ga, num_samples=len(rows), max_steps=steps,
                           max_length=128)
        built = h.build_trainer(case, out / f"bs{bs}-ga{ga}", rows, trainer_cls=trainer_cls)
        losses = h.train_and_log(built)
        runs.append((losses, h.trainable_state(built.trainer.model)))
    (loss_a, w_a), (loss_b, w_b) = runs
    what = f"{method}, {steps} steps, batch {accumulate}x1 vs 1x{accumulate}"
    return [compare("grad_accum.loss", loss_a, loss_b, what), compare("grad_accum.weights", w_a, w_b, what)]


def measure_trainer_grad_accum(trainer_name: str, out: Path, *, accumulate: int = 4, steps: int = 3,
                               tamper: Callable[[object], None] | None = None) -> list[Verdict]:
    """A trainer's own `<trainer>.grad_accum.*` relations (those RELATIONS declares), through the matrix's own
    backend with a LoRA adapter, on the first data format the backend takes: batch B x accumulation 1 against
    batch 1 x accumulation B; `tamper(trainer)` may break the second.

    DPO and the reward trainer (preference pairs; the reward model is a one-output classifier whose score head
    trains beside LoRA): the loss is a mean over pairs. GRPO and RLOO (prompt-only data, 4 completions per
    prompt, LoRA with the LM head): trl samples the whole generation batch (one prompt's group) in one call
    either way, and the loss is an average over it (GRPO's dapo: each micro-batch's token sum over the
    generation batch's token count; RLOO: each micro-batch's sequence mean, over the accumulation steps).
    RLOO declares its relation on the weights only: its logged loss at ratio 1 is the mean of a whole group's
    leave-one-out advantages, which sum to 0, so it is 0 in both setups whatever the accumulation does. KTO
    declares none: its KL estimate pairs each prompt with another row's completion of the same micro-batch."""
    dataset = next(b.formats[0] for b in BACKENDS if b.trainer == trainer_name)
    return _preference_grad_accum(trainer_name, out, accumulate=accumulate, steps=steps, tamper=tamper,
                                  dataset=dataset)


def _preference_grad_accum(trainer_name: str, out: Path, *, accumulate: int, steps: int,
                           tamper: Callable[[object], None] | None, dataset: str) -> list[Verdict]:
    import dataclasses

    import torch
    from datasets import Dataset

    from suite.train import data

    rows = data.generate(dataset, accumulate, seed=0)
    runs = []
    for bs, ga in ((accumulate, 1), (1, accumulate)):
        case = dataclasses.replace(h.tiny_case("lora", dataset=dataset, batch_size=bs, grad_accum=ga,
                                               num_samples=len(rows), max_steps=steps, learning_rate=5e-3),
                                   trainer=trainer_name)
        h.require_expressible(case)
        h.seed_everything(case.training.seed)
        log = h.LossLog()
        trainer, _, _ = backend_for(case).build_trainer(case, h.model_path(case), "cpu", "fp32", torch.float32,
                                                   out / f"{trainer_name}-bs{bs}-ga{ga}", Dataset.from_list(rows),
                                                   [log.as_callback()])
        if tamper is not None and ga > 1:
            tamper(trainer)
        trainer.train()
        runs.append((log.losses, h.trainable_state(trainer.model)))
    (loss_a, w_a), (loss_b, w_b) = runs
    what = f"{trainer_name} lora, {steps} steps, batch {accumulate}x1 vs 1x{accumulate}"
    verdicts = [compare(f"{trainer_name}.grad_accum.weights", w_a, w_b, what)]
    if f"{trainer_name}.grad_accum.loss" in RELATIONS:  # RLOO's has none (measure_trainer_grad_accum)
        verdicts.insert(0, compare(f"{trainer_name}.grad_accum.loss", loss_a, loss_b, what))
    return verdicts


def summed_micro_batches(trainer) -> None:
    """The accumulated micro-batches' losses summed instead of averaged (a scaling bug)."""
    original = trainer.compute_loss

    def compute_loss(model, inputs, *args, **kwargs):
        out = original(model, inputs, *args, **kwargs)
        scale = trainer.args.gradient_accumulation_steps if model.training else 1
        return (out[0] * scale, *out[1:]) if isinstance(out, tuple) else out * scale

    trainer.compute_loss = compute_loss


def first_micro_batch_twice(trainer) -> None:
    """The first micro-batch of each accumulation window weighs twice (a window that counts one micro-batch
    again): unlike a scale of the whole loss, which Adam and gradient clipping undo, it turns the gradient."""
    original, calls = trainer.compute_loss, [0]

    def compute_loss(model, inputs, *args, **kwargs):
        out = original(model, inputs, *args, **kwargs)
        if not model.training:
            return out
        calls[0] += 1
        scale = 2.0 if calls[0] % trainer.args.gradient_accumulation_steps == 1 else 1.0
        return (out[0] * scale, *out[1:]) if isinstance(out, tuple) else out * scale

    trainer.compute_loss = compute_loss


def per_micro_batch_mean_trainer():
    """A trainer that averages the loss per micro-batch, then over micro-batches (the pre-2024 bug)."""
    from trl import SFTTrainer

    class PerMicroBatchMean(SFTTrainer):
        def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
            loss = super().compute_loss(model, inputs, return_outputs, num_items_in_batch=None)
            return loss / self.args.gradient_accumulation_steps if self.model.training else loss

    return PerMicroBatchMean


def _expected_trainable(model_path: str, modules_to_save: tuple[str, ...]) -> set[str]:
    """Adapter names derived from the base architecture: lora_A/B on every decoder Linear, plus copies."""
    import torch
    from transformers import AutoModelForCausalLM

    base = AutoModelForCausalLM.from_pretrained(model_path)
    out_name = next(n for n, m in base.named_modules() if m is base.get_output_embeddings())
    names = set()
    for name, module in base.named_modules():
        if isinstance(module, torch.nn.Linear) and name != out_name:
            names |= {f"base_model.model.{name}.lora_{ab}.default.weight" for ab in "AB"}
    for name in modules_to_save:
        names |= {f"base_model.model.{name}.modules_to_save.default.{p}"
                  for p, _ in base.get_submodule(name).named_parameters()}
    return names


def measure_trainable(out: Path, *, reentrant: bool, method: str = "lora", steps: int = 3,
                      sabotage: Callable | None = None) -> list[Verdict]:
    """LoRA (+ lm_head in modules_to_save) with gradient checkpointing: what trains, what does not."""
    import torch
    from peft import LoraConfig

    modules_to_save = ("lm_head",)
    case = h.tiny_case(method, features=("gradient_checkpointing",), max_steps=steps,
                       extra=compat.checkpointing_args(True, use_reentrant=reentrant))
    lora = LoraConfig(r=case.lora.r, lora_alpha=case.lora.alpha, lora_dropout=0.0, target_modules="all-linear",
                      modules_to_save=list(modules_to_save), task_type="CAUSAL_LM")
    built = h.build_trainer(case, out, peft_config=lora)
    model = built.trainer.model
    if sabotage is not None:
        sabotage(built.trainer)
    trainable = {n for n, p in model.named_parameters() if p.requires_grad}
    frozen_before = {n: t.detach().clone() for n, t in model.state_dict().items()
                     if n not in trainable}
    built.trainer.train()
    after = model.state_dict()
    expected = _expected_trainable(built.model_path, modules_to_save)
    wrong = sorted((trainable - expected) | (expected - trainable))
    changed = [n for n, t in frozen_before.items() if not torch.equal(t, after[n])]
    zero_b = [n for n, p in model.named_parameters() if "lora_B" in n and not p.detach().any()]
    what = f"{method}, {'reentrant' if reentrant else 'non-reentrant'} checkpointing"
    return [count("trainable.set", wrong, f"{what}, {len(expected)} expected"),
            count("trainable.frozen_unchanged", changed, what),
            count("trainable.lora_b_nonzero", zero_b, f"{what}, {sum('lora_B' in n for n in trainable)} lora_B")]


def no_input_grads(trainer) -> None:
    """Remove every input-require-grads hook once train() has set checkpointing up: with reentrant
    checkpointing no gradient then enters the checkpointed layers.

    Both trl and Trainer.train() call enable_input_require_grads, and the model keeps only the last
    handle, so disable_input_require_grads() alone would leave trl's hook in place.
    """
    from transformers import TrainerCallback

    class _Undo(TrainerCallback):
        def on_train_begin(self, args, state, control, model=None, **kwargs):
            hooks = model.get_input_embeddings()._forward_hooks
            for key in [k for k, fn in hooks.items() if fn.__name__ == "make_inputs_require_grads"]:
                del hooks[key]

    trainer.add_callback(_Undo())


def unfreeze_embeddings(trainer) -> None:
    """Make a base weight trainable, as a wrong modules_to_save or a peft regression would."""
    trainer.model.get_input_embeddings().weight.requires_grad_(True)  # before train() builds the optimizer


def merge_in_place(trainer) -> None:
    """Merge the adapter into the frozen base after every step and never unmerge (an eval-time merge
    left behind): the base weights change although nothing frozen may."""
    from transformers import TrainerCallback

    class _Merge(TrainerCallback):
        def on_step_end(self, args, state, control, model=None, **kwargs):
            model.merge_adapter()  # left merged: the base weights now hold BA

    trainer.add_callback(_Merge())


def measure_determinism(out: Path, *, second_seed: int | None = None, steps: int = 5) -> Verdict:
    """The same tiny setup trained twice in this process; second_seed: a run whose seed is not honoured."""
    curves = []
    for i, seed in enumerate((0, 0 if second_seed is None else second_seed)):
        case = h.tiny_case("lora", max_steps=steps, seed=seed)
        curves.append(h.train_and_log(h.build_trainer(case, out / f"run{i}")))
    return compare("determinism.curve", curves[0], curves[1], f"lora, {steps} steps, in-process")
