"""The trained model's own relations, by the suite's own formulas: a causal LM's per-example loss does not depend
on the padding beside it, and a mixture of experts' auxiliary loss is the load-balancing loss of its router
logits, which are logits. The formulas here (the per-example cross-entropy, the load-balancing loss, the test
for probability rows) are the suite's, shared by the in-process invariants (suite/invariants/losses.py, moe.py,
padding.py) and each causal-LM case's child (`measure`, run as a guarded phase after training by
suite/train/run.py); the judge holds what the child measured to the case's bounds (suite/judge/modeling.py).
Nothing here changes what trains."""
from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

# What each relation must not call to compute what it expects (issue 36): the library code it judges.
# tests/judge/test_oracles.py scans this module for them.
_CROSS_ENTROPY = ("torch.nn.functional.cross_entropy", "transformers.loss.loss_utils.ForCausalLMLoss",
                  "transformers.loss.loss_utils.fixed_cross_entropy",
                  "trl.trainer.utils.selective_log_softmax", "trl.trainer.utils.entropy_from_logits")
_BALANCE = ("transformers.models.mixtral.modeling_mixtral.load_balancing_loss_func",
            "transformers.models.qwen3_moe.modeling_qwen3_moe.load_balancing_loss_func",
            "transformers.models.gpt_oss.modeling_gpt_oss.load_balancing_loss_func")
FORBIDDEN_ORACLES: dict[str, tuple[str, ...]] = {
    "padding_invariance": _CROSS_ENTROPY,
    "moe_aux_by_definition": _BALANCE,
    "router_logits_are_logits": _BALANCE,
}

# Rows of very unequal length (2 to ~50 tokens with EOS): token-level and per-sequence normalisation give
# clearly different losses on them, and the short ones sit beside a lot of padding.
UNEQUAL_ROWS = [
    {"text": "red ."},
    {"text": " ".join(["one two three four five six seven eight nine ."] * 5)},
    {"text": "what colour is the cat ? the cat is red ."},
    {"text": "count from one ? one two three ."},
]


# -- the formulas ------------------------------------------------------------------------------------------

def token_logprobs(logits, labels):
    """log p(label) of every shifted target and the mask of targets that count (label != -100)."""
    import torch

    logits, targets = logits[:, :-1].float(), labels[:, 1:]
    mask = targets != -100
    logp = torch.log_softmax(logits, dim=-1).gather(-1, targets.clamp(min=0).unsqueeze(-1)).squeeze(-1)
    return logp * mask, mask


def per_example_losses(logits, labels) -> list[float]:
    """Mean nll of each row of a padded batch (rows with no target give nan)."""
    logp, mask = token_logprobs(logits, labels)
    return [float(-logp[i].sum() / mask[i].sum()) if mask[i].any() else float("nan") for i in range(len(logp))]


def experts_of(config: Any) -> tuple[int, int] | None:
    """(number of experts, experts per token) as the architecture's config names them (mixtral and gpt_oss say
    num_local_experts, qwen3_moe num_experts); None for a model without a router."""
    experts = getattr(config, "num_local_experts", None) or getattr(config, "num_experts", None)
    if not experts or not getattr(config, "num_experts_per_tok", None):
        return None
    return int(experts), int(config.num_experts_per_tok)


def balance_loss(router_logits, num_experts: int, top_k: int, attention_mask=None, softmaxes: int = 1) -> float:
    """The load-balancing loss by its definition (Switch Transformer, arXiv 2101.03961 eq. 4-6, with Mixtral's
    top-k): num_experts x sum_e f_e x P_e over the rows of every layer, where f_e is the fraction of rows whose
    top-k (by router probability) holds e, summed over the k slots, and P_e the mean router probability of e;
    padding rows (attention mask 0) count in neither. The suite's own arithmetic, in float64. `softmaxes` > 1
    applies the softmax again (what a loss that softmaxes probabilities computes: the judge names that cause)."""
    import torch

    rows = torch.cat([layer.detach().double().reshape(-1, num_experts) for layer in router_logits])
    weight = torch.ones(rows.shape[0], dtype=torch.float64)
    if attention_mask is not None:  # the same [batch x sequence] mask for every layer's rows
        weight = attention_mask.reshape(-1).double().to(rows.device).repeat(len(router_logits))
    weight = weight.to(rows.device)
    probs = rows
    for _ in range(softmaxes):
        probs = probs.exp() / probs.exp().sum(-1, keepdim=True)  # softmax, spelt out
    chosen = probs.argsort(dim=-1, descending=True)[:, :top_k]
    hits = torch.zeros_like(probs).scatter_(1, chosen, 1.0)  # 1 where e is among a row's top-k
    total = weight.sum()
    f = (hits * weight[:, None]).sum(0) / total
    p = (probs * weight[:, None]).sum(0) / total
    return float(num_experts * (f * p).sum())


def probability_rows(router_logits, atol: float = 1e-4) -> list[str]:
    """The layers whose router 'logits' are already probabilities: every row non-negative and summing to 1."""
    out = []
    for i, layer in enumerate(router_logits):
        rows = layer.detach().double()
        if bool((rows >= 0).all()) and float((rows.sum(-1) - 1).abs().max()) <= atol:
            out.append(f"layer {i}")
    return out


# -- what the child measures ----------------------------------------------------------------------------------

@dataclass
class PaddingSeen:
    """Each row's loss (the suite's cross-entropy) alone, right-padded and left-padded in one batch, and in the
    trainer's own collated batch where its collator takes token rows."""
    lengths: list[int]
    alone: list[float]
    right: list[float]
    left: list[float]
    collated: list[float] | None = None
    collated_alone: list[float] | None = None  # each row collated alone by the trainer's collator
    collated_side: str | None = None  # where the trainer's collator padded its shortest row
    labelled_pads: int = 0  # padding positions (attention mask 0) the trainer's collator gave a label
    collator_not_used: str | None = None  # why the trainer's collator was not measured


@dataclass
class MoeSeen:
    """A forward with output_router_logits on the right-padded rows: the model's own auxiliary loss, the suite's
    load-balancing loss of its router logits, and two known wrong readings of it, to name a cause."""
    experts: int
    top_k: int
    layers: int
    tokens: int  # unpadded tokens
    model_aux: float | None  # None: the forward returned no aux_loss
    own_aux: float
    probability_layers: list[str]
    variants: dict[str, float] = field(default_factory=dict)  # what a known wrong reading gives


@dataclass
class ModelRelations:
    dtype: str  # the logits' dtype of the trained model's forward
    device: str
    bits: int | None  # the base's bits per weight (None: not quantized)
    padding: PaddingSeen | None = None
    moe: MoeSeen | None = None

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, doc: dict) -> ModelRelations:
        out = dict(doc)
        out["padding"] = PaddingSeen(**doc["padding"]) if doc.get("padding") else None
        out["moe"] = MoeSeen(**doc["moe"]) if doc.get("moe") else None
        return cls(**out)


def measure(model, tokenizer, collator, bits: int | None) -> ModelRelations:
    """The relations on the trained model (unwrapped), in eval mode, without gradients."""
    import torch

    rows = _token_rows(tokenizer)
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id
    device = next(model.parameters()).device
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad():
            padding, dtype = _padding(model, rows, pad, collator, device)
            moe = _moe(model, rows, pad, device)
    finally:
        model.train(was_training)
    return ModelRelations(dtype=dtype, device=device.type, bits=bits, padding=padding, moe=moe)


def _token_rows(tokenizer) -> list[list[int]]:
    """UNEQUAL_ROWS as token ids, each ending in EOS (as the trainers tokenize text)."""
    out = []
    for row in UNEQUAL_ROWS:
        ids = list(tokenizer(row["text"], add_special_tokens=True)["input_ids"])
        if tokenizer.eos_token_id is not None and (not ids or ids[-1] != tokenizer.eos_token_id):
            ids.append(tokenizer.eos_token_id)
        out.append(ids)
    return out


def padded(rows: list[list[int]], pad_id: int, side: str) -> dict:
    """The rows in one batch padded to the longest on `side`: pad ids, attention 0, label -100. A row's first
    label is no target alone (nothing precedes it); padded left it would be one, predicted from the last pad,
    so it is -100 there: the row's targets are exactly its targets alone."""
    import torch

    width = max(len(r) for r in rows)
    ids, mask, labels = [], [], []
    for r in rows:
        fill = width - len(r)
        row_labels = ([-100] + r[1:]) if side == "left" else list(r)
        if side == "left":
            ids.append([pad_id] * fill + r), mask.append([0] * fill + [1] * len(r))
            labels.append([-100] * fill + row_labels)
        else:
            ids.append(r + [pad_id] * fill), mask.append([1] * len(r) + [0] * fill)
            labels.append(row_labels + [-100] * fill)
    return {"input_ids": torch.tensor(ids), "attention_mask": torch.tensor(mask), "labels": torch.tensor(labels)}


def _losses(model, batch: dict, device) -> tuple[list[float], str]:
    inputs = {k: batch[k].to(device) for k in ("input_ids", "attention_mask") if k in batch}
    logits = model(**inputs).logits
    return per_example_losses(logits.float().cpu(), batch["labels"]), str(logits.dtype).replace("torch.", "")


def _padding(model, rows: list[list[int]], pad: int, collator, device) -> tuple[PaddingSeen, str]:
    alone = [_losses(model, padded([r], pad, "right"), device)[0][0] for r in rows]
    right, dtype = _losses(model, padded(rows, pad, "right"), device)
    left = _losses(model, padded(rows, pad, "left"), device)[0]
    seen = PaddingSeen([len(r) for r in rows], alone, right, left)
    batch, why = _collated(collator, rows)
    if batch is None:
        seen.collator_not_used = why
        return seen, dtype
    one = [_collated(collator, [r])[0] for r in rows]
    seen.collated_side, seen.labelled_pads = _side(batch)
    seen.collated = _losses(model, batch, device)[0]
    seen.collated_alone = [_losses(model, b, device)[0][0] for b in one]
    return seen, dtype


def _collated(collator, rows: list[list[int]]) -> tuple[dict | None, str | None]:
    """The trainer's collator on plain token rows, where it takes them (SFTTrainer's and the plain Trainer's do;
    a preference or generating trainer's collator wants other fields): (batch, None) or (None, why)."""
    try:
        batch = collator([{"input_ids": r} for r in rows])
    except Exception as exc:  # noqa: BLE001 - a collator for other fields: its relation is not measured
        return None, f"the trainer's collator does not take token rows ({type(exc).__name__}: {str(exc)[:120]})"
    if not hasattr(batch, "keys") or "labels" not in batch:
        return None, "the trainer's collator returns no labels for token rows"
    if "position_ids" in batch and "attention_mask" not in batch:
        return None, "the trainer's collator packs its rows without padding (position ids, no attention mask)"
    return dict(batch), None


def _side(batch: dict) -> tuple[str, int]:
    """Where the collator put the padding of its shortest row, and how many padding positions it labelled."""
    mask = batch.get("attention_mask")
    if mask is None or bool(mask.all()):
        return "nothing (no attention mask or no padding)", 0
    labelled = int(((mask == 0) & (batch["labels"] != -100)).sum())
    row = mask[int(mask.sum(-1).argmin())]
    return ("left" if int(row[0]) == 0 else "right"), labelled


def _moe(model, rows: list[list[int]], pad: int, device) -> MoeSeen | None:
    base = model.get_base_model() if hasattr(model, "get_base_model") else model
    counts = experts_of(base.config)
    if counts is None:
        return None
    batch = padded(rows, pad, "right")
    inputs = {k: batch[k].to(device) for k in ("input_ids", "attention_mask")}
    out = model(**inputs, output_router_logits=True)
    logits, mask = out.router_logits, inputs["attention_mask"]
    experts, top_k = counts
    aux = getattr(out, "aux_loss", None)
    variants = {"top 1": balance_loss(logits, experts, 1, mask), "softmax twice": balance_loss(logits, experts, top_k,
                                                                                                mask, softmaxes=2)}
    return MoeSeen(experts, top_k, len(logits), int(mask.sum()), None if aux is None else float(aux),
                   balance_loss(logits, experts, top_k, mask), probability_rows(logits), variants)
