"""The matrix's axes: each a small declared type with its values, markers and id part.

The matrix owns this vocabulary; the training side (`suite/train/`) imports it and declares what each
backend and each quantization supports against it. Nothing here imports `suite.train`. Trainers are
the one axis whose values the backends bring (a new trainer is a backend module and a registry line):
the matrix sees them through `Support` (suite/matrix/support.py), handed to the loader.
"""
from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Adapter:
    """What training updates: every weight (full) or a peft adapter beside a frozen base."""

    name: str
    is_adapter: bool


@dataclass(frozen=True)
class Quantization:
    """How the frozen base is stored while it trains (suite/train/quantize.py holds what each does)."""

    name: str
    bits: int | None  # bits per base weight; None: the training dtype
    description: str
    fsdp: str | None = None  # why fsdp cannot shard such a base (None: it can)


@dataclass(frozen=True)
class Library:
    """Whose code loads the model and wraps the adapter."""

    name: str
    label: str  # how a side-by-side names it next to another library ("HF", "unsloth")
    needs_gpu: bool = False  # its kernels need CUDA


@dataclass(frozen=True)
class Method:
    """A named adapter x quantization x library: the id part and marker case files and ids use.

    Ids and fingerprints predate the split into three axes and name the combination (`qlora` is LoRA
    on a bitsandbytes 4-bit base through transformers), so the name maps to the three and back."""

    name: str
    adapter: Adapter
    quantization: Quantization
    library: Library
    description: str
    steps_from: str | None = None  # the method one change away, what a side-by-side compares it with

    def axes(self) -> dict:
        """The Case fields this method sets."""
        return {"adapter": self.adapter, "quantization": self.quantization, "library": self.library}


FULL = Adapter("full", is_adapter=False)
LORA = Adapter("lora", is_adapter=True)
ADAPTERS = (FULL, LORA)

NO_QUANTIZATION = Quantization("unquantized", None, "the base in the training dtype")
BNB_4BIT = Quantization("bnb_4bit", 4, "bitsandbytes NF4 with double quantization (QLoRA)",
                        fsdp="fsdp with a 4-bit base needs bnb_4bit_quant_storage set to the compute dtype, which "
                             "the suite does not set")
BNB_8BIT = Quantization("bnb_8bit", 8, "bitsandbytes LLM.int8", fsdp="fsdp cannot shard bitsandbytes' 8-bit weights")
QUANTIZATIONS = (NO_QUANTIZATION, BNB_4BIT, BNB_8BIT)

TRANSFORMERS = Library("transformers", "HF")
UNSLOTH = Library("unsloth", "unsloth", needs_gpu=True)
LIBRARIES = (TRANSFORMERS, UNSLOTH)

METHODS: dict[str, Method] = {m.name: m for m in (
    Method("full", FULL, NO_QUANTIZATION, TRANSFORMERS, "full fine-tune"),
    Method("lora", LORA, NO_QUANTIZATION, TRANSFORMERS, "LoRA", steps_from="full"),
    Method("qlora", LORA, BNB_4BIT, TRANSFORMERS, "LoRA on a 4-bit base", steps_from="lora"),
    Method("lora_8bit", LORA, BNB_8BIT, TRANSFORMERS, "LoRA on an 8-bit base", steps_from="lora"),
    Method("unsloth", LORA, BNB_4BIT, UNSLOTH, "unsloth's QLoRA", steps_from="qlora"),
)}
ADAPTER_METHODS = tuple(m.name for m in METHODS.values() if m.adapter.is_adapter)


def method_of(adapter: Adapter, quantization: Quantization, library: Library) -> Method:
    """The named method of three axis values (KeyError when the matrix declares none)."""
    for method in METHODS.values():
        if (method.adapter, method.quantization, method.library) == (adapter, quantization, library):
            return method
    raise KeyError(f"no method is {adapter.name} on a {quantization.name} base through {library.name}")


# Canonical order: ids list features in this order whatever the case file says.
FEATURES = ("packing", "neftune", "lora_dropout", "gradient_checkpointing", "grad_accum", "adamw_8bit", "liger",
            "modules_to_save", "trainable_tokens", "flash_attn", "sdpa", "eager", "ddp", "fsdp")
# lora_dropout: the adapter trains with dropout on its input (lora.dropout > 0, PEFT's example 0.05, the
# Handbook's 0.1), on in training, off in evaluation and after reload; every other adapter case trains at 0.
# How an adapter carries the rows of tokens a chat format added (chatml): the whole embedding and head
# matrices (peft's modules_to_save), or only the new rows (peft's trainable_token_indices).
NEW_TOKEN_WAYS = ("modules_to_save", "trainable_tokens")
ATTENTION = {"flash_attn": "flash_attention_2", "sdpa": "sdpa", "eager": "eager"}
# Data-parallel features: the case is launched as WORLD_SIZE processes (suite/run/distributed.py).
DISTRIBUTED = ("ddp", "fsdp")
WORLD_SIZE = 2
# grad_accum: the case's batch reached in this many micro-batches (per-device batch / GA_STEPS,
# accumulation x GA_STEPS), so the matrix itself trains through gradient accumulation.
GA_STEPS = 4

SIZES = ("tiny", "7b")
# The tiny architectures suite/train/models.py builds from a config (a test checks the two agree).
TINY_ARCHS = ("llama", "qwen2", "mistral", "mixtral")
# Mixture-of-experts architectures (tiny, or 7B-shaped from a config): their cases carry the `moe` marker
# and their router's load-balancing loss is part of the training loss (docs/cases.md, "Mixture of experts").
MOE_ARCHS = ("mixtral", "olmoe")

# Dataset formats suite/train/data.py generates: trl's standard and conversational formats, its preference
# formats (prompt, chosen, rejected) and chatml, a conversational format whose template adds tokens.
FORMATS = ("text", "messages", "prompt_completion", "conversational_pc", "preference", "conversational_preference",
           "chatml", "unpaired_preference", "prompt_only")
PREFERENCE_FORMATS = ("preference", "conversational_preference")
# trl's unpaired preference format (prompt, completion, label: desirable or not), KTO's
UNPAIRED_PREFERENCE_FORMATS = ("unpaired_preference",)
# trl's prompt-only format (a prompt, no completion): the generating trainers' (GRPO, RLOO), which sample
# their completions and score them with reward functions
PROMPT_ONLY_FORMATS = ("prompt_only",)
PROMPT_FORMATS = ("prompt_completion", "conversational_pc")
CONVERSATIONAL = ("messages", "conversational_pc", "conversational_preference", "chatml")
ADDED_TOKEN_FORMATS = ("chatml",)  # formats whose chat template adds tokens to the vocabulary
LOSSES = ("auto", "full", "completion_only", "assistant_only")
MODES = ("regression", "benchmark")
