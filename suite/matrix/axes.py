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


@dataclass(frozen=True)
class Package:
    """A package a value needs installed: what imports it and what installs it."""

    module: str
    pip: str


@dataclass(frozen=True)
class Feature:
    """A training feature: what it asks of the machine and what it sets in the trainer's arguments (every
    other module asks these, never the name)."""

    name: str
    gpu_for: str | None = None  # why a case with it needs a CUDA GPU (its kernels), or None
    package: Package | None = None  # what it needs installed
    attention: str | None = None  # the attn_implementation it selects
    launch: str | None = None  # data-parallel: the `accelerate launch` switch of its WORLD_SIZE ranks
    shards: bool = False  # data-parallel with parameters sharded across the ranks (fsdp)
    micro_batches: int = 1  # each batch reached in this many micro-batches (gradient accumulation)
    optim: str | None = None  # the optimizer it selects
    packs: bool = False  # sequences packed into each row (trl's packing)
    noise: bool = False  # NEFTune noise on the input embeddings (training.neftune_alpha)
    checkpointing: bool = False  # gradient checkpointing
    own_kernels: bool = False  # it patches the model with its own kernels (trainer argument use_liger_kernel)
    adapter_dropout: bool = False  # the adapter trains with dropout on its input (lora.dropout > 0)
    whole_embeddings: bool = False  # added tokens carried as whole embedding and head matrices (modules_to_save)
    version_need: str | None = None  # what suite.train.compat must find in the installed versions
    cpu_need: str | None = None  # what suite.train.compat must find when it runs without CUDA
    # trl's SFTConfig.packing_strategy it asks for (None: trl's default, "bfd", which `packing` trains with)
    packing_strategy: str | None = None
    # one of the options people set, in the covering design of issue 37: its cases carry the `options` marker
    sets_option: bool = False
    fsdp_version: int = 1  # sharded: 1 FullyShardedDataParallel, 2 torch's fully_shard (FSDPModule)
    # sharded by the suite itself (suite/train/wrapped.py `shard`) on WORLD_SIZE gloo CPU ranks: accelerate
    # 1.15 will not shard without CUDA (it trains with DDP), so the child calls fully_shard before training
    suite_shards: bool = False
    # The trainer is given the model by its path and no processing_class: trl loads the model (the reward
    # model's score head included) and the tokenizer from the directory itself, as users write it.
    by_name: bool = False
    # DeepSpeed ZeRO at this stage (2: optimizer state and gradients partitioned, 3: the parameters too), asked
    # through the trainer's `deepspeed` argument (a config dict) on WORLD_SIZE gloo CPU ranks: accelerate builds
    # the DeepSpeedEngine, and the strategy check holds the engine's own stage to this one
    zero_stage: int | None = None

    @property
    def distributed(self) -> bool:
        return self.launch is not None

    @property
    def wrapper(self) -> str | None:
        """Data-parallel: the wrapper that must have trained the model, as suite/train/wrapped.py names what it
        finds (the strategy check, suite/judge/strategy.py, fails a case whose launcher fell back to another)."""
        if not self.distributed:
            return None
        if self.zero_stage is not None:
            return "DeepSpeedEngine"
        if not self.shards:
            return "DistributedDataParallel"
        return "FSDPModule" if self.fsdp_version == 2 else "FullyShardedDataParallel"

    @property
    def needs_gpus(self) -> bool:
        """Data-parallel over WORLD_SIZE CUDA GPUs (the rows the suite shards itself and ZeRO's run on CPU ranks)."""
        return self.distributed and not self.cpu_ranks

    @property
    def cpu_ranks(self) -> bool:
        """Its WORLD_SIZE ranks are gloo CPU processes, whatever GPUs the machine has (fully_shard, zero2, zero3)."""
        return self.suite_shards or self.zero_stage is not None


# Data-parallel features: the case is launched as WORLD_SIZE processes (suite/run/distributed.py).
WORLD_SIZE = 2
# grad_accum: the case's batch reached in this many micro-batches (per-device batch / GA_STEPS,
# accumulation x GA_STEPS), so the matrix itself trains through gradient accumulation.
GA_STEPS = 4
DEFAULT_ATTENTION = "sdpa"  # the attn_implementation of a case without an attention feature
# Canonical order: ids list features in this order whatever the case file says.
FEATURE: dict[str, Feature] = {f.name: f for f in (
    Feature("packing", packs=True, version_need="packing_bfd"),
    Feature("neftune", noise=True, version_need="neftune"),
    # lora_dropout: the adapter trains with dropout on its input (lora.dropout > 0, PEFT's example 0.05, the
    # Handbook's 0.1), on in training, off in evaluation and after reload; every other adapter case trains at 0.
    Feature("lora_dropout", adapter_dropout=True),
    Feature("gradient_checkpointing", checkpointing=True),
    Feature("grad_accum", micro_batches=GA_STEPS),
    # bitsandbytes' 8-bit AdamW, as the LLM Engineers Handbook's recipes train
    Feature("adamw_8bit", optim="adamw_8bit", package=Package("bitsandbytes", "bitsandbytes"),
            cpu_need="optimizer_8bit_cpu"),
    Feature("liger", gpu_for="Liger's Triton kernels", package=Package("liger_kernel", "liger-kernel"),
            own_kernels=True),
    # How an adapter carries the rows of tokens a chat format added (chatml): the whole embedding and head
    # matrices (peft's modules_to_save), or only the new rows (peft's trainable_token_indices).
    Feature("modules_to_save", whole_embeddings=True),
    Feature("trainable_tokens"),
    Feature("flash_attn", gpu_for="flash-attention 2", package=Package("flash_attn", "flash-attn"),
            attention="flash_attention_2"),
    Feature("sdpa", attention="sdpa"),
    Feature("eager", attention="eager"),
    Feature("ddp", launch="--multi_gpu"),
    Feature("fsdp", launch="--use_fsdp", shards=True),
    # trl's packing strategies named (issue 37), for conversations longer than max_length (long_messages):
    # best-fit decreasing that truncates each overflowing sequence (trl's default), the same splitting the
    # overflow into further sequences (trl 1.0's bfd_split, 0.29's bfd-requeue), and concatenation cut into
    # max_length chunks with no boundaries (wrapped). Last in the canonical order: earlier ids stay as they are.
    Feature("packing_bfd", packs=True, version_need="packing_bfd", packing_strategy="bfd", sets_option=True),
    Feature("packing_split", packs=True, version_need="packing_bfd_split", packing_strategy="bfd_split",
            sets_option=True),
    Feature("packing_wrapped", packs=True, version_need="packing_bfd", packing_strategy="wrapped", sets_option=True),
    # FSDP2: accelerate's (`--fsdp_version 2`, on GPUs), and the suite's own fully_shard on gloo CPU ranks
    Feature("fsdp2", launch="--use_fsdp", shards=True, fsdp_version=2),
    Feature("fully_shard", launch="--multi_gpu", shards=True, fsdp_version=2, suite_shards=True),
    # by_name: the model and tokenizer given by their directory (cases/byname.yaml, suite/invariants/byname.py)
    Feature("by_name", by_name=True),
    # DeepSpeed ZeRO-2 and ZeRO-3 on 2 gloo CPU ranks through the trainer's `deepspeed` config (cases/deepspeed.yaml);
    # launched as the ddp rows are (accelerate's MULTI_CPU, which the Trainer's DeepSpeed config turns into DeepSpeed)
    Feature("zero2", launch="--multi_gpu", package=Package("deepspeed", "deepspeed"), zero_stage=2,
            cpu_need="cxx_compiler"),
    Feature("zero3", launch="--multi_gpu", package=Package("deepspeed", "deepspeed"), zero_stage=3,
            cpu_need="cxx_compiler"),
)}
FEATURES = tuple(FEATURE)
NEW_TOKEN_WAYS = ("modules_to_save", "trainable_tokens")
ATTENTION = {f.name: f.attention for f in FEATURE.values() if f.attention}
DISTRIBUTED = tuple(f.name for f in FEATURE.values() if f.distributed)
PACKING_STRATEGIES = tuple(f.name for f in FEATURE.values() if f.packing_strategy)


@dataclass(frozen=True)
class FeatureSet:
    """A case's features, asked as one: what any of them sets."""

    features: tuple[Feature, ...]

    @classmethod
    def of(cls, names: tuple[str, ...]) -> FeatureSet:
        """The named features in canonical order (the first attention feature in it wins, as ids list them)."""
        return cls(tuple(sorted((FEATURE[n] for n in names), key=lambda f: FEATURES.index(f.name))))

    def _any(self, flag: str) -> bool:
        return any(getattr(f, flag) for f in self.features)

    packs = property(lambda self: self._any("packs"))
    noise = property(lambda self: self._any("noise"))
    checkpointing = property(lambda self: self._any("checkpointing"))
    own_kernels = property(lambda self: self._any("own_kernels"))
    adapter_dropout = property(lambda self: self._any("adapter_dropout"))
    whole_embeddings = property(lambda self: self._any("whole_embeddings"))
    by_name = property(lambda self: self._any("by_name"))

    sets_option = property(lambda self: self._any("sets_option"))

    @property
    def packing_strategy(self) -> str | None:
        return next((f.packing_strategy for f in self.features if f.packing_strategy), None)

    @property
    def micro_batches(self) -> int:
        return max((f.micro_batches for f in self.features), default=1)

    @property
    def optim(self) -> str | None:
        return next((f.optim for f in self.features if f.optim), None)

    @property
    def attention(self) -> str:
        return next((f.attention for f in self.features if f.attention), DEFAULT_ATTENTION)

    @property
    def distributed(self) -> Feature | None:
        return next((f for f in self.features if f.distributed), None)

    @property
    def zero_stage(self) -> int | None:
        return next((f.zero_stage for f in self.features if f.zero_stage is not None), None)

    @property
    def gpu_for(self) -> list[str]:
        return [f.gpu_for for f in self.features if f.gpu_for]

    @property
    def packages(self) -> list[Package]:
        return [f.package for f in self.features if f.package]

    @property
    def version_needs(self) -> list[str]:
        return [f.version_need for f in self.features if f.version_need]

    @property
    def cpu_needs(self) -> list[str]:
        return [f.cpu_need for f in self.features if f.cpu_need]


@dataclass(frozen=True)
class Size:
    """A model size: whether the suite builds it itself and what it asks of the machine."""

    name: str
    built: bool = False  # built from a config by suite/train/models.py (the tiny models): reproducible anywhere
    gpu_for: str | None = None  # why a case of this size needs a CUDA GPU
    markers: tuple[str, ...] = ()  # markers beyond its name


SIZE: dict[str, Size] = {s.name: s for s in (
    Size("tiny", built=True),
    Size("7b", gpu_for="a 7B model", markers=("large",)),
    # The families of the end of 2026 at the size people fine-tune (3B to 31B parameters: cases/large.yaml, each
    # model's count in docs/gpu.md). A size of its own, not `7b`: the 7B rows' fingerprints hash their size's
    # name and stay as they are; both carry the `large` marker, and `-m 7b` still selects the 7B rows alone.
    Size("large", gpu_for="a full-size model, 3B to 31B parameters"),
)}
SIZES = tuple(SIZE)
# The tiny architectures suite/train/models.py builds from a config (a test checks the two agree).
TINY_ARCHS = ("llama", "qwen2", "mistral", "mixtral",
              # the families of the end of 2026 (suite/train/models.py says what each exercises)
              "llama3", "qwen3", "qwen3_moe", "qwen3_5", "gemma3", "gemma4", "phi4_mini", "gpt_oss", "smollm3",
              # llama with sampling settings in its generation_config.json (what trl must override)
              "llama_sampling")
# The transformers model_type of each family of TINY_ARCHS: a full-size model from a config names its family
# (`arch: gemma3` for a gemma3_text config) and the loader checks the two agree (a test checks these against
# suite/train/models.py's tiny models).
FAMILY_MODEL_TYPE = {"llama": "llama", "qwen2": "qwen2", "mistral": "mistral", "mixtral": "mixtral", "llama3": "llama",
                     "qwen3": "qwen3", "qwen3_moe": "qwen3_moe", "qwen3_5": "qwen3_5_text", "gemma3": "gemma3_text",
                     "gemma4": "gemma4_text", "phi4_mini": "phi3", "gpt_oss": "gpt_oss", "smollm3": "smollm3",
                     "llama_sampling": "llama"}
# Mixture-of-experts architectures (tiny, or 7B-shaped from a config): their cases carry the `moe` marker
# and their router's load-balancing loss is part of the training loss (docs/cases.md, "Mixture of experts").
MOE_ARCHS = ("mixtral", "olmoe", "qwen3_moe", "gpt_oss")
# Architectures whose transformers class supports no SDPA: their cases name the eager feature.
EAGER_ONLY_ARCHS = ("gpt_oss",)


def arch_features(arch: str | None) -> tuple[str, ...]:
    """The features every case of an architecture must name (eager attention where its class has no SDPA)."""
    return ("eager",) if arch in EAGER_ONLY_ARCHS else ()


@dataclass(frozen=True)
class Loss:
    """Which tokens the loss is computed on, and the trainer argument that says so."""

    name: str
    on_completion: bool = False  # the completion's tokens only (SFTConfig's completion_only_loss)
    assistant_turns: bool = False  # the assistant turns' tokens only (SFTConfig's assistant_only_loss)

    @property
    def masks(self) -> bool:
        """It leaves some tokens out (a marker of its own)."""
        return self.on_completion or self.assistant_turns


LOSS: dict[str, Loss] = {lo.name: lo for lo in (
    Loss("auto"),  # the format's own (Format.loss)
    Loss("full"),
    Loss("completion_only", on_completion=True),
    Loss("assistant_only", assistant_turns=True),
)}
LOSSES = tuple(LOSS)
AUTO_LOSS = LOSS["auto"]


@dataclass(frozen=True)
class Format:
    """A dataset format suite/train/data.py generates: its shape and the loss it implies."""

    name: str
    loss: str = "full"  # the effective loss of `loss: auto`
    conversational: bool = False
    prompt: bool = False  # trl's prompt-completion shape (a completion-only loss can apply)
    preference: bool = False  # paired: prompt, chosen, rejected
    unpaired: bool = False  # unpaired preference: prompt, completion, label (KTO's)
    generates: bool = False  # prompt only: the trainer samples its completions (GRPO, RLOO)
    adds_tokens: bool = False  # its chat template adds tokens to the vocabulary
    plain: bool = False  # rows of raw text, no template
    # conversations of 1 to this many question/answer turns each (0: `training.turns` for every row): lengths
    # spread across max_length, so that some conversations exceed it (packing on long data, issue 37)
    varied_turns: int = 0


# trl's standard and conversational formats, its preference formats (prompt, chosen, rejected) and chatml, a
# conversational format whose template adds tokens. DPO's log-probabilities are the completions' (chosen and
# rejected) only, KTO's the completion's, GRPO's and RLOO's the sampled completions'.
FORMAT: dict[str, Format] = {f.name: f for f in (
    Format("text", plain=True),
    Format("messages", conversational=True),
    Format("prompt_completion", loss="completion_only", prompt=True),
    Format("conversational_pc", loss="completion_only", prompt=True, conversational=True),
    Format("preference", loss="completion_only", preference=True),
    Format("conversational_preference", loss="completion_only", preference=True, conversational=True),
    Format("chatml", conversational=True, adds_tokens=True),
    Format("unpaired_preference", loss="completion_only", unpaired=True),  # trl's unpaired format, KTO's
    Format("prompt_only", loss="completion_only", generates=True),  # the generating trainers' (GRPO, RLOO)
    # messages rows of 1 to 8 turns: about 14 tokens a turn on the tiny tokenizer, so from ~15 to ~120 tokens,
    # half of them over the tiny cases' max_length of 64 (suite/invariants/packing_long.py measures it)
    Format("long_messages", conversational=True, varied_turns=8),
)}
FORMATS = tuple(FORMAT)
PREFERENCE_FORMATS = tuple(f.name for f in FORMAT.values() if f.preference)
UNPAIRED_PREFERENCE_FORMATS = tuple(f.name for f in FORMAT.values() if f.unpaired)
PROMPT_ONLY_FORMATS = tuple(f.name for f in FORMAT.values() if f.generates)
PROMPT_FORMATS = tuple(f.name for f in FORMAT.values() if f.prompt)
CONVERSATIONAL = tuple(f.name for f in FORMAT.values() if f.conversational)
ADDED_TOKEN_FORMATS = tuple(f.name for f in FORMAT.values() if f.adds_tokens)
MODES = ("regression", "benchmark")
