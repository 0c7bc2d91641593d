"""full / lora / qlora / lora_8bit through trl's DPOTrainer with ref_model=None, as the LLM Engineers Handbook's
finetune.py runs it after its SFT stage: the reference is the disabled adapter (peft) or a second copy
of the base that trl loads itself (full)."""
from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

from suite.matrix.axes import PREFERENCE_FORMATS
from suite.train.backends.base import TrainerCheck
from suite.train.backends.dpo import checks as own_checks
from suite.train.backends.dpo import metrics as own_metrics
from suite.train.backends.dpo import faults as own_faults
from suite.train.backends.dpo import relations as own_relations
from suite.train.backends.dpo.config import DPO_BETA, dpo_config
from suite.train.backends.preference import own_logps
from suite.train.backends.preference.backend import Preference

if TYPE_CHECKING:
    from suite.matrix.spec import Case


# loss types that trl's floor release lacks -> the compat requirement naming the release they came in
LOSS_TYPE_NEEDS = {"aot_unpaired": "dpo_aot_unpaired", "sigmoid_norm": "dpo_sigmoid_norm"}


class DPO(Preference):
    name = "trl DPOTrainer"
    label = "DPO"
    trainer = "dpo"
    description = "trainer: trl's DPOTrainer (preference data, ref_model=None)"
    formats = PREFERENCE_FORMATS
    # no packing or NEFTune in DPOTrainer; attention variants, checkpointing and accumulation apply
    features = ("gradient_checkpointing", "grad_accum", "adamw_8bit", "liger", "flash_attn", "sdpa", "eager", "ddp", "fsdp",
                "by_name")
    checks = own_checks.CHECKS
    metrics = own_metrics.METRICS
    logged_metrics = own_metrics.LOGGED_METRICS
    logged_keys = own_metrics.LOGGED_KEYS
    BETA = DPO_BETA  # trl's default, as the LLM Engineers Handbook's DPO stage runs it
    relations = own_relations.RELATIONS
    faults = Preference.faults + (own_faults.DPO_FAULTS,)
    settings = ("beta", "label_smoothing", "loss_type", "loss_weights", "f_divergence_type", "use_weighting",
                "ld_alpha", "discopop_tau", "precompute_ref_log_probs")
    own_forward = staticmethod(own_logps.dpo_own)

    def checks_for(self, case: Case) -> tuple[TrainerCheck, ...]:
        """The rewards-rise check unless the case turns it off (a loss type that lowers the margin first)."""
        return tuple(c for c in super().checks_for(case)
                     if c is not own_checks.REWARDS_RISE or case.checks.dpo_rewards_rise)

    def version_needs(self, case: Case) -> list[str]:
        """The trainer's needs, and for an options case (cases/dpo_options.yaml) the trl release its relations'
        record and its loss type came in (suite/train/compat.py)."""
        types = dict(case.training.extra).get("loss_type") or ()
        options = ["preference_fused_head"] if case.option else []
        return super().version_needs(case) + options + [LOSS_TYPE_NEEDS[t] for t in types if t in LOSS_TYPE_NEEDS]

    def trl_trainer(self) -> type:
        from trl import DPOTrainer

        return DPOTrainer

    def trl_config(self, case: Case, output_dir: Path, device: str, precision: str, init_kwargs: dict | None) -> Any:
        return dpo_config(case, output_dir, device, precision, init_kwargs)


BACKEND = DPO()
