"""The one place that knows how argument names differ across trl/transformers releases.

Each renamed argument is a `Rename`: the release that introduced the new name, keyed on the
installed version (importlib.metadata, no import needed). Each feature a release may lack is a
`Requirement`: a case that the installed version cannot express is skipped with a reason naming
the version, never silently altered. An argument a release started taking in another place is a
`Move`. tests/train/test_compat.py checks every entry against the
installed packages' real signatures.
"""
from __future__ import annotations

import dataclasses
import functools
import importlib.util
from dataclasses import dataclass

from suite.versions import package_version, version_at_least


@dataclass(frozen=True)
class Rename:
    name: str  # what this mapping is about
    package: str
    since: str  # first release with the new name
    new: str
    old: str
    where: str  # "SFTConfig", "SFTTrainer", "from_pretrained"

    def key(self) -> str:
        """The argument name to use with the installed version."""
        return self.new if version_at_least(package_version(self.package), self.since) else self.old


@dataclass(frozen=True)
class Requirement:
    name: str
    package: str
    since: str
    what: str  # what the case needs, in words

    def missing(self) -> str | None:
        installed = package_version(self.package)
        if version_at_least(installed, self.since):
            return None
        return f"{self.package}>={self.since} for {self.what} (installed: {installed})"


RENAMES = {r.name: r for r in (
    # transformers 5.23 renamed gradient checkpointing to activation checkpointing (old name deprecated);
    # 5.22.2 has no activation_checkpointing (found by upgrade-check 5.22.2 -> 5.23.0)
    Rename("checkpointing", "transformers", "5.23.0", "activation_checkpointing", "gradient_checkpointing",
           "SFTConfig"),
    # trl 0.20 renamed SFTConfig.max_seq_length to max_length
    Rename("max_length", "trl", "0.20.0", "max_length", "max_seq_length", "SFTConfig"),
    # transformers 4.56 renamed from_pretrained's torch_dtype to dtype
    Rename("dtype", "transformers", "4.56.0", "dtype", "torch_dtype", "from_pretrained"),
    # trl 0.12 passes the tokenizer as processing_class
    Rename("processing_class", "trl", "0.12.0", "processing_class", "tokenizer", "SFTTrainer"),
    # transformers 4.34 replaced no_cuda with use_cpu
    Rename("use_cpu", "transformers", "4.34.0", "use_cpu", "no_cuda", "SFTConfig"),
)}

@dataclass(frozen=True)
class Move:
    """An argument a release started taking in a new place; before it, it goes in the old one."""
    name: str
    package: str
    since: str
    new: str
    old: str

    def in_new_place(self) -> bool:
        return version_at_least(package_version(self.package), self.since)


MOVES = {m.name: m for m in (
    # trl 1.8 added SFTTrainer(quantization_config=...); before, it went with the other from_pretrained
    # arguments in SFTConfig.model_init_kwargs (trl 1.7.0's SFTTrainer raises TypeError on it)
    Move("quantization_config", "trl", "1.8.0", "SFTTrainer", "SFTConfig.model_init_kwargs"),
)}


@dataclass(frozen=True)
class Added:
    """A keyword argument a release added to a function the suite calls: before it, the call leaves it out
    (the trainer of that release does not pass it either)."""
    name: str  # the keyword
    package: str
    since: str
    where: str  # the function, as imported

    def accepted(self) -> bool:
        return version_at_least(package_version(self.package), self.since)


ADDED = {a.where.rsplit(".", 1)[1] + "." + a.name: a for a in (
    # the generating trainers' sample recorder replays a step's sampling through trl's own context manager, as
    # the trainer of the installed release calls it: generation_kwargs came in trl 0.26.2 (0.26.1 lacks it),
    # gradient_checkpointing_kwargs in 1.16.0 (1.15.0 lacks it; read in the released wheels, and the release
    # sweep measured GRPO and RLOO erroring on every trl 0.24 to 1.15 before, docs/floors.md)
    Added("generation_kwargs", "trl", "0.26.2", "trl.models.utils.unwrap_model_for_generation"),
    Added("gradient_checkpointing_kwargs", "trl", "1.16.0", "trl.models.utils.unwrap_model_for_generation"),
)}


def added_kwargs(function: str, **kwargs) -> dict:
    """The keyword arguments the installed release of `function` (its last dotted part) takes: each one an
    `Added` entry names is left out before its release; a keyword no entry names is always passed."""
    return {k: v for k, v in kwargs.items() if (a := ADDED.get(f"{function}.{k}")) is None or a.accepted()}


@dataclass(frozen=True)
class NeedsModule:
    """Releases of a package that cannot train without a module they import with no fallback (a kernel):
    there the case skips, naming the release that has the fallback and the module that would do instead."""
    name: str
    package: str
    first: str  # first release with no fallback
    fixed: str  # first release with one again
    module: str  # what those releases need (importable name, also the pip name)
    what: str

    def missing(self) -> str | None:
        installed = package_version(self.package)
        if not version_at_least(installed, self.first) or version_at_least(installed, self.fixed):
            return None
        if importlib.util.find_spec(self.module) is not None:
            return None
        return (f"{self.package}>={self.fixed} or the package {self.module} (pip install {self.module}) for "
                f"{self.what} (installed: {installed}, without {self.module})")


@dataclass(frozen=True)
class Conflict:
    """Two packages' releases that pip installs together (neither bounds the other) but that cannot run a case
    together: `package` in [first, before) with `other` in [other_first, other_before) (None: unbounded). The
    case skips, naming the way out (`remedy`) and both installed versions."""
    name: str
    package: str
    first: str
    before: str | None
    other: str
    other_first: str
    other_before: str | None
    remedy: str  # what to install instead, e.g. "peft>=0.18.0 (or transformers<5.0.0)"
    what: str

    def missing(self) -> str | None:
        mine, theirs = package_version(self.package), package_version(self.other)
        inside = [v is not None and version_at_least(v, lo) and (hi is None or not version_at_least(v, hi))
                  for v, lo, hi in ((mine, self.first, self.before), (theirs, self.other_first, self.other_before))]
        if not all(inside):
            return None
        return f"{self.remedy} for {self.what} (installed: {self.package} {mine}, {self.other} {theirs})"


REQUIREMENTS = {r.name: r for r in (
    # before trl 0.20, completion-only loss needed DataCollatorForCompletionOnlyLM and a response template
    Requirement("completion_only_loss", "trl", "0.20.0", "completion-only loss as an SFTConfig field"),
    Requirement("assistant_only_loss", "trl", "0.20.0", "assistant-only loss (SFTConfig.assistant_only_loss)"),
    # trl 0.20 packs with best-fit decreasing and position ids (padding-free) instead of concatenation
    Requirement("packing_bfd", "trl", "0.20.0", "packing with position ids (packing_strategy='bfd')"),
    # read in the released wheels: trl 0.29 added it as "bfd-requeue", 1.0.0 named it "bfd_split"
    Requirement("packing_bfd_split", "trl", "1.0.0", "packing that splits overflowing sequences "
                "(packing_strategy='bfd_split')"),
    Requirement("neftune", "transformers", "4.35.0", "NEFTune (TrainingArguments.neftune_noise_alpha)"),
    Requirement("prompt_completion", "trl", "0.16.0", "prompt-completion data sets in SFTTrainer"),
    # read in the released wheels, not measured on each: RLOOTrainer took prompts and num_generations from
    # trl 0.22 (before, a PPO-style trainer with a policy and a reference policy), and GRPOTrainer's
    # _generate_single_turn, which the completions_on_policy check's fault wraps, came in trl 0.24; on the
    # floor stack (trl 0.20, transformers 4.56) GRPO's generation refused the tokenizer's token_type_ids
    # trl's DistillationTrainer (and DistillationConfig, whose `beta` selects the divergence) as trl 1.16.0 ships it,
    # the only release measured here (earlier releases had the GKD trainer, not this one)
    Requirement("distillation_trainer", "trl", "1.16.0",
                "trl's DistillationTrainer (teacher_model, DistillationConfig's beta, on-policy completions)"),
    # DPO's loss types that came after trl's floor, read in the released wheels (dpo_trainer.py of each release):
    # aot_unpaired is trl 0.20 to 0.27's aot_pair renamed in 0.28.0; sigmoid_norm came in 1.4.0 (1.3.0 lacks it)
    Requirement("dpo_aot_unpaired", "trl", "0.28.0", "DPO's loss_type aot_unpaired (trl before 0.28 names it aot_pair)"),
    Requirement("dpo_sigmoid_norm", "trl", "1.4.0", "DPO's loss_type sigmoid_norm"),
    # the preference recorder reads the log-probabilities trl's fused LM head returns (fused_lm_head=True), which
    # DPO and KTO pass from trl 1.15.0 (1.14.2 does not; read in the release wheels). One fact, two uses: DPO's
    # options cases (which exist for their by-definition relations) skip before it; the other DPO and KTO cases
    # run there and report those relations not judged, by name
    Requirement("preference_fused_head", "trl", "1.15.0",
                "the preference relations judged by definition (the recorder reads trl's fused LM head's "
                "log-probabilities)"),
    # trl's RewardTrainer logs the pairwise accuracy and margin in training from 0.24.0 (its rewrite: before, only
    # evaluation computed an accuracy), read in the release wheels: before, reward_pairs_rise cannot judge
    Requirement("reward_logs_pairs", "trl", "0.24.0", "the reward model's pairwise accuracy and margin logged in training"),
    # by name (cases/byname.yaml), read in trl's tagged sources: RewardConfig has model_init_kwargs (RewardTrainer
    # builds the one-output classifier from a path) from 0.24.0; KTOTrainer loads its tokenizer when given no
    # processing_class from 1.3.0 (before, it raises "max_length or a processing_class must be specified")
    Requirement("reward_by_name", "trl", "0.24.0", "RewardTrainer given a model path (RewardConfig.model_init_kwargs)"),
    Requirement("kto_by_name", "trl", "1.3.0", "KTOTrainer loading its tokenizer (no processing_class)"),
    Requirement("generating_trainers", "trl", "0.24.0",
                "GRPOTrainer and RLOOTrainer as the suite drives them (num_generations, _generate_single_turn)"),
    # peft 0.17 added LoraConfig.target_parameters (LoRA on nn.Parameters such as fused experts)
    Requirement("lora_target_parameters", "peft", "0.17.0",
                "LoRA on parameters such as fused experts (LoraConfig.target_parameters)"),
    # GRPO's newer loss types (cases/grpo_options.yaml), read in the released GRPOConfigs of the derived environments:
    # cispo and sapo first in 0.26.2 (0.25.1 lacks them), luspo in 0.28.0 (0.27.2 lacks it), vespo in 1.0.0 (0.29.1
    # lacks it); the releases between were not read, so a bound may be one patch release late
    Requirement("grpo_loss_cispo", "trl", "0.26.2", "GRPO's loss type cispo (GRPOConfig.loss_type)"),
    Requirement("grpo_loss_sapo", "trl", "0.26.2", "GRPO's loss type sapo (GRPOConfig.loss_type)"),
    Requirement("grpo_loss_luspo", "trl", "0.28.0", "GRPO's loss type luspo (GRPOConfig.loss_type)"),
    Requirement("grpo_loss_vespo", "trl", "1.0.0", "GRPO's loss type vespo (GRPOConfig.loss_type)"),
    # trl 1.15.0's SFT, DPO, KTO, GRPO and RLOO trainers compute the log-probabilities through a fused LM head whose
    # kernel imports Triton, with no fallback (trl.trainer.utils: `_ChunkedLogProbFunction = None` when the import
    # fails, then `.apply` on None): on a CPU-only torch, which ships no Triton, every such case errored with
    # "AttributeError: 'NoneType' object has no attribute 'apply'" (release sweep, 2026-12-07); 1.14 has no fused
    # head, 1.16.0 falls back to torch
    # the MoE cases adapt the experts as transformers 5 stores them, fused in 3-D parameters
    # (mlp.experts.gate_up_proj, down_proj); transformers 4 keeps a list of per-expert MLPs, where those names
    # match nothing (release sweep, transformers 4.56.0: the LoRA case's expert_lora check failed, the QLoRA
    # case errored quantizing the router, "AssertionError: N must be divisible by block_n")
    Requirement("fused_experts", "transformers", "5.0.0",
                "a mixture of experts stored fused (mlp.experts.gate_up_proj), which the case's target_parameters name"),
    # bitsandbytes' 8-bit optimizers have CPU kernels from 0.50.0 (`optimizer_update_32bit` registered for "cpu");
    # before, a CPU step ended in its GPU check, "AttributeError: 'NoneType' object has no attribute 'shape'"
    # (release sweep, 2026-12-07: 0.46.1 and 0.49.2 with SFT and DPO). suite/run/requirements.py asks it on a CPU only
    Requirement("optimizer_8bit_cpu", "bitsandbytes", "0.50.0", "the 8-bit optimizer on a CPU (adamw_8bit)"),
    # peft 0.16 and 0.17 import transformers.HybridCache at the top of peft_model.py, which transformers 5.0
    # removed; transformers' Trainer imports peft whenever it is installed, so every case errored on the import
    # (release sweep, 2026-12-07: peft 0.17.1 with transformers 5.23.0, 15 of 15 cases). peft 0.15 does not
    # import it, 0.18 imports it only where it is used
    Conflict("peft_hybrid_cache", "peft", "0.16.0", "0.18.0", "transformers", "5.0.0", None,
             "peft>=0.18.0 (or peft<0.16, or transformers<5.0.0)",
             "importing peft (0.16 and 0.17 import transformers.HybridCache, which transformers 5.0 removed)"),
    # LoRA on fused experts reloads through peft's conversion of transformers' weight converters (peft 0.19 on):
    # it calls WeightRenaming.convert(loading_info=...), which transformers 5.1 added (measured: peft 0.21.2 with
    # transformers 5.0.0, "TypeError: WeightRenaming.convert() got an unexpected keyword argument 'loading_info'"),
    # and peft 0.19 builds WeightConverter(distributed_operation=...), which transformers 5.6.0 stopped taking
    # (peft 0.20 sets the attribute instead; upgrade-check of 2026-12-07 and the release sweep: peft 0.19.1 with
    # transformers 5.23.0; read in the wheels for the bound 5.6.0, 5.5.4 takes it)
    Conflict("expert_lora_loading_info", "peft", "0.19.0", None, "transformers", "5.0.0", "5.1.0",
             "transformers>=5.1.0 (or peft<0.19.0)",
             "reloading LoRA on fused experts (peft's weight conversion passes loading_info to transformers')"),
    Conflict("expert_lora_distributed_operation", "peft", "0.19.0", "0.20.0", "transformers", "5.6.0", None,
             "peft>=0.20.0 (or transformers<5.6.0)",
             "reloading LoRA on fused experts (peft 0.19 passes distributed_operation to transformers' "
             "WeightConverter, which 5.6 dropped)"),
    # trl before 0.29 on transformers 5 (release sweep: trl 0.24.0 to 0.27.2 with transformers 5.23.0): its
    # availability checks borrow transformers' _is_package_available, which returns a (found, version) tuple in
    # 5, always true, so its DPO, GRPO and RLOO modules import what is not installed ("Failed to import
    # trl.trainer.dpo_trainer ... No module named 'mergekit'", 'weave' from 0.26); 0.29.0 has its own check.
    # Its KTOTrainer, until 0.27.2, sets model.warnings_issued, which transformers 5 removed (read in the wheels)
    Conflict("trl_package_checks", "trl", "0.0.0", "0.29.0", "transformers", "5.0.0", None,
             "trl>=0.29.0 (or transformers<5.0.0)",
             "trl's DPO, GRPO and RLOO trainers (before 0.29 trl misreads transformers 5's package check and "
             "imports packages that are not installed)"),
    Conflict("kto_warnings_issued", "trl", "0.0.0", "0.27.2", "transformers", "5.0.0", None,
             "trl>=0.27.2 (or transformers<5.0.0)",
             "trl's KTOTrainer (before 0.27.2 it writes model.warnings_issued, which transformers 5.0 removed)"),
    # the same write in its RewardTrainer until 0.24 (release sweep: trl 0.20.0 with transformers 5.23.0,
    # "'LlamaForSequenceClassification' object has no attribute 'warnings_issued'"; 0.24.0 rewrote the trainer)
    Conflict("reward_warnings_issued", "trl", "0.0.0", "0.24.0", "transformers", "5.0.0", None,
             "trl>=0.24.0 (or transformers<5.0.0)",
             "trl's RewardTrainer (before 0.24 it writes model.warnings_issued, which transformers 5.0 removed)"),
    # the tiny families' classes (suite/train/models.py), read in the released wheels: transformers 5.2.0 is
    # the first with models/qwen3_5, 5.5.0 the first with models/gemma4 (the others are in the floor, 4.56)
    Requirement("qwen3_5_classes", "transformers", "5.2.0", "Qwen3.5's classes (model_type qwen3_5_text)"),
    Requirement("gemma4_classes", "transformers", "5.5.0", "Gemma 4's classes (model_type gemma4_text)"),
    NeedsModule("trl_loss_kernel", "trl", "1.15.0", "1.16.0", "triton",
                "the log-probabilities of trl 1.15's fused LM head (its Triton kernel has no fallback)"),
)}


def key(name: str) -> str:
    return RENAMES[name].key()


def checkpointing_args(enabled: bool, use_reentrant: bool | None = None) -> dict:
    """Always explicit: trl's configs default gradient checkpointing to True, which silently
    changes memory and speed when a case did not ask for it. `use_reentrant` goes to the
    matching *_kwargs field."""
    name = key("checkpointing")
    out: dict = {name: enabled}
    if use_reentrant is not None:
        out[f"{name}_kwargs"] = {"use_reentrant": use_reentrant}
    return out


def max_length_args(max_length: int) -> dict:
    return {key("max_length"): max_length}


def dtype_kwarg(dtype) -> dict:
    return {key("dtype"): dtype}


def quantization_args(load_kwargs: dict) -> tuple[dict, dict]:
    """Split from_pretrained arguments into (SFTConfig.model_init_kwargs, SFTTrainer arguments):
    the quantization config goes where the installed trl takes it, and nowhere when there is none."""
    init = dict(load_kwargs)
    quant = init.pop("quantization_config", None)
    if quant is None:
        return init, {}
    if MOVES["quantization_config"].in_new_place():
        return init, {"quantization_config": quant}
    return {**init, "quantization_config": quant}, {}


# tiny architecture -> what the installed transformers must have to build it
ARCH_NEEDS = {"qwen3_5": ["qwen3_5_classes"], "gemma4": ["gemma4_classes"]}


def cannot_express(case, trainer_needs: list[str]) -> list[str]:
    """Why the installed versions cannot run the case as declared (each names the version);
    `trainer_needs`: what its backend needs of them (Backend.version_needs)."""
    needed = ["peft_hybrid_cache", *trainer_needs]  # transformers' Trainer imports peft for every case
    if case.loss_kind.assistant_turns:
        needed.append("assistant_only_loss")
    needed += case.uses.version_needs  # packing's bfd packing, neftune's noise
    needed += ARCH_NEEDS.get(case.model.arch or "", [])
    if case.lora.target_parameters:
        needed += ["lora_target_parameters", "fused_experts", "expert_lora_loading_info",
                   "expert_lora_distributed_operation"]
    return [msg for msg in (REQUIREMENTS[n].missing() for n in dict.fromkeys(needed)) if msg]


@functools.lru_cache(maxsize=1)
def sft_config_fields() -> frozenset[str]:
    from trl import SFTConfig

    return frozenset(f.name for f in dataclasses.fields(SFTConfig))


def sft_loss_types() -> tuple[str | None, ...]:
    """The loss_type values the installed trl's SFTConfig declares (its field's `choices`); (None,) for a
    trl without the field (before it, SFT had one loss: the token-level negative log-likelihood)."""
    from trl import SFTConfig

    field = next((f for f in dataclasses.fields(SFTConfig) if f.name == "loss_type"), None)
    if field is None:
        return (None,)
    return tuple(field.metadata.get("choices") or (field.default,))
