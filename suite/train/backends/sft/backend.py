"""full / lora / qlora / lora_8bit through trl's SFTTrainer, loading the model from its local directory."""
from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

from suite.train import args as train_args
from suite.train import compat, models, probes, tokens
from suite.train.backends.base import NO_HOOKS, Backend, BuildHooks
from suite.train.backends.sft.config import sft_config

if TYPE_CHECKING:
    from suite.matrix.spec import Case


class HFSFTTrainer(Backend):
    name = "trl SFTTrainer"
    label = "HF"

    def reload_kwargs(self, case: Case, device: str, dtype: Any) -> dict:
        return train_args.model_init_kwargs(case, device, dtype)

    def build_trainer(self, case: Case, model_path: str, device: str, precision: str, dtype: Any, output_dir: Path,
                      dataset: Any, callbacks: list, eval_dataset: Any = None,
                      hooks: BuildHooks = NO_HOOKS) -> tuple[Any, Any, dict]:
        tokenizer = hooks.tokenizer if hooks.tokenizer is not None else models.load_tokenizer(model_path)
        probes.ensure_chat_template(tokenizer)
        trainer_cls = hooks.trainer_cls or self.trl_trainer()
        load_kwargs = self.reload_kwargs(case, device, dtype)
        if case.dataset in tokens.FORMATS:  # added tokens: the model is resized before trl sees it
            from transformers import AutoModelForCausalLM

            new_ids = tokens.chat_tokenizer(tokenizer)
            model = AutoModelForCausalLM.from_pretrained(model_path, **load_kwargs)
            tokens.resize(model, len(tokenizer))
            args = self.trl_config(case, output_dir, device, precision, None)
            peft_config = (hooks.peft_config if hooks.peft_config is not None
                           else train_args.lora_config(case, **tokens.lora_kwargs(case, new_ids)))
            trainer = trainer_cls(model=model, args=args, train_dataset=dataset, eval_dataset=eval_dataset,
                                  processing_class=tokenizer, peft_config=peft_config, callbacks=callbacks,
                                  **hooks.trainer_kwargs)
            return trainer, tokenizer, load_kwargs
        init_kwargs, trainer_kwargs = compat.quantization_args(load_kwargs)
        args = self.trl_config(case, output_dir, device, precision, init_kwargs)
        # The model goes in as a path so that trl's own loading code (hub id or directory) is what runs.
        trainer = trainer_cls(model=model_path, args=args, train_dataset=dataset, eval_dataset=eval_dataset,
                              **self.given_tokenizer(case, tokenizer),
                              peft_config=self.peft_config(case, hooks), callbacks=callbacks, **trainer_kwargs,
                              **hooks.trainer_kwargs)
        return trainer, self.tokenizer_of(case, trainer, tokenizer), load_kwargs

    def given_tokenizer(self, case: Case, tokenizer: Any) -> dict:
        """The trainer's tokenizer argument: the suite's own, or none for a by-name case (trl then loads it from
        the model's directory, as a user who names the model gets it)."""
        return {} if case.uses.by_name else {compat.key("processing_class"): tokenizer}

    def tokenizer_of(self, case: Case, trainer: Any, tokenizer: Any) -> Any:
        """The tokenizer the trainer trains with: for a by-name case the one trl loaded, which the probes and
        reload then use too."""
        return trainer.processing_class if case.uses.by_name else tokenizer

    def trl_trainer(self) -> type:
        """The trl trainer class it builds."""
        from trl import SFTTrainer

        return SFTTrainer

    def trl_config(self, case: Case, output_dir: Path, device: str, precision: str, init_kwargs: dict | None) -> Any:
        """Its trl config (a trainer of its own package overrides it with its config.py's builder)."""
        return sft_config(case, output_dir, device, precision, init_kwargs)

    def peft_config(self, case: Case, hooks: BuildHooks) -> Any:
        """The hooks' adapter config, else the case's LoraConfig for an adapter case, else None."""
        if hooks.peft_config is not None:
            return hooks.peft_config
        return train_args.lora_config(case) if case.is_adapter else None

    def reload(self, case: Case, model_path: str, checkpoint: Path, load_kwargs: dict) -> tuple[Any, str]:
        """peft's PeftModel on a fresh base for an adapter, from_pretrained for a full model: the load
        routes' own functions (suite/train/routes.py)."""
        from suite.train import routes

        device = "cuda" if load_kwargs.get("device_map") else "cpu"
        ctx = self.route_context(case, model_path, checkpoint, load_kwargs, device)
        if case.is_adapter:
            model, loader = routes.peft_model(ctx), "PeftModel.from_pretrained"
        else:
            model, loader = routes.FullModel().load(ctx), "AutoModelForCausalLM.from_pretrained"
        return probes.probe_logits(model, models.load_tokenizer(model_path), device), loader


BACKEND = HFSFTTrainer()
