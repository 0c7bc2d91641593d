"""By name against by object (issue 37 item 1): the same tiny case trained twice in this process, once with
the model and tokenizer as the suite hands them (the suite's tokenizer as processing_class; the reward model
built by the suite) and once by name (the directory's path and no processing_class: trl loads both, the reward
model's score head included). The twins must log the same losses, end with the same weights, train with
the same tokenizer and, for the reward model, carry the same one-output head before and after save and reload.

The keyword arguments are the seams the "can fail" tests use: `fault` breaks the by-name twin on a real run
(`eos_fault`: trl's loaded tokenizer has another end-of-sequence token; `two_labels`: the classifier trl builds
gets num_labels=2), `seed` gives the by-name twin another seed.
"""
from __future__ import annotations

import contextlib
import dataclasses
from pathlib import Path
from typing import Any, Callable, Iterator

from suite.invariants import harness as h
from suite.invariants.relations import Verdict, compare, count
from suite.matrix.axes import FORMAT
from suite.train.backends.registry import BACKENDS, backend_for

# Each relation compares two real runs (or the two trainers' own tokenizers): no expected value is computed,
# so no library function could supply one (tests/judge/test_oracles.py).
FORBIDDEN_ORACLES: dict[str, tuple[str, ...]] = {
    "by_name.loss": (),
    "by_name.weights": (),
    "by_name.tokenizer": (),
    "reward.by_name.head": (),
}
# The trl trainers that take a model path (the plain Trainer takes none: docs/cases.md#by-name).
TRAINERS = ("sft", "dpo", "kto", "reward", "grpo", "rloo", "distill")
STEPS = 3
PROBE_TEXT = "the cat sat on the mat"


@dataclasses.dataclass
class Twin:
    losses: list[float]
    weights: dict[str, Any]
    tokenizer: dict[str, Any]
    head: dict[str, Any] | None  # the reward model's: num_labels and the score weights, trained and reloaded


def twin_case(trainer: str, method: str, by_name: bool, seed: int = 0):
    """The trainer's tiny case on its first data format, LoRA or full, by name or not."""
    dataset = next(b.formats[0] for b in BACKENDS if b.trainer == trainer)
    case = h.tiny_case(method, features=("by_name",) if by_name else (), dataset=dataset, max_steps=STEPS,
                       num_samples=8, learning_rate=5e-3, seed=seed)
    return dataclasses.replace(case, trainer=trainer)


def tokenizer_facts(tokenizer: Any) -> dict[str, Any]:
    """What decides the tokens a trainer trains on, as comparable values (a string by its hash of characters)."""
    chat = tokenizer.chat_template or ""
    ids = tokenizer(PROBE_TEXT)["input_ids"]
    return {"vocab": sorted(tokenizer.get_vocab().items()), "special": [
        str(getattr(tokenizer, k)) for k in ("bos_token", "eos_token", "pad_token", "unk_token")],
        "padding_side": tokenizer.padding_side, "truncation_side": tokenizer.truncation_side,
        "chat_template": chat, "probe_ids": ids}


def loaded_sides(case: Any) -> dict[str, str]:
    """What trl sets on a tokenizer it loads itself beyond the directory's: a generating trainer (GRPO, RLOO,
    distillation: prompt-only data) loads it padding and truncating on the left (trl 1.16's grpo_trainer.py,
    rloo_trainer.py, distillation_trainer.py: `AutoProcessor.from_pretrained(..., truncation_side="left",
    padding_side="left")`; the trainers pass the side to every padding call, so training does not depend on it)."""
    if FORMAT[case.dataset].generates:
        return {"padding_side": "left", "truncation_side": "left"}
    return {}


def _score(model: Any) -> Any:
    """The score head of a (possibly peft-wrapped) sequence classifier: its trained weights."""
    base = model.get_base_model() if hasattr(model, "get_base_model") else model
    module = base.score
    inner = getattr(module, "modules_to_save", None)  # peft's copy of the head that trains with LoRA
    weight = inner["default"].weight if inner is not None else module.weight
    return weight.detach().float().clone()


def _head(trainer: Any, case: Any, out: Path, before: Any) -> dict[str, Any]:
    """num_labels and the score head before training, after it and after save and reload (from_pretrained on
    the saved directory, or the adapter on a fresh classifier)."""
    import torch
    from transformers import AutoModelForSequenceClassification

    model = trainer.model
    saved = out / "saved"
    trainer.save_model(str(saved))
    if hasattr(model, "get_base_model"):
        from peft import PeftModel

        base = AutoModelForSequenceClassification.from_pretrained(h.model_path(case), num_labels=1)
        reloaded = PeftModel.from_pretrained(base, str(saved))
    else:
        reloaded = AutoModelForSequenceClassification.from_pretrained(str(saved))
    config = (model.get_base_model() if hasattr(model, "get_base_model") else model).config
    return {"num_labels": torch.tensor([config.num_labels, reloaded.config.num_labels]), "before": before,
            "trained": _score(model), "reloaded": _score(reloaded)}


def train_twin(case: Any, out: Path, fault: Callable[[], contextlib.AbstractContextManager] | None = None) -> Twin:
    """One twin: built by the case's backend in this process (the fault around the build), trained STEPS steps."""
    with (fault() if fault is not None else contextlib.nullcontext()):
        built = h.build_trainer(case, out)
    trainer = built.trainer
    classifier = backend_for(case).head == "seq_cls"  # the reward model: trl builds its score head from a path
    before = _score(trainer.model) if classifier else None
    losses = h.train_and_log(built)
    head = _head(trainer, case, out, before) if classifier else None
    return Twin(losses, h.trainable_state(trainer.model), tokenizer_facts(trainer.processing_class), head)


def measure_by_name(trainer: str, out: Path, *, method: str = "lora", seed: int = 0,
                    fault: Callable[[], contextlib.AbstractContextManager] | None = None) -> list[Verdict]:
    """The object-given twin against the by-name twin: losses, weights, tokenizer (and the reward head)."""
    h.require_expressible(twin_case(trainer, method, by_name=True))  # before training the first twin
    given = train_twin(twin_case(trainer, method, by_name=False), out / "object")
    named = train_twin(twin_case(trainer, method, by_name=True, seed=seed), out / "by_name", fault)
    what = f"{trainer} {method}, {STEPS} steps, by object vs by name"
    expected = {**given.tokenizer, **loaded_sides(twin_case(trainer, method, by_name=True))}
    differing = [k for k in expected if expected[k] != named.tokenizer[k]]
    verdicts = [compare("by_name.loss", given.losses, named.losses, what),
                compare("by_name.weights", given.weights, named.weights, what),
                count("by_name.tokenizer", differing, what)]
    if given.head is not None:
        verdicts.append(compare("reward.by_name.head", given.head, named.head, what))
    return verdicts


@contextlib.contextmanager
def _wrapped_classmethod(cls: type, name: str, wrap: Callable) -> Iterator[None]:
    """`cls.name` (a classmethod, perhaps inherited) replaced by wrap(original) for the block."""
    own = cls.__dict__.get(name)
    original = getattr(cls, name)
    setattr(cls, name, classmethod(lambda _cls, *a, **k: wrap(original, *a, **k)))
    try:
        yield
    finally:
        if own is None:
            delattr(cls, name)
        else:
            setattr(cls, name, own)


@contextlib.contextmanager
def eos_fault() -> Iterator[None]:
    """trl's loaded tokenizer (AutoProcessor / AutoTokenizer on the directory) ends sequences with <unk>, not
    </s>: a directory whose saved tokenizer differs from what the suite hands its trainers."""
    from transformers import AutoProcessor, AutoTokenizer

    def wrong_eos(original, *args, **kwargs):
        tokenizer = original(*args, **kwargs)
        tokenizer.eos_token = tokenizer.unk_token
        return tokenizer

    with _wrapped_classmethod(AutoProcessor, "from_pretrained", wrong_eos), \
            _wrapped_classmethod(AutoTokenizer, "from_pretrained", wrong_eos):
        yield


@contextlib.contextmanager
def two_labels() -> Iterator[None]:
    """The classifier trl builds from the path gets num_labels=2 (a head of two outputs)."""
    from transformers import AutoModelForSequenceClassification

    def two(original, *args, **kwargs):
        return original(*args, **{**kwargs, "num_labels": 2})

    with _wrapped_classmethod(AutoModelForSequenceClassification, "from_pretrained", two):
        yield
