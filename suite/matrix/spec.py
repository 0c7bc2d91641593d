"""A case: model x method x features x dataset (format and loss) plus training settings, as frozen
dataclasses with stable ids, markers and a fingerprint; the axes' vocabularies."""
from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass, replace
from typing import Any

from suite.train import args as train_args
from suite.train import data, models, tokens
from suite.train.backends.base import Backend
from suite.train.backends.registry import backend_for

METHODS = ("full", "lora", "qlora", "lora_8bit", "unsloth")
# Which trainer trains the case: trl's SFTTrainer (every case before this axis), trl's DPOTrainer, or
# transformers' plain Trainer given a peft model (its own PEFT path). Ids name a trainer other than sft.
TRAINERS = ("sft", "dpo", "hf_trainer")
ADAPTER_METHODS = ("lora", "qlora", "lora_8bit", "unsloth")
# Canonical order: ids list features in this order whatever the case file says.
FEATURES = ("packing", "neftune", "gradient_checkpointing", "grad_accum", "adamw_8bit", "liger", "modules_to_save",
            "trainable_tokens", "flash_attn", "sdpa", "eager", "ddp", "fsdp")
# How an adapter carries the rows of tokens a chat format added (chatml): the whole embedding and head
# matrices (peft's modules_to_save), or only the new rows (peft's trainable_token_indices).
NEW_TOKEN_WAYS = ("modules_to_save", "trainable_tokens")
ADDED_TOKEN_FORMATS = tokens.FORMATS
GA_STEPS = train_args.GA_STEPS  # grad_accum: the case's batch in GA_STEPS accumulated micro-batches
ATTENTION = {"flash_attn": "flash_attention_2", "sdpa": "sdpa", "eager": "eager"}
# Data-parallel features: the case is launched as WORLD_SIZE processes (suite/run/distributed.py).
DISTRIBUTED = ("ddp", "fsdp")
WORLD_SIZE = 2
SIZES = ("tiny", "7b")
FORMATS = data.FORMATS  # what suite/train/data.py generates
LOSSES = ("auto", "full", "completion_only", "assistant_only")
MODES = ("regression", "benchmark")
TINY_ARCHS = tuple(models.TINY_ARCHS)  # what suite/train/models.py builds
CONVERSATIONAL = ("messages", "conversational_pc", "conversational_preference", "chatml")
PREFERENCE_FORMATS = data.PREFERENCE_FORMATS
PROMPT_FORMATS = ("prompt_completion", "conversational_pc")

# Every marker a case can carry; registered so that --strict-markers catches typos.
# The resolved case's fields a fingerprint leaves out: where it was declared, how long it may run, how it
# is judged and how it is timed change nothing that is trained (reports compare the rest).
NOT_FINGERPRINTED = ("source", "timeout_s", "checks", "benchmark")

MARKERS: dict[str, str] = {
    **{m: f"method: {m}" for m in METHODS},
    "sft": "trainer: trl's SFTTrainer",
    "dpo": "trainer: trl's DPOTrainer (preference data, ref_model=None)",
    "hf_trainer": "trainer: transformers' plain Trainer with a peft model",
    **{f: f"feature: {f}" for f in FEATURES},
    **{s: f"model size: {s}" for s in SIZES},
    "large": "a 7B-class model (same as 7b)",
    "gpu": "needs a CUDA GPU",
    "multigpu": f"needs {WORLD_SIZE} CUDA GPUs (ddp, fsdp)",
    "adapter": "an adapter method (lora, qlora, lora_8bit, unsloth)",
    **{f: f"dataset format: {f}" for f in FORMATS},
    "completion_only": "loss on the completion only",
    "assistant_only": "loss on assistant turns only",
    **{a: f"architecture: {a}" for a in TINY_ARCHS},
    "case": "a training case of the matrix (not a unit test)",
    "invariant": "a correctness invariant comparing two real runs or states (tests/invariants/)",
}


@dataclass(frozen=True)
class ModelSpec:
    name: str
    size: str
    arch: str | None = None  # tiny models: the architecture built from a config
    hub_id: str | None = None  # real models: the hub id the weights are known by
    env: str | None = None  # environment variable naming a local directory
    path: str | None = None  # an explicit local directory
    # 7B-shaped models: random weights from this architecture config (cases/configs/*.json), for
    # machines no weights reach. The path is where this checkout keeps it (not fingerprinted);
    # the digest of its content is what the fingerprint sees.
    config: str | None = None
    config_sha256: str | None = None


@dataclass(frozen=True)
class Training:
    max_steps: int = 30
    benchmark_steps: int = 120
    learning_rate: float = 3e-3
    batch_size: int = 8
    grad_accum: int = 1
    max_length: int = 64
    warmup_steps: int = 0
    lr_scheduler: str = "linear"
    weight_decay: float = 0.0
    seed: int = 0
    num_samples: int = 512
    turns: int = 1  # question/answer pairs per example: longer sequences for benchmarks of big models
    eval_samples: int = 0  # an eval split of this many rows (another seed), evaluated at the first and last step
    neftune_alpha: float = 5.0
    precision: str = "auto"  # auto: bf16 where the GPU supports it, else fp32
    extra: tuple[tuple[str, Any], ...] = ()  # further SFTConfig fields, checked against trl in the child


@dataclass(frozen=True)
class LoraSpec:
    r: int = 8
    alpha: int = 16
    dropout: float = 0.0
    target_modules: str | tuple[str, ...] = "all-linear"


@dataclass(frozen=True)
class CheckSpec:
    loss_window: int = 5  # k: mean of the first k logged losses vs the last k
    loss_margin: float = 0.1  # the last-k mean must be below (1 - margin) x the first-k mean
    size_rtol: float = 0.02  # saved tensor bytes vs what the parameter count x dtype imply
    logits_atol: float = 1e-4  # reloaded checkpoint vs the trained model in memory
    curve_rtol: float = 1e-3  # golden loss curve: each logged loss within atol + rtol x |baseline|
    curve_atol: float = 1e-4
    # ... and the mean of (obtained - baseline) over the whole curve within this: kernel noise
    # averages out over the steps, a systematic shift of the loss does not (cases/_base.yaml)
    curve_drift: float = 1e-3
    # DPO: policy equals reference before the first update, so the first logged loss is
    # -log sigmoid(0) = ln 2; measured 1.9e-9 off in fp32 on the tiny models (float rounding)
    dpo_ln2_atol: float = 1e-4
    reference_atol: float = 0.0  # the reference after training vs before, same model object: bitwise
    eval_falls: bool = False  # with training.eval_samples: the eval loss after training must be below the first


@dataclass(frozen=True)
class BenchSpec:
    warmup_steps: int = 5  # first steps left out of step-time and throughput figures


@dataclass(frozen=True)
class Case:
    model: ModelSpec
    method: str
    features: tuple[str, ...]
    dataset: str
    loss: str
    training: Training
    lora: LoraSpec
    checks: CheckSpec
    timeout_s: float
    source: str  # the case file this case was declared in
    mode: str = "regression"
    benchmark: BenchSpec = BenchSpec()
    trainer: str = "sft"

    @property
    def id(self) -> str:
        parts = [self.model.name, *([self.trainer] if self.trainer != "sft" else []), self.method,
                 "+".join(self.features) or "base"]
        if self.dataset != "text" or self.loss != "auto":
            parts.append(self.dataset + ("" if self.loss == "auto" else f":{self.loss}"))
        return "/".join(parts)

    @property
    def slug(self) -> str:
        """The id as a file name."""
        return self.id.replace("/", "__").replace(":", "-")

    @property
    def is_adapter(self) -> bool:
        return self.method in ADAPTER_METHODS

    @property
    def effective_loss(self) -> str:
        if self.loss != "auto":
            return self.loss
        # DPO's log-probabilities are the completions' (chosen and rejected) only
        return "completion_only" if self.dataset in PROMPT_FORMATS + PREFERENCE_FORMATS else "full"

    @property
    def attention(self) -> str:
        for feat, impl in ATTENTION.items():
            if feat in self.features:
                return impl
        return "sdpa"

    @property
    def steps(self) -> int:
        return self.training.benchmark_steps if self.mode == "benchmark" else self.training.max_steps

    @property
    def distributed(self) -> str | None:
        """ddp or fsdp when the case runs as several processes, else None."""
        return next((f for f in self.features if f in DISTRIBUTED), None)

    @property
    def backend(self) -> Backend:
        """The trainer backend that trains this case's method with its trainer (suite/train/backends/)."""
        return backend_for(self.method, self.trainer)

    @property
    def needs_gpu(self) -> bool:
        return (self.model.size == "7b" or self.backend.needs_gpu or "flash_attn" in self.features
                or "liger" in self.features or self.distributed is not None)

    @property
    def markers(self) -> tuple[str, ...]:
        marks = ["case", self.trainer, self.method, self.model.size, *self.features, self.dataset]
        if self.model.size == "7b":
            marks.append("large")
        if self.model.arch:
            marks.append(self.model.arch)
        if self.is_adapter:
            marks.append("adapter")
        if self.needs_gpu:
            marks.append("gpu")
        if self.distributed:
            marks.append("multigpu")
        if self.effective_loss in ("completion_only", "assistant_only"):
            marks.append(self.effective_loss)
        return tuple(dict.fromkeys(marks))

    def with_mode(self, mode: str) -> Case:
        if mode not in MODES:
            raise ValueError(f"unknown mode {mode!r}; known: {', '.join(MODES)}")
        return replace(self, mode=mode)

    def to_dict(self) -> dict:
        """The resolved case, as recorded in results (JSON-safe)."""
        d = asdict(self)
        d["training"]["extra"] = dict(self.training.extra)
        d["id"] = self.id
        if self.model.config is None:  # left out so that the other cases keep their fingerprints
            del d["model"]["config"], d["model"]["config_sha256"]
        if self.trainer == "sft":  # the same: SFT cases' fingerprints predate the trainer axis
            del d["trainer"]
        if not self.training.eval_samples:  # and the eval split
            del d["training"]["eval_samples"]
        d["steps"] = self.steps
        d["attention"] = self.attention
        d["effective_loss"] = self.effective_loss
        if self.distributed:  # only here, so that single-process cases keep their fingerprints
            d["world_size"] = WORLD_SIZE
        return d

    @property
    def fingerprint(self) -> str:
        """Hash of everything that changes what is trained; the source file and timeout do not."""
        d = self.to_dict()
        for key in NOT_FINGERPRINTED:
            d.pop(key)
        d["model"].pop("config", None)  # a local path; its content is in config_sha256
        return hashlib.sha256(json.dumps(d, sort_keys=True, default=str).encode()).hexdigest()[:16]
