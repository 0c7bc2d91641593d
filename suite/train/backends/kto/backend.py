"""full / lora / qlora through trl's KTOTrainer with ref_model=None, on unpaired preference data (prompt,
completion, desirable or not): the reference is the disabled adapter (peft) or a second copy of the base
that trl loads itself (full), as in the DPO backend, whose reference check this one shares (preference/)."""
from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

from suite.matrix.axes import UNPAIRED_PREFERENCE_FORMATS
from suite.train.backends.kto import checks as own_checks
from suite.train.backends.kto import metrics as own_metrics
from suite.train.backends.kto import faults as own_faults
from suite.train.backends.kto import relations as own_relations
from suite.train.backends.kto.config import KTO_BETA, kto_config
from suite.train.backends.preference.backend import Preference

if TYPE_CHECKING:
    from suite.matrix.spec import Case


class KTO(Preference):
    name = "trl KTOTrainer"
    label = "KTO"
    trainer = "kto"
    description = "trainer: trl's KTOTrainer (unpaired preference data, ref_model=None)"
    formats = UNPAIRED_PREFERENCE_FORMATS
    # as DPOTrainer: no packing or NEFTune; the KL term needs batches of several rows (trl's collator
    # pairs each prompt with another row's completion), so accumulation is left out too
    features = ("gradient_checkpointing", "adamw_8bit", "liger", "flash_attn", "sdpa", "eager", "by_name")
    checks = own_checks.CHECKS
    metrics = own_metrics.METRICS
    logged_metrics = own_metrics.LOGGED_METRICS
    logged_keys = own_metrics.LOGGED_KEYS
    BETA = KTO_BETA
    relations = own_relations.RELATIONS
    faults = Preference.faults + (own_faults.KTO_FAULTS,)
    settings = ("beta", "desirable_weight", "undesirable_weight", "loss_type")

    def version_needs(self, case: Case) -> list[str]:
        by_name = ["kto_by_name"] if case.uses.by_name else []
        return ["trl_loss_kernel", "kto_warnings_issued", *by_name]  # its module imports no optional package

    def trl_trainer(self) -> type:
        from trl import KTOTrainer

        return KTOTrainer

    def trl_config(self, case: Case, output_dir: Path, device: str, precision: str, init_kwargs: dict | None) -> Any:
        return kto_config(case, output_dir, device, precision, init_kwargs)


BACKEND = KTO()
