"""What a case declares is what the trainer runs with: max_length, truncation, every SFTConfig field."""
from __future__ import annotations

from pathlib import Path
from typing import Any

from suite.invariants import harness as h
from suite.invariants.relations import RELATIONS, NotApplicable, Verdict, count
from suite.matrix.spec import Case
from suite.train import data
from suite.train.backends.registry import backend_for


# The library functions each relation here must not call to compute what it expects (issue 36: a relation
# that calls the function it judges cannot see a change inside it); tests/judge/test_oracles.py scans the
# module for them. An empty tuple: the relation compares two real runs, or the trainer's output with the
# case's own settings, and computes no expected value a library function could supply.
FORBIDDEN_ORACLES: dict[str, tuple[str, ...]] = {
    # what a case declares is derived from the case, never from the suite's own builder of the trainer's config
    "config.reaches_args": ("suite.train.args.config",),
    "truncation.lengths": ("trl.data_utils.truncate_dataset",),
    "truncation.max_length": ("trl.data_utils.truncate_dataset",),
}


def declared_fields(case: Case) -> dict[str, Any]:
    """The trainer arguments a case pins, derived from the case itself (not from suite.train.args):
    every trainer's, then its backend's own (max_length, packing, loss flags, DPO's beta)."""
    t = case.training
    split = case.uses.micro_batches  # the same batch in this many micro-batches (grad_accum)
    out: dict[str, Any] = dict(
        max_steps=case.steps, per_device_train_batch_size=t.batch_size // split,
        gradient_accumulation_steps=t.grad_accum * split,
        learning_rate=t.learning_rate, lr_scheduler_type=t.lr_scheduler, warmup_steps=t.warmup_steps,
        weight_decay=t.weight_decay, seed=t.seed,
        neftune_noise_alpha=t.neftune_alpha if case.uses.noise else None,
        gradient_checkpointing=case.uses.checkpointing, use_cpu=True, bf16=False, fp16=False,
    )
    if case.uses.optim:
        out["optim"] = case.uses.optim
    if t.eval_samples:  # evaluated before the first step and after the last
        out.update(eval_strategy="steps", eval_steps=case.steps, eval_on_start=True)
    return backend_for(case).declared_fields(case, out)


def _max_length(trainer) -> int:
    """The trainer's max_length; the plain Trainer has none: its longest tokenised row."""
    if hasattr(trainer.args, "max_length"):
        return trainer.args.max_length
    return max(len(row["input_ids"]) for row in trainer.train_dataset)


def _same(got: Any, want: Any) -> bool:
    if isinstance(want, float) and isinstance(got, (int, float)):
        return abs(got - want) <= 1e-12 * max(1.0, abs(want))
    return got == want or str(getattr(got, "value", got)) == str(want)  # enums such as SchedulerType


def measure_config(cases: list[Case], out: Path, build=None) -> list[Verdict]:
    """Build each case's trainer as the matrix does (no training) and read back trainer.args."""
    import torch
    from datasets import Dataset

    build = build or (lambda case, *rest: backend_for(case).build_trainer(case, *rest))
    wrong_fields, wrong_length, attention = [], [], []
    uncut = 0  # cases whose trainer has no max_length (its completions' cap is one of the declared fields)
    inexpressible = []  # what the matrix skips on the installed versions (too old for what the case declares)
    for i, case in enumerate(cases):
        if case.needs_gpu:
            raise ValueError(f"{case.id} needs a GPU; measure_config builds trainers on the CPU")
        try:
            h.require_expressible(case)
        except NotApplicable:
            inexpressible.append(case.id)
            continue
        rows = Dataset.from_list(data.generate(case.dataset, 16, seed=case.training.seed))
        evals = Dataset.from_list(data.generate(case.dataset, 4, seed=1)) if case.training.eval_samples else None
        path = h.model_path(case)
        with h.quiet():
            trainer, _, _ = build(case, path, "cpu", "fp32", torch.float32, out / str(i), rows, [], evals)
        args = trainer.args
        for key, want in declared_fields(case).items():
            if not _same(getattr(args, key, "<missing>"), want):
                wrong_fields.append(f"{case.id}: {key}={getattr(args, key, '<missing>')!r}, declared {want!r}")
        backend = backend_for(case)
        if backend.max_length_cut is not None:
            length = _max_length(trainer)
            exact = backend.max_length_cut == "exact"
            if length != case.training.max_length if exact else length > case.training.max_length:
                wrong_length.append(f"{case.id}: {length} (declared {case.training.max_length})")
        else:
            uncut += 1
        got_attention = trainer.model.config._attn_implementation
        if got_attention != case.attention:
            attention.append(f"{case.id}: attention {got_attention!r}, declared {case.attention!r}")
    built = len(cases) - len(inexpressible)
    if not built:
        raise NotApplicable(f"the installed versions can express none of the {len(cases)} cases")
    skipped = f"; {len(inexpressible)} the installed versions cannot express, skipped as the matrix skips them" \
        if inexpressible else ""
    what = f"{built} tiny cases built as the matrix builds them{skipped}"
    cut = f"{built - uncut} tiny cases whose trainer truncates to max_length" + (
        f" ({uncut} generating cases have none)" if uncut else "") + skipped
    return [count("config.reaches_args", wrong_fields + attention, what),
            count("truncation.max_length", wrong_length, cut)]


def _long_text(words: int) -> str:
    vocab = data.NUMBERS + data.COLOURS
    return " ".join(vocab[i % len(vocab)] for i in range(words))


def measure_truncation(out: Path) -> list[Verdict]:
    """Rows shorter and longer than the declared max_length, with max_length below and above trl's default.

    A declared 1536 catches a default of the installed trl (1024 in trl 1.x) silently cutting
    sequences when the suite fails to pass the case's value.
    """
    from trl import SFTConfig

    trl_default = SFTConfig.__dataclass_fields__["max_length"].default
    off, wrong_length, misplaced = [], [], 0
    for declared in (48, max(1536, 3 * (trl_default or 512) // 2)):
        rows = [{"text": _long_text(n)} for n in (10, declared - 20, declared + 30, declared * 2)]
        case = h.tiny_case("lora", num_samples=len(rows), max_length=declared)
        built = h.build_trainer(case, out / str(declared), rows)
        if built.trainer.args.max_length != declared:
            wrong_length.append(f"max_length {built.trainer.args.max_length}, declared {declared}")
        eos = built.tokenizer.eos_token
        raw = [len(built.tokenizer(r["text"] + eos)["input_ids"]) for r in rows]
        got = sorted(len(r["input_ids"]) for r in built.trainer.train_dataset)
        want = sorted(min(n, declared) for n in raw)
        if got != want:
            off.append(f"declared {declared}: lengths {got}, expected {want}")
            misplaced += sum(abs(a - b) for a, b in zip(got, want)) if len(got) == len(want) else sum(raw)
    what = f"trl's default max_length is {trl_default}"
    lengths = RELATIONS["truncation.lengths"].measure(misplaced, f"{what}{': ' if off else ''}{'; '.join(off)}")
    return [count("truncation.max_length", wrong_length, what), lengths]
