"""The same training as a suite case, written as a user would with trl alone: no callbacks, no
counting collator, no reload check. The overhead script compares the suite against this."""
from __future__ import annotations

import os
import time


def train(case, process_start: float) -> dict:
    import torch
    from datasets import Dataset
    from peft import LoraConfig
    from transformers import PreTrainedTokenizerFast
    from trl import SFTConfig, SFTTrainer

    from suite.train import compat, data, models

    torch.use_deterministic_algorithms(True, warn_only=True)  # the case's configuration, as in the suite
    torch.set_num_threads(int(os.environ.get("FTSUITE_CPU_THREADS", "1")))
    path = str(models.materialise_tiny(case.model.arch))
    t = case.training
    tokenizer = PreTrainedTokenizerFast.from_pretrained(path)
    dataset = Dataset.from_list(data.generate(case.dataset, t.num_samples, seed=t.seed, turns=t.turns))
    args = SFTConfig(output_dir="/tmp/ftsuite-bare", max_steps=case.steps, per_device_train_batch_size=t.batch_size,
                     gradient_accumulation_steps=t.grad_accum, learning_rate=t.learning_rate, seed=t.seed,
                     data_seed=t.seed, logging_steps=1, save_strategy="no", report_to="none", disable_tqdm=True,
                     use_cpu=True, bf16=False, max_length=t.max_length, **compat.checkpointing_args(False),
                     dataloader_num_workers=0, model_init_kwargs={"dtype": "float32", "attn_implementation": "sdpa"})
    peft_config = LoraConfig(r=case.lora.r, lora_alpha=case.lora.alpha, lora_dropout=case.lora.dropout,
                             target_modules="all-linear", task_type="CAUSAL_LM") if case.is_adapter else None
    trainer = SFTTrainer(model=path, args=args, train_dataset=dataset, processing_class=tokenizer,
                         peft_config=peft_config)
    t0 = time.perf_counter()
    result = trainer.train()
    wall = time.perf_counter() - t0
    trainer.save_model("/tmp/ftsuite-bare/checkpoint")
    from suite.train.measure import peak_rss_bytes  # one read of /proc/self/status, after the fact

    return {"train_runtime": result.metrics["train_runtime"], "train_wall_s": wall, "steps": trainer.state.global_step,
            "peak_rss_bytes": peak_rss_bytes()}
