"""Does DeepSpeed ZeRO-2/3 train on a CPU with 2 ranks? A tiny Llama (full fine-tune and a peft LoRA) trained
by transformers' Trainer under ZeRO-2 and ZeRO-3, two ranks launched by torchrun (gloo), one line each:
what wrapped the model, the world size, the first and last loss. Run it with an interpreter that has
DeepSpeed (never the control venv: DeepSpeed is not in the control stack), e.g.

    python -m venv /tmp/ds && /tmp/ds/bin/pip install torch==2.13.0 deepspeed transformers==5.23.0 \
        accelerate==1.15.0 peft==0.21.2
    /tmp/ds/bin/python benchmarks/deepspeed_cpu.py

The measurement and its outcome are in docs/gpu.md ("DeepSpeed on a CPU")."""
from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import time

STAGES = (2, 3)
METHODS = ("full", "lora")


def rank_main(stage: int, method: str, out_dir: str) -> None:
    """One rank: build, train 15 steps, rank 0 prints a JSON line."""
    import torch
    import torch.distributed as dist
    from transformers import LlamaConfig, LlamaForCausalLM, Trainer, TrainingArguments

    torch.manual_seed(0)
    cfg = LlamaConfig(vocab_size=128, hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                      num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=64)
    model = LlamaForCausalLM(cfg)
    if method == "lora":
        from peft import LoraConfig, get_peft_model

        model = get_peft_model(model, LoraConfig(r=8, lora_alpha=16, target_modules="all-linear"))
    ids = torch.randint(0, 128, (64, 16), generator=torch.Generator().manual_seed(1))
    data = [{"input_ids": r, "labels": r.clone()} for r in ids]
    ds = {"train_micro_batch_size_per_gpu": "auto", "gradient_accumulation_steps": "auto",
          "zero_optimization": {"stage": stage},
          "optimizer": {"type": "AdamW", "params": {"lr": "auto", "torch_adam": True}}}
    args = TrainingArguments(output_dir=out_dir, per_device_train_batch_size=4, max_steps=15, learning_rate=1e-2,
                             logging_steps=1, report_to=[], save_strategy="no", deepspeed=ds, use_cpu=True, seed=0)
    trainer = Trainer(model=model, args=args, train_dataset=data)
    trainer.train()
    losses = [h["loss"] for h in trainer.state.log_history if "loss" in h]
    engine = trainer.model_wrapped
    # ZeRO-3 partitions each parameter across the ranks (DeepSpeed marks them with ds_id); ZeRO-2 only the
    # optimizer state and gradients
    partitioned = sum(1 for p in engine.module.parameters() if hasattr(p, "ds_id"))
    if trainer.is_world_process_zero():
        print("RESULT " + json.dumps({
            "zero_stage": engine.zero_optimization_stage(), "partitioned_params": partitioned,
            "stage": stage, "method": method, "world_size": dist.get_world_size(), "backend": dist.get_backend(),
            "model_wrapped": type(trainer.model_wrapped).__name__,
            "distributed_type": str(trainer.accelerator.distributed_type), "first_loss": losses[0],
            "last_loss": losses[-1]}), flush=True)


def main() -> int:
    import deepspeed
    import torch

    print(f"torch {torch.__version__}, deepspeed {deepspeed.__version__}, python {sys.version.split()[0]}")
    failed = 0
    for stage in STAGES:
        for method in METHODS:
            t0 = time.time()
            with tempfile.TemporaryDirectory() as tmp:
                cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", "--master_port",
                       str(29400 + stage * 10 + len(method)), __file__, "--rank", str(stage), method, tmp]
                done = subprocess.run(cmd, capture_output=True, text=True, env={**os.environ, "OMP_NUM_THREADS": "1"})
            line = next((ln[7:] for ln in done.stdout.splitlines() if ln.startswith("RESULT ")), None)
            if done.returncode or line is None:
                failed += 1
                errors = [ln for ln in (done.stdout + done.stderr).splitlines() if "Error" in ln]
                print(f"ZeRO-{stage} {method}: FAILED (exit {done.returncode}): {errors[-1] if errors else '?'}")
            else:
                print(f"ZeRO-{stage} {method}: {line} ({time.time() - t0:.0f} s)")
    return 1 if failed else 0


if __name__ == "__main__":
    if len(sys.argv) == 5 and sys.argv[1] == "--rank":
        rank_main(int(sys.argv[2]), sys.argv[3], sys.argv[4])
    else:
        raise SystemExit(main())
