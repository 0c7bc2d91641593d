"""A case: model x trainer x adapter x quantization x library x features x dataset (format and loss)
plus training settings, as frozen dataclasses with stable ids, markers and a fingerprint. The axes'
vocabularies are suite/matrix/axes.py's."""
from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass, replace
from typing import Any

from suite.matrix.axes import (
    ADAPTER_METHODS,
    FORMAT,
    LOSS,
    SIZE,
    FeatureSet,
    Format,
    Loss,
    Size,
    ADDED_TOKEN_FORMATS,
    ATTENTION,
    CONVERSATIONAL,
    DISTRIBUTED,
    EAGER_ONLY_ARCHS,
    FEATURES,
    FORMATS,
    GA_STEPS,
    LOSSES,
    METHODS,
    MODES,
    MOE_ARCHS,
    NEW_TOKEN_WAYS,
    PREFERENCE_FORMATS,
    PROMPT_FORMATS,
    PROMPT_ONLY_FORMATS,
    SIZES,
    TINY_ARCHS,
    UNPAIRED_PREFERENCE_FORMATS,
    WORLD_SIZE,
    Adapter,
    Library,
    Method,
    Quantization,
    method_of,
)

__all__ = ["ADAPTER_METHODS", "ADDED_TOKEN_FORMATS", "ATTENTION", "CONVERSATIONAL", "DISTRIBUTED", "EAGER_ONLY_ARCHS", "FEATURES",
           "FORMATS", "GA_STEPS", "LOSSES", "METHODS", "MODES", "MOE_ARCHS", "NEW_TOKEN_WAYS", "PREFERENCE_FORMATS",
           "PROMPT_FORMATS", "PROMPT_ONLY_FORMATS", "SIZES", "TINY_ARCHS", "UNPAIRED_PREFERENCE_FORMATS", "WORLD_SIZE",
           "DEFAULT_TRAINER",
           "MARKERS", "NOT_FINGERPRINTED", "DEFAULT_TIER", "TIERS",
           "ModelSpec", "Training", "LoraSpec", "CheckSpec", "BenchSpec", "Case", "markers"]

# The trainer a case trains with unless its file says otherwise (trl's SFTTrainer, every case before the
# trainer axis): ids name any other. The trainers themselves are the backends' (suite/matrix/support.py).
DEFAULT_TRAINER = "sft"

# The resolved case's fields a fingerprint leaves out: where it was declared, how long it may run, how it
# is judged and how it is timed change nothing that is trained (reports compare the rest).
NOT_FINGERPRINTED = ("source", "timeout_s", "checks", "benchmark", "tier")

# The tiers a case can be in (issue 38). The main tier runs by default; a case file's row may put its cases in the
# extended tier (`tier: extended`), which a run leaves out, saying so, unless --extended is given: coverage that
# would push CI past its 30 minutes (docs/cases.md, "The extended tier"). Not fingerprinted: moving a case between
# tiers changes where it runs, not what it trains.
DEFAULT_TIER = "main"
TIERS = (DEFAULT_TIER, "extended")

# Every marker a case can carry but the trainers' (which their backends bring, suite/matrix/support.py);
# registered so that --strict-markers catches typos.
MARKERS: dict[str, str] = {
    **{m.name: f"method: {m.name}" for m in METHODS.values()},
    **{f: f"feature: {f}" for f in FEATURES},
    **{s: f"model size: {s}" for s in SIZES},
    "large": "a full-size model: the 7B rows (size 7b) and the families' rows at their common size (size large)",
    "gpu": "needs a CUDA GPU",
    "multigpu": f"needs {WORLD_SIZE} CUDA GPUs (ddp, fsdp, fsdp2)",
    "adapter": f"an adapter method ({', '.join(ADAPTER_METHODS)})",
    **{f: f"dataset format: {f}" for f in FORMATS},
    "completion_only": "loss on the completion only",
    "assistant_only": "loss on assistant turns only",
    **{a: f"architecture: {a}" for a in dict.fromkeys(TINY_ARCHS + MOE_ARCHS)},
    "moe": f"a mixture-of-experts model ({', '.join(MOE_ARCHS)}), its router's auxiliary loss on",
    "case": "a training case of the matrix (not a unit test)",
    "invariant": "a correctness invariant comparing two real runs or states (tests/invariants/)",
    "options": "the covering design of the options people set (issue 37)",
    **{t: f"the {t} tier: left out of a run unless --{t} is given (docs/cases.md)" for t in TIERS[1:]},
}


def markers(trainers: dict[str, str]) -> dict[str, str]:
    """Every marker a case can carry, the trainers' included ({name: description})."""
    return {**MARKERS, **trainers}


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

    @property
    def scale(self) -> Size:
        """The size as its declared type (suite/matrix/axes.py)."""
        return SIZE[self.size]
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
    # parameters peft wraps directly (its target_parameters): the 3-D fused expert weights of a
    # mixture-of-experts model, which are no nn.Linear that target_modules could name
    target_parameters: tuple[str, ...] = ()


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
    # KTO: the same "policy is its reference at step 1": the first loss is 0.5 and trl's first KL estimate 0
    # (measured: exactly, tiny models, fp32); the float-rounding tolerance of DPO's start
    kto_start_atol: float = 1e-4
    # GRPO and RLOO: the first loss equals the loss type's value for a policy equal to its old self
    # (measured 2.6e-9 GRPO, 4.7e-10 RLOO off, tiny models, fp32)
    first_loss_atol: float = 1e-4
    # GRPO and RLOO: every group's advantages have mean 0 (measured at most 1.6e-7 off, tiny models, fp32)
    advantages_atol: float = 1e-4
    # a KL coefficient above 0: trl's first logged kl is 0 (measured: exactly, tiny models, fp32)
    kl_start_atol: float = 1e-4
    reference_atol: float = 0.0  # the reference after training vs before, same model object: bitwise
    eval_falls: bool = False  # with training.eval_samples: the eval loss after training must be below the first
    # 4-bit bases: the base's weights bitsandbytes leaves unquantized (layer index dropped), besides the
    # embeddings and the head: a mixture of experts' fused 3-D expert weights and its router
    unquantized: tuple[str, ...] = ()
    # The training mechanics (suite/judge/mechanics.py), measured on clean runs of 32 tiny cases of cases/ (every
    # trainer; full, lora, qlora, lora_8bit, adamw_8bit; the MoE and family models), one run each, and 11 six-step
    # runs of tests/train/test_mechanics.py's cases, kernel class avx512-bf16 (this 2-core AMD EPYC
    # Zen 4), fp32, qlora's and lora_8bit's adapters in bf16; docs/checks.md has the table. Each bound says
    # its margin over the worst measured value.
    # the optimizer's and the logged rate vs the schedule, of the peak: measured 1.7e-16 (float64 rounding);
    # the bound is fp32's rounding of a rate an optimizer keeps as a tensor (6e-8) x 16
    mechanics_lr_rtol: float = 1e-6
    # the norm after clipping vs min(norm, max_grad_norm), and the logged norm vs the norm before clipping,
    # relative: fp32 gradients measured 3.1e-7 (x 33: fp32 sums grow their error with a bigger model's
    # element count); bf16 gradients measured 4.8e-3 (x 3)
    mechanics_clip_rtol: float = 1e-5
    mechanics_clip_rtol_low: float = 1.5e-2
    # a step vs AdamW's update beyond 2 ulp of the parameter, relative to the update (fp32 parameters; bf16
    # ones are not judged): measured 2.2e-7 (x 46, as the clip's)
    mechanics_update_rtol: float = 1e-5
    # the adapter's added output vs x A^T B^T alpha/r, relative: fp32 adapters measured 7.3e-7 (x 14, as the
    # clip's), bf16 ones 6.4e-3 (x 3)
    mechanics_lora_rtol: float = 1e-5
    mechanics_lora_rtol_low: float = 2e-2
    # DPO, KTO and the reward model by definition (suite/train/backends/preference/definitions.py). Measured on
    # one machine, kernel class avx512-bf16 (the 2-core AMD EPYC Zen 4), fp32, tiny models, 2026-12-07: 13 matrix
    # cases (dpo x 8, kto x 3, reward x 2, 60 steps) and 15 test runs (8-12 steps: DPO sigmoid, hinge, IPO,
    # robust, lora and full, conversational; KTO with weights; reward with centring); provisional (one machine):
    # trl's sequence log-probabilities vs the suite's own forward at step 1: max 1.9e-6 nats (sums of 15-30 nats)
    dpo_logps_atol: float = 1e-4
    # the logged loss vs its definition from the recorded log-probabilities / scores (DPO, KTO, reward): max
    # 1.2e-6 (IPO, a loss near 25), 8.3e-8 for every other loss; the 16 cases of cases/dpo_options.yaml (every
    # loss type, 10 steps, same machine, 2026-12-07): max 3.2e-6 (sppo_hard, a loss near 50), 2.8e-7 otherwise
    preference_loss_atol: float = 1e-5
    # the logged implicit rewards (DPO) and KTO's logged KL estimate vs their definitions: max 7.5e-9
    preference_rewards_atol: float = 1e-6
    # a reward model's score of one text alone vs right- and left-padded beside a longer one: max 4.7e-7
    reward_padding_atol: float = 1e-5
    # GRPO and RLOO by definition (suite/train/backends/online/relations.py), measured on kernel class
    # avx512-bf16 (the 2-core AMD EPYC Zen 4), fp32, the tiny llama, LoRA, 2-4 steps of 16 completions, one
    # machine: the advantages against their definition from the logged rewards, largest difference 8.6e-7 over 28
    # clean runs (RLOO's normalised advantages; GRPO's at most 1.5e-7); bound ~12 x that
    advantages_def_atol: float = 1e-5
    # ... the loss trl returned for a micro-batch against the loss type's definition on the suite's own forward:
    # largest difference 1.9e-7 over 26 of those runs (GRPO's 8 loss types, RLOO); bound ~50 x that
    loss_def_atol: float = 1e-5
    # The trained model's own relations in each causal-LM case's child (suite/train/modeling.py,
    # suite/judge/modeling.py), measured on kernel class avx512-bf16 (the 2-core AMD EPYC Zen 4), fp32 logits on
    # CPU, tiny models, 2026-12-07, one run per case (deterministic), --no-baselines: a row's loss alone vs
    # right-, left- and collator-padded: max 7.2e-7 nats (tiny-llama/lora/neftune) over 28 fp32 cases (the LoRA
    # case of each causal-LM trainer: sft, hf_trainer, dpo, kto, grpo, rloo; the nine families; tiny-mixtral
    # full/lora; packing, neftune, gradient checkpointing, eager, dropout, trainable tokens, prompt-completion,
    # mistral, qwen2 full, grpo full); x14: the invariants' 1e-5 (suite/invariants/padding.py's 16 runs, 4.8e-7).
    # Another device or precision is reported not judged.
    padding_atol: float = 1e-5
    # 4-bit and 8-bit bases (bitsandbytes on CPU): after 30 steps max 4.8e-7 nats over tiny-llama/qlora (4.8e-7),
    # tiny-llama/dpo/qlora (4.8e-7), tiny-mixtral/qlora (2.4e-7), tiny-llama/lora_8bit (2.4e-7); after the main job's
    # 120 steps (--benchmark, one run, avx512-bf16, 2026-12-07) 6.0e-4 on tiny-llama/lora_8bit, 5.4e-5 on
    # tiny-llama/hf_trainer/lora_8bit, 4.5e-5 on tiny-llama/kto/qlora: LLM.int8 picks its fp16 outlier columns over
    # the whole batch and bitsandbytes' 4-bit path runs other kernels for one row than for many, so a row's output
    # depends on its batch there; x3 the worst (the bf16 margin of the mechanics' bounds). The faults it must see
    # measure 0.26-0.36 nats. Provisional: one machine.
    padding_atol_quantized: float = 2e-3
    # the model's auxiliary loss vs the suite's load-balancing loss of its router logits, relative: max 6.8e-8
    # over tiny-mixtral full/lora/qlora, tiny-qwen3-moe, tiny-gpt-oss; 5e-6 is the invariant's 1e-5 nats on a
    # loss near 2 (x70)
    moe_aux_rtol: float = 5e-6
    # trl's distillation loss vs the suite's generalized JSD of the captured logits (suite/train/backends/distill/relations.py):
    # max 2.2e-8 nats over cases/distill.yaml's 3 cases (beta 0: 2.2e-8, 1: 1.4e-8, 0.5: 4.6e-9; fp32, the 2-core AMD
    # EPYC Zen 4, avx512-bf16, 2 runs each, logits rounded to 1e-6 in the record); 1e-5 is ~450x that
    distill_loss_atol: float = 1e-5
    # the held-out divergence's relative fall from the teacher over training (distill/checks.py): at least this much;
    # measured 63-76% on the 3 cases (same machine and runs), -gradient (the fault) makes it rise
    distill_heldout_fall: float = 0.1
    # DPO: whether `dpo_rewards_rise` is planned. Off only for a loss type whose definition does not raise the
    # reward margin from policy = reference (cases/dpo_options.yaml says which and why: DiscoPOP's slope in the
    # margin at 0 is (1 - ln 2) / (4 tau) - 3/4, positive for tau < 0.10; APO-down's margin fell over 10 steps)
    dpo_rewards_rise: bool = True
    # GRPO and RLOO: whether the mean reward must rise (online_reward_rises). The option cases
    # (cases/grpo_options.yaml, rloo_options.yaml) run 6 steps for their by-definition relations, too few for a rise
    # to be a measurement; the rise is the 60- and 20-step cases' (grpo.yaml, rloo.yaml, sampling.yaml)
    reward_rises: bool = True


@dataclass(frozen=True)
class BenchSpec:
    warmup_steps: int = 5  # first steps left out of step-time and throughput figures


@dataclass(frozen=True)
class Case:
    model: ModelSpec
    adapter: Adapter
    quantization: Quantization
    library: Library
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
    trainer: str = DEFAULT_TRAINER
    # the trainer options this case covers, as a label in its id (e.g. loss_type:ipo): cases that differ only in
    # training.extra need one (issue 37's covering design); empty for every other case, whose ids and
    # fingerprints predate it
    option: str = ""
    # the tier the case is in (TIERS): any but the main one is left out of a run unless asked for
    tier: str = DEFAULT_TIER

    @property
    def opt_in(self) -> bool:
        """Whether the case runs only when its tier is asked for (--extended)."""
        return self.tier != DEFAULT_TIER

    @property
    def method(self) -> str:
        """The method's name: the id part, marker and fingerprint field the three axes map back to."""
        return self.variant.name

    @property
    def variant(self) -> Method:
        """The named adapter x quantization x library (suite/matrix/axes.py)."""
        return method_of(self.adapter, self.quantization, self.library)

    @property
    def id(self) -> str:
        parts = [self.model.name, *([self.trainer] if self.trainer != DEFAULT_TRAINER else []), self.method,
                 "+".join(self.features) or "base"]
        if self.dataset != "text" or self.loss != "auto":
            parts.append(self.dataset + ("" if self.loss == "auto" else f":{self.loss}"))
        if self.option:
            parts.append(self.option)
        return "/".join(parts)

    @property
    def slug(self) -> str:
        """The id as a file name."""
        return self.id.replace("/", "__").replace(":", "-")

    @property
    def is_adapter(self) -> bool:
        return self.adapter.is_adapter

    @property
    def effective_loss(self) -> str:
        """The loss's name, `auto` resolved by the format (the name is what fingerprints hash)."""
        return self.format.loss if self.loss == "auto" else self.loss

    @property
    def loss_kind(self) -> Loss:
        """The effective loss as its declared type (suite/matrix/axes.py)."""
        return LOSS[self.effective_loss]

    @property
    def format(self) -> Format:
        """The dataset format as its declared type (suite/matrix/axes.py)."""
        return FORMAT[self.dataset]

    @property
    def uses(self) -> FeatureSet:
        """The features as declared types, asked as one (suite/matrix/axes.py)."""
        return FeatureSet.of(self.features)

    @property
    def is_moe(self) -> bool:
        return self.model.arch in MOE_ARCHS

    @property
    def attention(self) -> str:
        return self.uses.attention

    @property
    def steps(self) -> int:
        return self.training.benchmark_steps if self.mode == "benchmark" else self.training.max_steps

    @property
    def distributed(self) -> str | None:
        """ddp or fsdp when the case runs as several processes, else None."""
        feature = self.uses.distributed
        return feature.name if feature else None

    @property
    def needs_gpu(self) -> bool:
        return (self.model.scale.gpu_for is not None or self.library.needs_gpu or bool(self.uses.gpu_for)
                or (self.uses.distributed is not None and self.uses.distributed.needs_gpus))

    @property
    def markers(self) -> tuple[str, ...]:
        marks = ["case", self.trainer, self.method, self.model.size, *self.features, self.dataset]
        marks += self.model.scale.markers
        if self.model.arch:
            marks.append(self.model.arch)
        if self.is_moe:
            marks.append("moe")
        if self.is_adapter:
            marks.append("adapter")
        if self.needs_gpu:
            marks.append("gpu")
        if self.uses.distributed is not None and self.uses.distributed.needs_gpus:
            marks.append("multigpu")
        if self.loss_kind.masks:
            marks.append(self.effective_loss)
        # one of the options people set (issue 37): an option label, or a feature that names one
        if self.uses.sets_option or self.option:
            marks.append("options")
        if self.uses.packs:  # every packing strategy is packing (the marker the packing tests select on)
            marks.append("packing")
        if self.opt_in:
            marks.append(self.tier)
        return tuple(dict.fromkeys(marks))

    def with_mode(self, mode: str) -> Case:
        if mode not in MODES:
            raise ValueError(f"unknown mode {mode!r}; known: {', '.join(MODES)}")
        return replace(self, mode=mode)

    def to_dict(self) -> dict:
        """The resolved case, as recorded in results (JSON-safe)."""
        d = asdict(self)
        # the three axes map back to the method's name, which fingerprints have hashed since before the split
        axes = {"adapter", "quantization", "library"}
        d = {"model": d["model"], "method": self.method, **{k: v for k, v in d.items() if k not in axes | {"model"}}}
        d["training"]["extra"] = dict(self.training.extra)
        d["id"] = self.id
        if self.model.config is None:  # left out so that the other cases keep their fingerprints
            del d["model"]["config"], d["model"]["config_sha256"]
        if not self.option:  # the same: cases without an option label predate it
            del d["option"]
        if self.trainer == DEFAULT_TRAINER:  # the same: SFT cases' fingerprints predate the trainer axis
            del d["trainer"]
        if not self.opt_in:  # the same: main-tier records read as before the tiers
            del d["tier"]
        if not self.training.eval_samples:  # and the eval split
            del d["training"]["eval_samples"]
        if not self.lora.target_parameters:  # and the adapters of parameters (mixture-of-experts cases)
            del d["lora"]["target_parameters"]
        if not self.checks.unquantized:
            del d["checks"]["unquantized"]
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
            d.pop(key, None)  # tier is absent from a main-tier case's dict
        d["model"].pop("config", None)  # a local path; its content is in config_sha256
        return hashlib.sha256(json.dumps(d, sort_keys=True, default=str).encode()).hexdigest()[:16]
