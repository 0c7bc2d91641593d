"""full / lora / qlora / lora_8bit through trl's DPOTrainer with ref_model=None, as the LLM Engineers Handbook's
finetune.py runs it after its SFT stage: the reference is the disabled adapter (peft) or a second copy
of the base that trl loads itself (full)."""
from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

from suite.train import args as train_args
from suite.train import compat, data, models, probes
from suite.train.backends.hf import HFSFTTrainer

if TYPE_CHECKING:
    from suite.matrix.spec import Case


class DPO(HFSFTTrainer):
    name = "trl DPOTrainer"
    label = "DPO"
    trainer = "dpo"
    formats = data.PREFERENCE_FORMATS
    # no packing or NEFTune in DPOTrainer; attention variants, checkpointing and accumulation apply
    features = ("gradient_checkpointing", "grad_accum", "adamw_8bit", "liger", "flash_attn", "sdpa", "eager", "ddp", "fsdp")
    preference = True

    def build_trainer(self, case: Case, model_path: str, device: str, precision: str, dtype: Any, output_dir: Path,
                      dataset: Any, callbacks: list, eval_dataset: Any = None) -> tuple[Any, Any, dict]:
        from trl import DPOTrainer

        tokenizer = models.load_tokenizer(model_path)
        probes.ensure_chat_template(tokenizer)
        load_kwargs = self.reload_kwargs(case, device, dtype)
        init_kwargs, trainer_kwargs = compat.quantization_args(load_kwargs)
        args = train_args.dpo_config(case, output_dir, device, precision, init_kwargs)
        trainer = DPOTrainer(model=model_path, ref_model=None, args=args, train_dataset=dataset, eval_dataset=eval_dataset,
                             processing_class=tokenizer,
                             peft_config=train_args.lora_config(case) if case.is_adapter else None,
                             callbacks=callbacks, **trainer_kwargs)
        return trainer, tokenizer, load_kwargs

    def reference(self, trainer: Any, case: Case, model_path: str, load_kwargs: dict, tokenizer: Any,
                  device: str) -> dict | None:
        """The reference the loss was computed against, after training, vs the base loaded afresh: a
        trained (or shared) reference would move DPO's implicit rewards without showing in the loss."""
        from transformers import AutoModelForCausalLM

        fresh = probes.probe_logits(AutoModelForCausalLM.from_pretrained(model_path, **load_kwargs), tokenizer, device)
        model = trainer.accelerator.unwrap_model(trainer.model, keep_fp32_wrapper=False)
        if trainer.ref_model is not None:
            kind = "ref_model (a copy trl loaded)"
            ref = probes.probe_logits(trainer.accelerator.unwrap_model(trainer.ref_model, keep_fp32_wrapper=False),
                                      tokenizer, device)
        else:
            kind = "the disabled adapter"
            with model.disable_adapter():
                ref = probes.probe_logits(model, tokenizer, device)
        model.train()
        diff = (ref - fresh).abs().max().item() if ref.shape == fresh.shape else float("inf")
        return {"kind": kind, "max_abs_logit_diff": diff}


BACKEND = DPO()
