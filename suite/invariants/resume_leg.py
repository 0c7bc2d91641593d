"""One leg of a resume relation: a tiny trainer built by its case's backend, trained straight or resumed from a
checkpoint folder, recording what the relation compares, by the suite's own code: each step's logged loss and
learning rate, which examples each batch held (their rows in the training set, found by content: what the
collator was handed, not what trl reports), what a generating trainer sampled, and the trained weights.

The resumed leg runs here as its own interpreter (`python -m suite.invariants.resume_leg SPEC.json`), as a
preempted job's rerun does: it gets the checkpoint folder and the setup's name, nothing in memory.
"""
from __future__ import annotations

import dataclasses
import json
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

from suite.invariants import harness as h
from suite.matrix.spec import Case
from suite.train.backends.registry import BACKENDS

WEIGHTS = "weights.pt"
RECORD = "leg.json"


@dataclass(frozen=True)
class Setup:
    """A resume setup: `steps` optimizer steps straight, against stopping at `stop` and resuming."""
    name: str
    trainer: str  # the matrix's trainer name: sft, hf_trainer, dpo, grpo
    method: str  # full, lora, qlora
    num_samples: int
    batch_size: int
    grad_accum: int
    steps: int
    stop: int
    learning_rate: float = 1e-2
    # the quantities whose relation is the owner's own, known broken where the base `resume.*` holds
    # (resume.SETUPS says why): `resume.loss` becomes `<owner>.resume.loss`
    owner: str = ""
    known_broken: tuple[str, ...] = ()

    def relation(self, quantity: str) -> str:
        return f"{self.owner}.resume.{quantity}" if quantity in self.known_broken else f"resume.{quantity}"

    def case(self) -> Case:
        """The tiny case, saving at `stop`; the data format is the trainer's first (its backend's)."""
        fmt = next(b.formats[0] for b in BACKENDS if b.trainer == self.trainer)
        case = h.tiny_case(self.method, dataset=fmt, batch_size=self.batch_size, grad_accum=self.grad_accum,
                           num_samples=self.num_samples, max_steps=self.steps, learning_rate=self.learning_rate,
                           extra=dict(save_strategy="steps", save_steps=self.stop))
        return dataclasses.replace(case, trainer=self.trainer)


@dataclass
class Leg:
    """What one leg recorded; `order` and `samples` are (global step when drawn, content) pairs."""
    losses: list[float] = field(default_factory=list)
    lrs: list[float] = field(default_factory=list)
    steps: list[int] = field(default_factory=list)
    order: list[tuple[int, list[int]]] = field(default_factory=list)
    samples: list[tuple[int, list[list[int]]]] = field(default_factory=list)
    dtypes: dict[str, str] = field(default_factory=dict)  # each trainable parameter's dtype as it trained
    weights: dict[str, Any] = field(default_factory=dict)

    def save(self, folder: Path) -> None:
        import torch

        folder.mkdir(parents=True, exist_ok=True)
        torch.save(self.weights, folder / WEIGHTS)
        doc = {k: v for k, v in dataclasses.asdict(self).items() if k != "weights"}
        (folder / RECORD).write_text(json.dumps(doc))

    @classmethod
    def load(cls, folder: Path) -> Leg:
        import torch

        record = folder / RECORD
        if not record.is_file():  # a child that died before writing: no record is no pass
            raise FileNotFoundError(f"{record}: the resumed leg wrote no record")
        doc = json.loads(record.read_text())
        leg = cls(**{k: doc[k] for k in ("losses", "lrs", "steps", "dtypes")})
        leg.order = [(s, list(ids)) for s, ids in doc["order"]]
        leg.samples = [(s, [list(c) for c in comps]) for s, comps in doc["samples"]]
        leg.weights = torch.load(folder / WEIGHTS)
        return leg


def _row_key(row: dict, keys: list[str]) -> str:
    """A row's content over `keys`, as text: lists of ids and strings compare by value."""
    def plain(v: Any) -> Any:
        return v.tolist() if hasattr(v, "tolist") else v
    return json.dumps([plain(row[k]) for k in keys], sort_keys=True, default=str)


class OrderRecorder:
    """Wraps a collator: each call's features are looked up in the training set by content (the first call
    builds the table over the keys the features carry) and recorded as row numbers with the global step."""

    def __init__(self, trainer: Any, leg: Leg) -> None:
        self.trainer, self.leg, self.inner = trainer, leg, trainer.data_collator
        self.table: dict[str, int] | None = None

    def __call__(self, features: list) -> Any:
        keys = sorted(features[0])
        if self.table is None:
            self.table = {}
            for i, row in enumerate(self.trainer.train_dataset):  # duplicates: the first row, alike in both legs
                self.table.setdefault(_row_key(row, keys), i)
        ids = [self.table.get(_row_key(f, keys), -1) for f in features]
        self.leg.order.append((self.trainer.state.global_step, ids))
        return self.inner(features)


def _record_samples(trainer: Any, leg: Leg) -> None:
    """A generating trainer's sampled completion ids, per generation, with the global step."""
    inner = trainer._generate_and_score_completions

    def recording(inputs: Any) -> dict:
        out = inner(inputs)
        leg.samples.append((trainer.state.global_step, out["completion_ids"].tolist()))
        return out

    trainer._generate_and_score_completions = recording


def _log_callback(leg: Leg):
    from transformers import TrainerCallback

    class _Log(TrainerCallback):
        def on_log(self, args, state, control, logs=None, **kwargs):
            if logs and "loss" in logs:
                leg.losses.append(float(logs["loss"]))
                leg.lrs.append(float(logs.get("learning_rate", float("nan"))))
                leg.steps.append(state.global_step)

    return _Log()


def sampler_restarted_at_epoch_0(trainer: Any) -> None:
    """The fault: the shuffling sampler's epoch is never set past 0 (a resumed run that reshuffles every epoch
    as the first): each sampler the training dataloader holds gets a set_epoch that passes 0."""
    build = trainer.get_train_dataloader

    def get_train_dataloader(*args, **kwargs):
        loader = build(*args, **kwargs)
        seen, todo = set(), [loader]
        while todo:
            obj = todo.pop()
            if obj is None or id(obj) in seen:
                continue
            seen.add(id(obj))
            if hasattr(obj, "set_epoch") and not hasattr(obj, "__next__"):
                obj.set_epoch = (lambda original: lambda epoch: original(0))(obj.set_epoch)
            todo += [getattr(obj, a, None) for a in ("sampler", "batch_sampler", "base_dataloader")]
        return loader

    trainer.get_train_dataloader = get_train_dataloader


TRAINER_FAULTS: dict[str, Callable[[Any], None]] = {"sampler_epoch_0": sampler_restarted_at_epoch_0}


def run_leg(setup: Setup, output_dir: Path, *, resume_from: Path | None = None, fault: str | None = None) -> Leg:
    """Train the setup's case in this process (straight, or resumed from `resume_from`) and record it."""
    from suite.matrix.axes import FORMAT

    leg = Leg()
    with h.quiet():
        built = h.build_trainer(setup.case(), output_dir, callbacks=(_log_callback(leg),))
        trainer = built.trainer
        trainer.data_collator = OrderRecorder(trainer, leg)
        if FORMAT[built.case.dataset].generates:
            _record_samples(trainer, leg)
        if fault is not None:
            TRAINER_FAULTS[fault](trainer)
        trainer.train(resume_from_checkpoint=str(resume_from) if resume_from is not None else None)
    leg.dtypes = {n: str(p.dtype) for n, p in trainer.model.named_parameters() if p.requires_grad}
    leg.weights = h.trainable_state(trainer.model)
    return leg


def main(argv: list[str]) -> int:
    """The resumed leg as its own process: SPEC.json names the setup (its fields), the checkpoint, the folders."""
    spec = json.loads(Path(argv[0]).read_text())
    setup = Setup(**spec["setup"])
    leg = run_leg(setup, Path(spec["output_dir"]), resume_from=Path(spec["checkpoint"]), fault=spec.get("fault"))
    leg.save(Path(spec["record_dir"]))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
