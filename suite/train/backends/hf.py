"""full / lora / qlora / lora_8bit through trl's SFTTrainer, loading the model from its local directory."""
from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

from suite.train import args as train_args
from suite.train import compat, models, probes, tokens
from suite.train.backends.base import Backend

if TYPE_CHECKING:
    from suite.matrix.spec import Case


class HFSFTTrainer(Backend):
    name = "trl SFTTrainer"
    label = "HF"
    methods = ("full", "lora", "qlora", "lora_8bit")
    four_bit_methods = ("qlora",)
    eight_bit_methods = ("lora_8bit",)

    def reload_kwargs(self, case: Case, device: str, dtype: Any) -> dict:
        return train_args.model_init_kwargs(case, device, dtype)

    def build_trainer(self, case: Case, model_path: str, device: str, precision: str, dtype: Any, output_dir: Path,
                      dataset: Any, callbacks: list, eval_dataset: Any = None) -> tuple[Any, Any, dict]:
        from trl import SFTTrainer

        tokenizer = models.load_tokenizer(model_path)
        probes.ensure_chat_template(tokenizer)
        load_kwargs = self.reload_kwargs(case, device, dtype)
        if case.dataset in tokens.FORMATS:  # added tokens: the model is resized before trl sees it
            from transformers import AutoModelForCausalLM

            new_ids = tokens.chat_tokenizer(tokenizer)
            model = AutoModelForCausalLM.from_pretrained(model_path, **load_kwargs)
            tokens.resize(model, len(tokenizer))
            args = train_args.sft_config(case, output_dir, device, precision, None)
            trainer = SFTTrainer(model=model, args=args, train_dataset=dataset, eval_dataset=eval_dataset,
                                 processing_class=tokenizer,
                                 peft_config=train_args.lora_config(case, **tokens.lora_kwargs(case, new_ids)),
                                 callbacks=callbacks)
            return trainer, tokenizer, load_kwargs
        init_kwargs, trainer_kwargs = compat.quantization_args(load_kwargs)
        args = train_args.sft_config(case, output_dir, device, precision, init_kwargs)
        # The model goes in as a path so that trl's own loading code (hub id or directory) is what runs.
        trainer = SFTTrainer(model=model_path, args=args, train_dataset=dataset, eval_dataset=eval_dataset,
                             **{compat.key("processing_class"): tokenizer},
                             peft_config=train_args.lora_config(case) if case.is_adapter else None,
                             callbacks=callbacks, **trainer_kwargs)
        return trainer, tokenizer, load_kwargs

    def reload(self, case: Case, model_path: str, checkpoint: Path, load_kwargs: dict) -> tuple[Any, str]:
        from transformers import AutoModelForCausalLM

        tokenizer = models.load_tokenizer(model_path)
        device = "cuda" if load_kwargs.get("device_map") else "cpu"
        if case.is_adapter:
            from peft import PeftModel

            base = AutoModelForCausalLM.from_pretrained(model_path, **load_kwargs)
            if case.dataset in tokens.FORMATS:  # the saved tokenizer says how far the base was grown
                tokens.resize(base, len(models.load_tokenizer(checkpoint)))
            model = PeftModel.from_pretrained(base, str(checkpoint))
            loader = "PeftModel.from_pretrained"
        else:
            model = AutoModelForCausalLM.from_pretrained(str(checkpoint), **load_kwargs)
            loader = "AutoModelForCausalLM.from_pretrained"
        return probes.probe_logits(model, tokenizer, device), loader


BACKEND = HFSFTTrainer()
