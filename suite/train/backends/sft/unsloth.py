"""unsloth: FastLanguageModel with its own get_peft_model, 4-bit, then trl's SFTTrainer.

Its child is always a fresh interpreter that imports unsloth first: unsloth patches transformers,
trl and peft on import, which must neither come after them nor leak into other cases.
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING, Any

from suite.matrix.axes import BNB_4BIT, LORA, UNSLOTH
from suite.train import models, probes
from suite.train.backends.base import NO_HOOKS, Backend, BuildHooks
from suite.train.backends.sft.config import sft_config

if TYPE_CHECKING:
    from suite.matrix.spec import Case

TARGETS = ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"]


class Unsloth(Backend):
    name = "unsloth"
    label = "unsloth"
    library = UNSLOTH
    adapters = (LORA,)
    quantizations = (BNB_4BIT,)  # it loads the base in 4-bit itself
    packages = (("unsloth", "unsloth"),)
    picks_attention = True
    distributed = False  # it trains on one GPU
    spawn_always = True
    formats = ("text", "messages", "prompt_completion", "conversational_pc")  # no added tokens: it loads its own

    def prepare_child(self) -> None:
        # unsloth writes generated code to ./unsloth_compiled_cache unless told otherwise
        os.environ.setdefault("UNSLOTH_COMPILE_LOCATION", str(models.cache_root() / "unsloth_compiled_cache"))
        import unsloth  # noqa: F401  (before the stack: it patches transformers, trl and peft)

    def cannot_run(self, case: Case) -> str | None:
        if case.model.arch == "qwen2" and (case.model.scale.built or case.model.config):
            # unsloth reloads the tokenizer with AutoTokenizer, which transformers 5 resolves to Qwen2's
            # BPE class for a qwen2 directory: the suite's word-level tokenizer would be lost
            return ("unsloth with a qwen2 model built by the suite: unsloth reloads the tokenizer through "
                    "AutoTokenizer, which maps a qwen2 directory to Qwen2's BPE class and loses the suite's "
                    "word-level tokenizer; use a built llama or mistral model, or real Qwen2 weights")
        return None

    def routes(self, case: Case) -> tuple:
        """Its own loader is its route (reload below, GPU only, as its cases are); the transformers and
        peft routes would load its saved 4-bit base their own way, which is not what its users do."""
        return ()

    def reload_kwargs(self, case: Case, device: str, dtype: Any) -> dict:
        return {"dtype": dtype}

    def build_trainer(self, case: Case, model_path: str, device: str, precision: str, dtype: Any, output_dir: Path,
                      dataset: Any, callbacks: list, eval_dataset: Any = None,
                      hooks: BuildHooks = NO_HOOKS) -> tuple[Any, Any, dict]:
        import unsloth  # noqa: F401  (must come before trl/transformers use, it patches them)
        from trl import SFTTrainer
        from unsloth import FastLanguageModel

        model, tokenizer = FastLanguageModel.from_pretrained(
            model_name=model_path, max_seq_length=case.training.max_length, dtype=dtype, load_in_4bit=True)
        probes.ensure_chat_template(tokenizer)
        target = case.lora.target_modules
        model = FastLanguageModel.get_peft_model(
            model, r=case.lora.r, lora_alpha=case.lora.alpha, lora_dropout=case.lora.dropout,
            target_modules=TARGETS if target == "all-linear" else list(target) if not isinstance(target, str) else [target],
            use_gradient_checkpointing="unsloth" if case.uses.checkpointing else False,
            random_state=case.training.seed)
        args = sft_config(case, output_dir, device, precision, None)
        trainer = (hooks.trainer_cls or SFTTrainer)(model=model, args=args, train_dataset=dataset,
                                                    eval_dataset=eval_dataset, processing_class=tokenizer,
                                                    callbacks=callbacks, **hooks.trainer_kwargs)
        return trainer, tokenizer, self.reload_kwargs(case, device, dtype)

    def reload(self, case: Case, model_path: str, checkpoint: Path, load_kwargs: dict) -> tuple[Any, str]:
        from unsloth import FastLanguageModel

        model, tokenizer = FastLanguageModel.from_pretrained(
            model_name=str(checkpoint), max_seq_length=case.training.max_length, dtype=load_kwargs["dtype"],
            load_in_4bit=True)
        FastLanguageModel.for_inference(model)
        return probes.probe_logits(model, tokenizer, "cuda"), "FastLanguageModel.from_pretrained"


BACKEND = Unsloth()
