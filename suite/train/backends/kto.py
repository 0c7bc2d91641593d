"""full / lora / qlora through trl's KTOTrainer with ref_model=None, on unpaired preference data (prompt,
completion, desirable or not): the reference is the disabled adapter (peft) or a second copy of the base
that trl loads itself (full), as in the DPO backend, whose reference check this one reuses."""
from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

from suite.matrix.axes import UNPAIRED_PREFERENCE_FORMATS
from suite.train import args as train_args
from suite.train import compat, models, probes
from suite.train.backends.base import NO_HOOKS, BuildHooks
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

    def declared_fields(self, case: Case, common: dict) -> dict:
        return {**common, "max_length": case.training.max_length, "beta": self.BETA, **dict(case.training.extra)}

    def build_trainer(self, case: Case, model_path: str, device: str, precision: str, dtype: Any, output_dir: Path,
                      dataset: Any, callbacks: list, eval_dataset: Any = None,
                      hooks: BuildHooks = NO_HOOKS) -> tuple[Any, Any, dict]:
        from trl import KTOTrainer

        tokenizer = hooks.tokenizer if hooks.tokenizer is not None else models.load_tokenizer(model_path)
        probes.ensure_chat_template(tokenizer)
        load_kwargs = self.reload_kwargs(case, device, dtype)
        init_kwargs, trainer_kwargs = compat.quantization_args(load_kwargs)
        args = train_args.kto_config(case, output_dir, device, precision, init_kwargs)
        trainer = (hooks.trainer_cls or KTOTrainer)(
            model=model_path, ref_model=None, args=args, train_dataset=dataset, eval_dataset=eval_dataset,
            processing_class=tokenizer, peft_config=self.peft_config(case, hooks), callbacks=callbacks,
            **trainer_kwargs, **hooks.trainer_kwargs)
        return trainer, tokenizer, load_kwargs


BACKEND = KTO()
