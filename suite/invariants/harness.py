"""Tiny in-process trainers for the invariants, built by the case's own backend, the one way the
suite builds a trainer (suite/train/backends/).

So an invariant exercises the argument mapping the suite ships, not a private copy of it. What
differs from a case run: it stays in this process, on the CPU in fp32, and the caller may swap the
trainer class, the adapter config, the tokenizer or the rows (the backend's BuildHooks), or the
collator afterwards, which is how the "can fail" tests break a relation on purpose.
"""
from __future__ import annotations

import contextlib
import random
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator

from suite.invariants.relations import NotApplicable
from suite.matrix.axes import METHODS, arch_features
from suite.matrix.spec import Case, CheckSpec, LoraSpec, ModelSpec, Training
from suite.train import data, models
from suite.train.backends.base import BuildHooks
from suite.train.backends.registry import backend_for

ARCH_MODELS = {"llama": "tiny-llama", "qwen2": "tiny-qwen2", "mistral": "tiny-mistral", "mixtral": "tiny-mixtral",
               # the families of 2026, named as cases/models.yaml names them
               "llama3": "tiny-llama3", "qwen3": "tiny-qwen3", "qwen3_moe": "tiny-qwen3-moe", "qwen3_5": "tiny-qwen3.5",
               "gemma3": "tiny-gemma3", "gemma4": "tiny-gemma4", "phi4_mini": "tiny-phi4-mini", "gpt_oss": "tiny-gpt-oss",
               "smollm3": "tiny-smollm3", "llama_sampling": "tiny-llama-sampling"}
# Small and quick: a handful of steps of 4-example batches on 16 examples.
DEFAULT_TRAINING = dict(max_steps=3, batch_size=4, num_samples=16, max_length=64,
                        precision="fp32", learning_rate=1e-2, neftune_alpha=0.5)


def tiny_case(method: str = "lora", features: tuple[str, ...] = (), dataset: str = "text", loss: str = "auto",
              arch: str = "llama", extra: dict | None = None, **training: Any) -> Case:
    """A Case of a tiny model with invariant-sized training defaults; `extra` goes to SFTConfig."""
    settings = {**DEFAULT_TRAINING, **training, "extra": tuple(sorted((extra or {}).items()))}
    t = Training(**{**settings, "benchmark_steps": settings["max_steps"]})  # invariants run in regression mode
    spec = ModelSpec(name=ARCH_MODELS[arch], size="tiny", arch=arch)
    features = tuple(dict.fromkeys((*features, *arch_features(arch))))  # e.g. eager where its class has no SDPA
    return Case(model=spec, **METHODS[method].axes(), features=tuple(features), dataset=dataset, loss=loss, training=t,
                lora=LoraSpec(), checks=CheckSpec(), timeout_s=120.0, source="(invariant)")


def seed_everything(seed: int = 0) -> None:
    """Seeds and deterministic kernels: two runs of one setup must be comparable bit for bit."""
    import torch
    from transformers import set_seed

    random.seed(seed)
    set_seed(seed)
    torch.use_deterministic_algorithms(True, warn_only=True)


def model_path(case: Case) -> str:
    return str(models.materialise_tiny(case.model.arch or "llama"))


def tokenizer_for(case: Case):
    return models.load_tokenizer(model_path(case))


def rows_for(case: Case) -> list[dict]:
    return data.generate(case.dataset, case.training.num_samples, seed=case.training.seed)


@dataclass
class Built:
    trainer: Any  # the case's trainer (or the class the caller asked for)
    tokenizer: Any
    case: Case
    model_path: str


def require_expressible(case: Case) -> None:
    """What the matrix would skip on the installed versions (suite/train/compat.py: a release too old for
    what the case declares) is not applicable to an invariant either: NotApplicable, saying what is missing."""
    from suite.train import compat

    missing = compat.cannot_express(case, backend_for(case).version_needs(case))
    if missing:
        raise NotApplicable(f"{case.id} needs {'; '.join(missing)}")


def build_trainer(case: Case, output_dir: Path, rows: list[dict] | None = None, *, trainer_cls=None,
                  callbacks: tuple = (), peft_config: Any = None, tokenizer: Any = None, eval_dataset: Any = None,
                  **trainer_kwargs: Any) -> Built:
    """The case's trainer, built by its backend on CPU in fp32, seeded; the model goes in as the
    backend gives it (a path for trl's trainers, as in the matrix)."""
    import torch
    from datasets import Dataset

    require_expressible(case)
    seed_everything(case.training.seed)
    path = model_path(case)
    hooks = BuildHooks(trainer_cls=trainer_cls, peft_config=peft_config, tokenizer=tokenizer,
                       trainer_kwargs=trainer_kwargs)
    dataset = Dataset.from_list(rows if rows is not None else rows_for(case))
    trainer, tokenizer, _ = backend_for(case).build_trainer(case, path, "cpu", "fp32", torch.float32, output_dir,
                                                            dataset, list(callbacks), eval_dataset=eval_dataset,
                                                            hooks=hooks)
    return Built(trainer, tokenizer, case, path)


class LossLog:
    """A TrainerCallback collecting every logged loss (and grad norm) by step."""

    def __init__(self) -> None:
        self.losses: list[float] = []
        self.steps: list[int] = []

    def as_callback(self):
        from transformers import TrainerCallback

        log = self

        class _Cb(TrainerCallback):
            def on_log(self, args, state, control, logs=None, **kwargs):
                if logs and "loss" in logs:
                    log.losses.append(float(logs["loss"]))
                    log.steps.append(state.global_step)

        return _Cb()


def train_and_log(built: Built, **train_kwargs: Any) -> list[float]:
    """Train and return the logged losses (logging_steps=1: one per optimizer step)."""
    log = LossLog()
    built.trainer.add_callback(log.as_callback())
    built.trainer.train(**train_kwargs)
    return log.losses


def train_first_step(built: Built) -> tuple[list[float], dict]:
    """Train, keeping the batch step 1 was fed whatever the trainer class; returns the logged losses and that
    batch, with the model put back to its weights before step 1 (its logged loss was computed before the
    update), so that the caller can compute that loss by hand."""
    trainer, model = built.trainer, built.trainer.model
    fed: dict = {}
    compute_loss = trainer.compute_loss

    def recording(model, inputs, *args, **kwargs):
        if not fed:
            fed.update({k: v.detach().clone() for k, v in inputs.items() if hasattr(v, "detach")})
        return compute_loss(model, inputs, *args, **kwargs)

    before = full_state(model)
    trainer.compute_loss = recording
    logged = train_and_log(built)
    model.load_state_dict(before)
    return logged, fed


def trainable_state(model) -> dict[str, Any]:
    """Detached copies of the trainable parameters, by name."""
    return {n: p.detach().float().clone() for n, p in model.named_parameters() if p.requires_grad}


def full_state(model) -> dict[str, Any]:
    """Detached copies of every parameter and buffer, by name, in their own dtype (bitwise comparisons)."""
    return {n: t.detach().clone() for n, t in model.state_dict().items()}


def first_batches(trainer, n: int = 1) -> list[dict]:
    """The first n batches of the trainer's own dataloader (its collator, its sampler)."""
    out = []
    for batch in trainer.get_train_dataloader():
        out.append(batch)
        if len(out) == n:
            break
    return out


def plain_logits(model, batch: dict):
    """Logits of a plain forward (trl's fused LM head off) on a collated batch, in eval mode."""
    import torch

    keys = ("input_ids", "attention_mask", "position_ids")
    inputs = {k: batch[k] for k in keys if k in batch}
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad():
            return model(**inputs).logits.float()
    finally:
        model.train(was_training)


@contextlib.contextmanager
def quiet() -> Iterator[None]:
    """Silence the stack's advisory warnings while an invariant builds and trains."""
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        yield


@contextlib.contextmanager
def seam_faults(faults: dict[str, float] | None) -> Iterator[None]:
    """suite/train/inject.py's seam faults (those wrapping a library function) installed in this process for
    the block and taken out after: a test's process goes on to run other tests."""
    from suite.train import inject

    kinds = [k for k in (faults or {}) if inject.SEAMS[k] is not inject.TRAINER]
    found = []  # every seam resolved before any is installed: a missing one installs none
    for kind in kinds:
        where = inject.SEAMS[kind].where
        try:
            owner, name = inject.seam_owner(where)
            found.append((kind, owner, name, getattr(owner, name)))
        except (AttributeError, ValueError) as exc:  # a release before the code the fault changes existed
            raise NotApplicable(f"the fault {kind} changes {where}, which the installed packages do not have "
                                f"({exc})") from None
    saved = []
    try:
        for kind, owner, name, original in found:
            setattr(owner, name, inject.SEAMS[kind].wrap(original))
            saved.append((owner, name, original))
        yield
    finally:
        for owner, name, original in reversed(saved):
            setattr(owner, name, original)
