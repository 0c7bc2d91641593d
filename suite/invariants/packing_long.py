"""trl's packing strategies on conversations longer than max_length (issue 37): what each strategy's
documentation promises, computed by the suite from what one epoch of a real run trained on.

The expected side is the suite's own: the conversations tokenized by the tokenizer's chat template
(suite/invariants/labels.py's `prompt_split`), cut at max_length by plain slicing. The observed side is what
the run saw: every batch its `compute_loss` was fed over one epoch (the sequences of a padding-free batch
split where position_ids restart at 0, the rows of a padded one by their attention mask), and the packed
dataset trl built (its rows in order: wrapped's promise is about order). trl's `pack_dataset` and its
helpers are never called to say what is expected.

What trl 1.16 documents (trl/data_utils.py `pack_dataset`, SFTConfig.packing_strategy):
- bfd: "preserves sequence boundaries and truncates sequences that exceed seq_length, discarding overflow
  tokens": each sequence is a prefix of one conversation, min(length, max_length) long; trl slices before
  it bins (`_pack_bfd`, on_seq_length_overflow="truncate"; trl 0.20 slices every list column first too);
- bfd_split: "splits overflow sequences for packing into other examples ... preserves all tokens": each
  sequence is the k-th max_length piece of one conversation, every piece there once;
- wrapped: "ignores sequence boundaries and will cut sequences in the middle to completely fill each packed
  sequence": the rows, concatenated in order, are the conversations concatenated in order, every row but
  the last exactly max_length; conversations cross row boundaries.
"""
from __future__ import annotations

import itertools
import math
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from suite.invariants import harness as h
from suite.invariants.labels import prompt_split
from suite.invariants.packing_faults import pack_fault
from suite.invariants.relations import RELATIONS, Verdict
from suite.matrix.axes import FEATURE

# The library functions each relation here must not call to compute what it expects (issue 36);
# tests/judge/test_oracles.py scans the module for them.
_PACKING = ("trl.data_utils.pack_dataset", "trl.data_utils._pack_bfd", "trl.data_utils._pack_wrapped",
            "trl.data_utils.truncate_dataset")
_TEMPLATE = ("trl.data_utils.apply_chat_template", "trl.data_utils.maybe_apply_chat_template")
FORBIDDEN_ORACLES: dict[str, tuple[str, ...]] = {
    "packing_long.bfd_prefixes": _PACKING + _TEMPLATE,
    "packing_long.split_pieces": _PACKING + _TEMPLATE,
    "packing_long.wrapped_stream": _PACKING + _TEMPLATE,
    "packing_long.row_length": _PACKING,
    "packing_long.tokens": _PACKING + _TEMPLATE,
}

# 16 conversations of 1 to 8 turns (15 to 112 tokens on the tiny tokenizer; 9 of them over 64), 4 packed
# rows a step, one epoch: 4 or 5 steps, ~3 s alone on a CPU.
ROWS = 16
MAX_LENGTH = 64
BATCH = 4
DATASET = "long_messages"


@dataclass
class PackedRun:
    """What one epoch of a packed run trained on, beside the conversations it was given."""
    strategy: str
    conversations: list[list[int]]  # the suite's own tokenization, in the data set's order
    rows: list[list[int]]  # the packed data set trl built, its rows in order
    sequences: list[list[int]]  # every sequence the run's batches held (padding-free: per position restart)
    max_length: int
    steps: int


def _sequences(batch: dict) -> list[list[int]]:
    """The sequences of a collated batch: split at position_ids restarts when padding-free, else its rows."""
    ids = batch["input_ids"]
    if "position_ids" in batch and ids.shape[0] == 1:
        pos = batch["position_ids"][0].tolist()
        starts = [i for i, p in enumerate(pos) if p == 0] + [len(pos)]
        return [ids[0, s:e].tolist() for s, e in zip(starts[:-1], starts[1:])]
    mask = batch.get("attention_mask")
    return [row[: int(mask[r].sum())].tolist() if mask is not None else row.tolist() for r, row in enumerate(ids)]


def _record_batches(trainer) -> list[dict]:
    """Every batch compute_loss is fed (one per step here: no accumulation), detached."""
    fed: list[dict] = []
    compute_loss = trainer.compute_loss

    def recording(model, inputs, *args, **kwargs):
        fed.append({k: v.detach().clone() for k, v in inputs.items() if hasattr(v, "detach")})
        return compute_loss(model, inputs, *args, **kwargs)

    trainer.compute_loss = recording
    return fed


def run_packed(out: Path, feature: str, fault: Callable | None = None) -> PackedRun:
    """One epoch of the tiny llama (LoRA) packed by the feature's strategy on long conversations."""
    case = h.tiny_case("lora", features=(feature,), dataset=DATASET, batch_size=BATCH, num_samples=ROWS,
                       max_length=MAX_LENGTH, max_steps=1)
    rows = h.rows_for(case)
    with h.quiet(), pack_fault(fault):
        built = h.build_trainer(case, out, rows)
    packed = built.trainer.train_dataset
    steps = math.ceil(len(packed) / BATCH)
    built.trainer.args.max_steps = steps  # exactly one epoch: every packed row trained on once
    fed = _record_batches(built.trainer)
    with h.quiet():
        built.trainer.train()
    return PackedRun(strategy=FEATURE[feature].packing_strategy or "bfd",
                     conversations=[prompt_split(built.tokenizer, r)[0] for r in rows],
                     rows=[list(r) for r in packed["input_ids"]],
                     sequences=[s for b in fed for s in _sequences(b)], max_length=MAX_LENGTH, steps=len(fed))


def _unmatched(seen: list[list[int]], expected: list[list[int]]) -> list[str]:
    """Sequences seen that no expected one accounts for, and expected ones never seen (as multisets)."""
    s, e = Counter(map(tuple, seen)), Counter(map(tuple, expected))
    extra = [f"a {len(k)}-token sequence seen that is no expected one" for k in (s - e).elements()]
    lost = [f"a {len(k)}-token expected sequence never seen" for k in (e - s).elements()]
    return extra + lost


def _count(name: str, bad: list, what: str) -> Verdict:
    detail = what + (f": e.g. {'; '.join(str(x) for x in bad[:2])}" if bad else "")
    return RELATIONS[name].measure(len(bad), detail)


def _row_length(run: PackedRun, what: str) -> Verdict:
    long_rows = [f"row {i} of {len(r)} tokens" for i, r in enumerate(run.rows) if len(r) > run.max_length]
    return _count("packing_long.row_length", long_rows, what)


def _tokens(run: PackedRun, expected: int, what: str) -> Verdict:
    got = sum(len(s) for s in run.sequences)
    return RELATIONS["packing_long.tokens"].measure(abs(got - expected), f"{what}: trained on {got}, expected {expected}")


def judge_bfd(run: PackedRun) -> list[Verdict]:
    """bfd: every sequence trained on is the first min(length, max_length) tokens of one conversation."""
    L = run.max_length
    expected = [c[:L] for c in run.conversations]
    what = _what(run)
    return [_count("packing_long.bfd_prefixes", _unmatched(run.sequences, expected), what),
            _tokens(run, sum(min(len(c), L) for c in run.conversations), what), _row_length(run, what)]


def judge_bfd_split(run: PackedRun) -> list[Verdict]:
    """bfd_split: every sequence trained on is one max_length piece of one conversation, each piece once."""
    L = run.max_length
    pieces = [c[k:k + L] for c in run.conversations for k in range(0, len(c), L)]
    what = _what(run)
    return [_count("packing_long.split_pieces", _unmatched(run.sequences, pieces), what),
            _tokens(run, sum(len(c) for c in run.conversations), what), _row_length(run, what)]


def judge_wrapped(run: PackedRun) -> list[Verdict]:
    """wrapped: the rows concatenated are the conversations concatenated, every row but the last max_length
    long, and the run trained on exactly those rows."""
    L = run.max_length
    stream = [t for c in run.conversations for t in c]
    rows = [t for r in run.rows for t in r]
    bad = [f"{abs(len(rows) - len(stream))} tokens more or fewer in the rows than in the conversations"
           ] if len(rows) != len(stream) else []
    first = next((i for i, (a, b) in enumerate(zip(rows, stream)) if a != b), None)
    bad += [f"the rows' stream differs from the conversations' at token {first}"] if first is not None else []
    bad += [f"row {i} holds {len(r)} tokens, not {L}" for i, r in enumerate(run.rows[:-1]) if len(r) != L]
    bad += _unmatched(run.sequences, run.rows)  # what the run trained on is those rows
    ends = set(itertools.accumulate(len(c) for c in run.conversations))
    crossing = sum(1 for k in range(L, len(stream), L) if k not in ends)
    what = _what(run) + f", {crossing} row boundaries cut through a conversation"
    return [_count("packing_long.wrapped_stream", bad, what), _tokens(run, len(stream), what),
            _row_length(run, what)]


def _what(run: PackedRun) -> str:
    over = sum(len(c) > run.max_length for c in run.conversations)
    return (f"{run.strategy}, {len(run.conversations)} conversations ({over} over max_length {run.max_length}), "
            f"{len(run.rows)} packed rows, {len(run.sequences)} sequences over {run.steps} steps")


JUDGES: dict[str, Callable[[PackedRun], list[Verdict]]] = {
    "bfd": judge_bfd, "bfd_split": judge_bfd_split, "wrapped": judge_wrapped}


def measure_long_packing(out: Path, feature: str, fault: Callable | None = None) -> list[Verdict]:
    """The feature's strategy (packing_bfd, packing_split, packing_wrapped) judged by its own promise."""
    run = run_packed(out, feature, fault)
    return JUDGES[run.strategy](run)
