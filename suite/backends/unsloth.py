"""unsloth: FastLanguageModel with its own get_peft_model, 4-bit, then trl's SFTTrainer.

Imported only inside an unsloth case's child: unsloth patches transformers and trl on import,
which must not leak into other cases.
"""
from __future__ import annotations

from pathlib import Path

from suite import train
from suite.cases import Case

TARGETS = ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"]


def build_trainer(case: Case, model_path: str, device: str, precision: str, dtype, output_dir: Path,
                  dataset, callbacks):
    import unsloth  # noqa: F401  (must come before trl/transformers use, it patches them)
    from unsloth import FastLanguageModel
    from trl import SFTTrainer

    model, tokenizer = FastLanguageModel.from_pretrained(
        model_name=model_path, max_seq_length=case.training.max_length, dtype=dtype, load_in_4bit=True)
    train.ensure_chat_template(tokenizer)
    target = case.lora.target_modules
    model = FastLanguageModel.get_peft_model(
        model, r=case.lora.r, lora_alpha=case.lora.alpha, lora_dropout=case.lora.dropout,
        target_modules=TARGETS if target == "all-linear" else list(target) if not isinstance(target, str) else [target],
        use_gradient_checkpointing="unsloth" if "gradient_checkpointing" in case.features else False,
        random_state=case.training.seed)
    args = train._sft_config(case, output_dir, device, precision, None)
    trainer = SFTTrainer(model=model, args=args, train_dataset=dataset, processing_class=tokenizer,
                         callbacks=callbacks)
    return trainer, tokenizer, {"dtype": dtype}


def reload(case: Case, model_path: str, checkpoint: Path, load_kwargs: dict):
    from unsloth import FastLanguageModel

    model, tokenizer = FastLanguageModel.from_pretrained(
        model_name=str(checkpoint), max_seq_length=case.training.max_length, dtype=load_kwargs["dtype"],
        load_in_4bit=True)
    FastLanguageModel.for_inference(model)
    return train._probe_logits(model, tokenizer, "cuda"), "FastLanguageModel.from_pretrained"
