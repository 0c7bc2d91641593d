"""lora / qlora through transformers' own PEFT path, no trl: the model is loaded, wrapped by
get_peft_model and handed to a plain Trainer with a causal-LM collator; the Trainer saves only the
adapter. The reload is the SFT backend's (PeftModel.from_pretrained on the base)."""
from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

from suite.matrix.axes import LORA
from suite.train import models
from suite.train.backends.base import NO_HOOKS, BuildHooks
from suite.train.backends.plain.config import training_arguments
from suite.train.backends.sft.backend import HFSFTTrainer
from suite.train.quantize import quantizer_for

if TYPE_CHECKING:
    from suite.matrix.spec import Case


class PlainTrainer(HFSFTTrainer):
    name = "transformers Trainer with peft"
    label = "Trainer"
    trainer = "hf_trainer"
    description = "trainer: transformers' plain Trainer with a peft model"
    adapters = (LORA,)
    twin = "sft"  # the same adapter through trl's SFTTrainer
    trainer_class = "Trainer"  # the class it builds, which its name does not end with (suite/run/session.py's _backend_info)
    formats = ("text",)  # tokenised here; the chat formats are trl's
    features = ("neftune", "gradient_checkpointing", "grad_accum", "adamw_8bit", "liger", "flash_attn", "sdpa", "eager",
                "ddp", "fsdp")
    distributed = True
    max_length_cut = "at most"  # rows are cut when tokenised

    def version_needs(self, case: Case) -> list[str]:
        return []

    def declared_fields(self, case: Case, common: dict) -> dict:
        return {**common, **dict(case.training.extra)}  # TrainingArguments: no packing, no max_length

    def build_trainer(self, case: Case, model_path: str, device: str, precision: str, dtype: Any, output_dir: Path,
                      dataset: Any, callbacks: list, eval_dataset: Any = None,
                      hooks: BuildHooks = NO_HOOKS) -> tuple[Any, Any, dict]:
        from peft import get_peft_model, prepare_model_for_kbit_training
        from transformers import AutoModelForCausalLM, DataCollatorForLanguageModeling, Trainer

        tokenizer = hooks.tokenizer if hooks.tokenizer is not None else models.load_tokenizer(model_path)
        load_kwargs = self.reload_kwargs(case, device, dtype)
        args = training_arguments(case, output_dir, device, precision)
        model = AutoModelForCausalLM.from_pretrained(model_path, **load_kwargs)
        if quantizer_for(case).quantized:  # what peft's guides do before wrapping a 4- or 8-bit model
            model = prepare_model_for_kbit_training(model, use_gradient_checkpointing=args.gradient_checkpointing)
        elif args.gradient_checkpointing:  # frozen embeddings: reentrant checkpointing needs grads on its inputs
            model.enable_input_require_grads()
        model = get_peft_model(model, self.peft_config(case, hooks))
        max_length = case.training.max_length

        def tokenize(rows):
            return rows.map(lambda row: tokenizer(row["text"], truncation=True, max_length=max_length),
                            remove_columns=rows.column_names)

        trainer = (hooks.trainer_cls or Trainer)(
            model=model, args=args, train_dataset=tokenize(dataset),
            eval_dataset=tokenize(eval_dataset) if eval_dataset is not None else None, processing_class=tokenizer,
            data_collator=DataCollatorForLanguageModeling(tokenizer, mlm=False), callbacks=callbacks,
            **hooks.trainer_kwargs)
        return trainer, tokenizer, load_kwargs


BACKEND = PlainTrainer()
