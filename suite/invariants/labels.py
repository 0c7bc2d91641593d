"""Invariants of what the loss is computed on: prompt masks, EOS, packed starts, the logged loss."""
from __future__ import annotations

from pathlib import Path
from typing import Callable

from suite.invariants import harness as h
from suite.invariants.losses import UNEQUAL_ROWS, masked_loss, token_logprobs
from suite.invariants.relations import RELATIONS, NotApplicable, Verdict, compare, count
from suite.matrix.axes import FEATURE, FEATURES, FORMAT
from suite.matrix.spec import CONVERSATIONAL

# The library functions each relation here must not call to compute what it expects (issue 36: a relation
# that calls the function it judges cannot see a change inside it); tests/judge/test_oracles.py scans the
# module for them. An empty tuple: the relation compares two real runs, or the trainer's output with the
# case's own settings, and computes no expected value a library function could supply.
_CROSS_ENTROPY = ("transformers.loss.loss_utils.ForCausalLMLoss", "transformers.loss.loss_utils.fixed_cross_entropy",
                  "trl.trainer.utils.selective_log_softmax")
# the prompt's and the completion's tokens are the tokenizer's chat template's, never trl's rendering of it
_TEMPLATE = ("trl.data_utils.apply_chat_template", "trl.data_utils.maybe_apply_chat_template")
FORBIDDEN_ORACLES: dict[str, tuple[str, ...]] = {
    "prompt_mask.labels": _TEMPLATE,
    "prompt_mask.gradient": (),
    "prompt_mask.loss": _CROSS_ENTROPY + _TEMPLATE,
    "logged_loss": _CROSS_ENTROPY,
    "eos.label_survives": _TEMPLATE,
    "eos.last_token": _TEMPLATE,
    "eos.padding_masked": (),
    "packed_starts.masked": ("trl.data_utils.pack_dataset",),
}

MESSAGES = "messages"  # the column of a conversational row's turns (suite/train/data.py)


def _render(tokenizer, messages: list[dict], generation_prompt: bool = False) -> list[int]:
    text = tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=generation_prompt)
    return tokenizer(text)["input_ids"]


def prompt_split(tokenizer, row: dict) -> tuple[list[int], int]:
    """A row's tokens as a user would write them and how many of them are prompt.

    Independent of trl's own preparation: the prompt is the prompt alone (conversational: the
    turns before the last assistant message, with the generation prompt).
    """
    if MESSAGES in row:
        return _render(tokenizer, row["messages"]), len(_render(tokenizer, row["messages"][:-1], True))
    if isinstance(row["prompt"], list):
        full = _render(tokenizer, row["prompt"] + row["completion"])
        return full, len(_render(tokenizer, row["prompt"], True))
    full = tokenizer(row["prompt"] + row["completion"] + tokenizer.eos_token)["input_ids"]
    return full, len(tokenizer(row["prompt"])["input_ids"])


def _expected_labels(batch: dict, splits: dict[tuple, int]):
    """Labels the batch should carry (prompt and padding -100) and the rows that match no example."""
    import torch

    expected = torch.full_like(batch["labels"], -100)
    unknown = []
    for r in range(len(expected)):
        n = int(batch["attention_mask"][r].sum())
        ids = tuple(batch["input_ids"][r, :n].tolist())
        if ids not in splits:
            unknown.append(f"row {r} matches no tokenised example")
            continue
        expected[r, splits[ids]:n] = batch["input_ids"][r, splits[ids]:n]
    return expected, unknown


def _backbone_grads(trainer, batch: dict):
    """trl's loss on the batch, and its gradient at the backbone's output (the input of the LM head)."""
    model = trainer.model
    base = model.get_base_model() if hasattr(model, "get_base_model") else model
    seen = {}

    def keep(module, inputs, output):
        hidden = output.last_hidden_state
        hidden.retain_grad()
        seen["hidden"] = hidden

    handle = _decoder_stack(base).register_forward_hook(keep)
    try:
        model.train()
        loss = trainer.compute_loss(model, trainer._prepare_inputs(dict(batch)))
        loss.backward()
    finally:
        handle.remove()
    return float(loss.detach()), seen["hidden"].grad


def _decoder_stack(causal_lm):
    """The causal LM's decoder stack (what outputs last_hidden_state). Its base_model, but transformers 4.x's Gemma 3
    names its base_model_prefix "language_model" and keeps the stack as .model, so base_model is the causal LM
    itself (whose hooks peft's forward bypasses), and 4.x's get_decoder() gives None for Llama."""
    for candidate in (causal_lm.base_model, getattr(causal_lm, "model", None)):
        if candidate is not None and candidate is not causal_lm:
            return candidate
    raise NotApplicable(f"{type(causal_lm).__name__} shows no decoder stack (base_model, .model) to read the "
                        f"hidden states' gradient at")


def measure_prompt_mask(dataset: str, loss: str, out: Path, *, collator_wrapper: Callable | None = None,
                        arch: str = "llama", template: Callable[[str], str] | None = None) -> list[Verdict]:
    """Completion-only / assistant-only loss: labels, gradients and the loss value of one batch, on the tiny
    model of `arch` with its family's chat template; `template(text)` may rewrite that template (a fault)."""
    case = h.tiny_case("lora", dataset=dataset, loss=loss, batch_size=8, num_samples=16, arch=arch)
    tokenizer = None
    if template is not None:
        h.require_expressible(case)  # before the tiny model is built, which a release without its class cannot
        tokenizer = h.tokenizer_for(case)
        tokenizer.chat_template = template(tokenizer.chat_template)
    built = h.build_trainer(case, out, tokenizer=tokenizer)
    trainer = built.trainer
    if collator_wrapper is not None:
        trainer.data_collator = collator_wrapper(trainer.data_collator)
    splits = {tuple(ids): n for ids, n in (prompt_split(built.tokenizer, r) for r in h.rows_for(case))}
    batch = h.first_batches(trainer)[0]
    expected, unknown = _expected_labels(batch, splits)
    wrong = (batch["labels"] != expected).nonzero().tolist()
    what = f"{case.id}, {len(batch['labels'])} rows"
    trl_loss, grad = _backbone_grads(trainer, batch)
    # position i predicts token i+1: it must get no gradient when token i+1 is prompt or padding
    no_target = (expected[:, 1:] == -100)
    prompt_grad = float(grad[:, :-1][no_target].abs().max()) if no_target.any() else 0.0
    hand = masked_loss(h.plain_logits(trainer.model, batch), expected) + router_share(trainer.model, batch)
    return [count("prompt_mask.labels", unknown + [f"row {r} position {i}" for r, i in wrong], what),
            RELATIONS["prompt_mask.gradient"].measure(prompt_grad, what),
            compare("prompt_mask.loss", trl_loss, hand, what)]


def router_share(model, batch: dict) -> float:
    """What a mixture of experts adds to its loss beside the cross-entropy: router_aux_loss_coef x the router's
    load-balancing loss of the batch, by the suite's own formula (suite/train/modeling.py); 0 without a router."""
    from suite.train.modeling import balance_loss, experts_of

    base = model.get_base_model() if hasattr(model, "get_base_model") else model
    counts = experts_of(base.config)
    if counts is None or not getattr(base.config, "output_router_logits", False):
        return 0.0
    import torch

    inputs = {k: batch[k] for k in ("input_ids", "attention_mask") if k in batch}
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad():
            router_logits = model(**inputs, output_router_logits=True).router_logits
    finally:
        model.train(was_training)
    return float(base.config.router_aux_loss_coef) * balance_loss(router_logits, *counts, inputs.get("attention_mask"))


def labels_everywhere(collator):
    """A collator that trains on every real token (leaves the prompt's labels in place)."""
    def collate(examples):
        batch = dict(collator(examples))
        batch["labels"] = batch["input_ids"].masked_fill(batch["attention_mask"] == 0, -100)
        return batch

    return collate


# ----------------------------------------------------------------------------------------- EOS

def stop_token_id(tokenizer, conversational: bool) -> int:
    """EOS for plain text; for chat data, the token the template ends an assistant turn with."""
    if not conversational:
        return tokenizer.eos_token_id
    return _render(tokenizer, [{"role": "user", "content": "x"}, {"role": "assistant", "content": "y"}])[-1]


def measure_eos(dataset: str, out: Path, *, pad_is_eos: bool = False, collator_wrapper: Callable | None = None,
                pretokenised: bool = False) -> list[Verdict]:
    """Every prepared example ends with the stop token, whose label survives collation; padding is -100.

    pretokenised: hand trl rows already tokenised by the caller (who forgot EOS); trl then adds none.
    """
    case = h.tiny_case("lora", dataset=dataset, num_samples=16)
    tokenizer = h.tokenizer_for(case)
    if pad_is_eos:
        tokenizer.pad_token = tokenizer.eos_token
    rows = None
    if pretokenised:
        if not FORMAT[dataset].plain:
            raise ValueError("pretokenised rows are built from the text format only")
        rows = [{"input_ids": tokenizer(r["text"])["input_ids"]} for r in h.rows_for(case)]
    built = h.build_trainer(case, out, rows, tokenizer=tokenizer)
    trainer = built.trainer
    if collator_wrapper is not None:
        trainer.data_collator = collator_wrapper(trainer.data_collator)
    stop = stop_token_id(tokenizer, dataset in CONVERSATIONAL)
    # trl before 0.2x's label-in-dataset preparation (0.20) leaves labels to the collator, which copies
    # input_ids: a prepared row without labels is labelled by its own ids
    prepared = [{k: r[k] for k in ("input_ids", "labels") if k in r} for r in trainer.train_dataset]
    rows = [{"input_ids": r["input_ids"], "labels": r.get("labels", r["input_ids"])} for r in prepared]
    no_stop = [i for i, r in enumerate(rows) if r["input_ids"][-1] != stop]
    batch = trainer.data_collator(prepared[:8])
    lost, padded = [], []
    for i, r in enumerate(rows[:8]):
        n = len(r["input_ids"])
        if r["labels"][-1] != stop or int(batch["labels"][i, n - 1]) != stop:
            lost.append(f"row {i}")
        padded += [f"row {i} position {j}" for j in range(n, batch["labels"].shape[1])
                   if int(batch["labels"][i, j]) != -100]
    what = (f"{case.id}, stop token {tokenizer.convert_ids_to_tokens(stop)!r}"
            f"{', pad == eos' if tokenizer.pad_token_id == tokenizer.eos_token_id else ''}")
    return [count("eos.last_token", [f"row {i}" for i in no_stop], f"{what}, {len(rows)} examples"),
            count("eos.label_survives", lost, what), count("eos.padding_masked", padded, what)]


def mask_pad_ids(collator, pad_token_id: int):
    """transformers' classic causal-LM collation: labels are -100 wherever input_ids == pad_token_id."""
    def collate(examples):
        batch = dict(collator(examples))
        batch["labels"] = batch["labels"].masked_fill(batch["input_ids"] == pad_token_id, -100)
        return batch

    return collate


def pad_labels_with_pad_id(collator, pad_token_id: int):
    """A collator that pads labels with the pad id instead of -100 (padding then trains)."""
    def collate(examples):
        batch = dict(collator(examples))
        batch["labels"] = batch["labels"].masked_fill(batch["attention_mask"] == 0, pad_token_id)
        return batch

    return collate


# ------------------------------------------------------------------------ padding-free starts

def measure_packed_starts(mode: str, out: Path, *, collator_wrapper: Callable | None = None,
                          arch: str = "llama") -> Verdict:
    """In padding-free batches (packing, or padding_free alone) every sequence start is label -100."""
    if mode in FEATURES and FEATURE[mode].packs:  # the feature that packs
        case = h.tiny_case("lora", features=(mode,), batch_size=2, arch=arch)
    elif mode == "padding_free":
        case = h.tiny_case("lora", extra={"padding_free": True, "max_length": None}, arch=arch)
    else:
        raise ValueError(f"mode must be packing or padding_free, got {mode!r}")
    trainer = h.build_trainer(case, out).trainer
    if collator_wrapper is not None:
        trainer.data_collator = collator_wrapper(trainer.data_collator)
    bad, starts = [], 0
    for b, batch in enumerate(h.first_batches(trainer, 3)):
        require_position_ids(batch, mode)
        at_start = batch["position_ids"] == 0
        starts += int(at_start.sum())
        bad += [f"batch {b} position {int(i)}" for i in (at_start & (batch["labels"] != -100)).nonzero()[:, 1]]
    if starts < 6:
        raise RuntimeError(f"{mode}: only {starts} sequence starts in 3 batches; the relation would be vacuous")
    return count("packed_starts.masked", bad, f"{mode}, {starts} sequence starts in 3 batches"
                 + (f", {arch}" if arch != "llama" else ""))


def require_position_ids(batch: dict, what: str) -> None:
    """Sequence starts are read from position_ids; a trl whose collator gives none (trl 0.20's packing
    concatenates examples without them) cannot express the relation."""
    if "position_ids" not in batch:
        raise NotApplicable(f"{what}: the installed trl's batches carry no position_ids (keys: "
                            f"{', '.join(sorted(batch))}), so sequence starts cannot be told apart")


def label_sequence_starts(collator):
    """A padding-free collator that lets each sequence's first token be the previous one's target."""
    def collate(examples):
        batch = dict(collator(examples))
        require_position_ids(batch, "labelled sequence starts")
        start = batch["position_ids"] == 0
        start[:, 0] = False  # the row's first token is never a target anyway
        batch["labels"] = batch["labels"].masked_scatter(start, batch["input_ids"][start])
        return batch

    return collate


# --------------------------------------------------------------------------------- logged loss

def measure_logged_loss(method: str, loss_type: str | None, out: Path, *, trainer_cls=None,
                        arch: str = "llama") -> Verdict:
    """The first logged loss against the hand-computed loss of the batch the model was fed; loss_type
    None: a trl whose SFTConfig has no loss_type (nll, and nothing passed). A mixture of experts adds its
    router's loss (suite/invariants/moe.py's measure_aux_counted_once holds that sum)."""
    case = h.tiny_case(method, batch_size=len(UNEQUAL_ROWS), num_samples=len(UNEQUAL_ROWS), max_steps=1,
                       max_length=128, extra={"loss_type": loss_type} if loss_type is not None else None, arch=arch)
    built = h.build_trainer(case, out, UNEQUAL_ROWS, trainer_cls=trainer_cls)
    logged, fed = h.train_first_step(built)
    hand = masked_loss(h.plain_logits(built.trainer.model, fed), fed["labels"], loss_type or "nll")
    n = int((fed["labels"][:, 1:] != -100).sum())
    return compare("logged_loss", logged[0], hand, f"{method}, loss_type {loss_type}, {n} target tokens"
                   + (f", {arch}" if arch != "llama" else ""))


def per_sequence_mean_trainer():
    """A trainer whose loss is the mean over sequences of each sequence's mean (not a token mean)."""
    from trl import SFTTrainer

    class PerSequenceMean(SFTTrainer):
        def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
            logits = model(input_ids=inputs["input_ids"], attention_mask=inputs.get("attention_mask")).logits
            logp, mask = token_logprobs(logits, inputs["labels"])
            return (-logp.sum(1) / mask.sum(1).clamp(min=1)).mean()

    return PerSequenceMean
