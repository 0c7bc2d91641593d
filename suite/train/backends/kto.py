"""full / lora / qlora through trl's KTOTrainer with ref_model=None, on unpaired preference data (prompt,
completion, desirable or not): the reference is the disabled adapter (peft) or a second copy of the base
that trl loads itself (full), as in the DPO backend, whose reference check this one reuses."""
from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

from suite.matrix.axes import UNPAIRED_PREFERENCE_FORMATS
from suite.train import args as train_args
from suite.train.backends.dpo import DPO

if TYPE_CHECKING:
    from suite.matrix.spec import Case


class KTO(DPO):
    name = "trl KTOTrainer"
    label = "KTO"
    trainer = "kto"
    description = "trainer: trl's KTOTrainer (unpaired preference data, ref_model=None)"
    formats = UNPAIRED_PREFERENCE_FORMATS
    # as DPOTrainer: no packing or NEFTune; the KL term needs batches of several rows (trl's collator
    # pairs each prompt with another row's completion), so accumulation is left out too
    features = ("gradient_checkpointing", "adamw_8bit", "liger", "flash_attn", "sdpa", "eager")
    # policy equals reference before the first update (KL estimate 0, every loss term 1 - sigmoid(0)),
    # desirable rewards rise above undesirable ones, the reference is the base, untouched
    checks = ("kto_starts_at_reference", "kto_rewards_separate", "reference_untouched")
    logged_metrics = {"kto_reward_margin_final": "rewards/margins", "kto_kl_final": "kl"}
    BETA = train_args.KTO_BETA

    def version_needs(self, case: Case) -> list[str]:
        return ["trl_loss_kernel", "kto_warnings_issued"]  # its module imports no optional package

    def trl_trainer(self) -> type:
        from trl import KTOTrainer

        return KTOTrainer

    def trl_config(self, case: Case, output_dir: Path, device: str, precision: str, init_kwargs: dict | None) -> Any:
        return train_args.kto_config(case, output_dir, device, precision, init_kwargs)


BACKEND = KTO()
