"""Which combinations of the axes exist: an impossible one is refused when the case files load. What
a backend cannot train it says itself, through the Support handed in (suite/matrix/support.py)."""
from __future__ import annotations

from suite.matrix.spec import (
    ADDED_TOKEN_FORMATS,
    ATTENTION,
    CONVERSATIONAL,
    NEW_TOKEN_WAYS,
    DISTRIBUTED,
    EAGER_ONLY_ARCHS,
    GA_STEPS,
    PREFERENCE_FORMATS,
    PROMPT_FORMATS,
    PROMPT_ONLY_FORMATS,
    UNPAIRED_PREFERENCE_FORMATS,
    Case,
)
from suite.matrix.axes import FEATURE
from suite.matrix.support import Support


def validate_combination(case: Case, support: Support) -> str | None:
    """Why a combination of axes cannot exist, or None."""
    attn = [f for f in case.features if f in ATTENTION]
    if len(attn) > 1:
        return f"at most one attention variant, got {' and '.join(attn)}"
    packings = [f.name for f in case.uses.features if f.packs]
    if len(packings) > 1:  # trl packs with one strategy
        return f"at most one packing strategy, got {' and '.join(packings)}"
    if case.model.arch in EAGER_ONLY_ARCHS and case.attention != "eager":
        return (f"{case.model.arch}'s transformers class supports no {case.attention} attention: "
                f"give its cases the eager feature")
    if case.loss == "assistant_only" and case.dataset not in CONVERSATIONAL:
        return f"assistant_only loss needs a conversational format ({', '.join(CONVERSATIONAL)}), not {case.dataset}"
    if case.loss == "completion_only" and case.dataset not in PROMPT_FORMATS:
        return f"completion_only loss needs a prompt-completion format ({', '.join(PROMPT_FORMATS)}), not {case.dataset}"
    if case.trainer not in support.trainers:
        return f"unknown trainer {case.trainer!r}; known: {', '.join(support.trainers)}"
    ways = [f for f in case.features if f in NEW_TOKEN_WAYS]
    if case.dataset in ADDED_TOKEN_FORMATS and (len(ways) != 1 or not case.is_adapter):
        return (f"{case.dataset} adds tokens: an adapter case with exactly one of {', '.join(NEW_TOKEN_WAYS)} "
                f"(how the adapter carries their rows), got {' and '.join(ways) or 'none'} with {case.method}")
    if ways and case.dataset not in ADDED_TOKEN_FORMATS:
        return f"{ways[0]} is how an adapter carries added tokens: it needs {', '.join(ADDED_TOKEN_FORMATS)} data"
    if case.dataset in PREFERENCE_FORMATS + UNPAIRED_PREFERENCE_FORMATS and case.loss != "auto":
        return "a preference format's loss is DPO's (KTO's on unpaired data), on the completions; it takes no loss variant"
    if ("lora_dropout" in case.features) != (case.lora.dropout > 0):
        return ("lora.dropout > 0 and the lora_dropout feature go together (the id must say the adapter trains with "
                f"dropout): got lora.dropout {case.lora.dropout} with features {', '.join(case.features) or 'none'}")
    if "lora_dropout" in case.features and not case.is_adapter:
        return f"lora_dropout is the adapter's dropout: it needs an adapter method, not {case.method}"
    if case.dataset in PROMPT_ONLY_FORMATS and case.loss != "auto":
        return "a prompt-only format's loss is the generating trainer's, on its sampled completions; it takes no loss variant"
    refused = support.cannot_train(case)
    if refused:
        return refused
    dist = [f for f in case.features if f in DISTRIBUTED]
    if len(dist) > 1:
        return f"at most one of {', '.join(DISTRIBUTED)}, got {' and '.join(dist)}"
    if any(FEATURE[f].shards for f in dist) and case.quantization.fsdp:
        return f"{case.method}: {case.quantization.fsdp}"
    if dist and case.dataset in ADDED_TOKEN_FORMATS:
        return f"{case.dataset} resizes the embeddings and saves from one process; it runs on one device"
    if case.uses.by_name and case.dataset in ADDED_TOKEN_FORMATS:
        # trl 1.16 takes added tokens with a path only through chat_template_path (clone_chat_template): another
        # recipe (its own resize, the template's eos), not the suite's added-token path by name (docs/cases.md)
        return (f"{case.dataset} adds tokens: trl takes them with a model path only by cloning a chat template "
                "(chat_template_path), another recipe than the suite's resize; no by_name twin")
    if case.uses.by_name and case.library.needs_gpu:
        return f"by_name is trl's own loading of a path and its tokenizer; {case.library.name} loads the model itself"
    if case.training.max_steps < 2 * case.checks.loss_window:
        return (f"training.max_steps ({case.training.max_steps}) must be at least 2 x checks.loss_window "
                f"({case.checks.loss_window}) for the loss check to compare first and last windows")
    if case.benchmark.warmup_steps >= case.training.max_steps - 1:
        return (f"benchmark.warmup_steps ({case.benchmark.warmup_steps}) leaves no timed step in "
                f"training.max_steps ({case.training.max_steps})")
    if case.training.benchmark_steps < case.training.max_steps:
        return "training.benchmark_steps must be at least training.max_steps"
    for key in ("batch_size", "grad_accum", "max_length", "num_samples", "turns"):
        if getattr(case.training, key) < 1:
            return f"training.{key} must be at least 1"
    if case.checks.eval_falls and not case.training.eval_samples:
        return "checks.eval_falls needs an eval split: set training.eval_samples"
    if "grad_accum" in case.features and case.training.batch_size % GA_STEPS:
        return (f"grad_accum splits training.batch_size into {GA_STEPS} micro-batches: "
                f"{case.training.batch_size} is not a multiple of {GA_STEPS}")
    return None
