"""The Trainer's own resume of a sharded row: transformers' `Trainer` on 2 FSDP2 ranks (gloo, CPU) checkpoints through
`save_model` and resumes with `resume_from_checkpoint`, as a user of the fully_shard rows would.

One launch of 2 ranks: a tiny Llama with a LoRA adapter (peft, Gaussian init), sharded as the fully_shard rows shard
it (suite/train/wrapped.py `shard`: each decoder layer and the root, the model marked prepared so accelerate leaves
it alone on MULTI_CPU ranks), trained STEPS steps by `Trainer` with a checkpoint every step; then a new model and
Trainer, sharded the same way, resume from the checkpoint after step STOP and train to STEPS. Rank 0 writes both
runs' final adapters (gathered full). Measured 2026-12-07 (torch 2.13.0+cpu, transformers 5.23.0, accelerate 1.15.0,
peft 0.21.2): the first checkpoint already raises in `save_model` (tests/run/test_fsdp2.py, a strict xfail;
docs/gpu.md says where).

    python -m suite.run.distributed_trainer_resume   # a JSON line: the largest difference, or the error
"""
from __future__ import annotations

import json
import os
import sys
import tempfile
from pathlib import Path

STEPS, STOP, MICRO, SEQ, VOCAB = 2, 1, 2, 16, 128
SAVE_ERROR = "Attempted to access the data pointer on an invalid python storage"  # what save_model raised


def _trainer(out: Path):
    import torch
    from peft import LoraConfig, get_peft_model
    from transformers import LlamaConfig, LlamaForCausalLM, Trainer, TrainingArguments

    from suite.train.wrapped import shard

    torch.manual_seed(0)
    cfg = LlamaConfig(vocab_size=VOCAB, hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                      num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=64)
    model = get_peft_model(LlamaForCausalLM(cfg), LoraConfig(r=8, lora_alpha=16, target_modules="all-linear",
                                                             lora_dropout=0.0, init_lora_weights="gaussian"))
    ids = torch.randint(0, VOCAB, (STEPS * 2 * MICRO, SEQ), generator=torch.Generator().manual_seed(2))
    rows = [{"input_ids": r, "labels": r} for r in ids]
    args = TrainingArguments(str(out), max_steps=STEPS, per_device_train_batch_size=MICRO, learning_rate=1e-2,
                             save_strategy="steps", save_steps=1, logging_steps=1, report_to=[], seed=0,
                             dataloader_num_workers=0, disable_tqdm=True, use_cpu=True)  # MULTI_CPU: each rank its half
    trainer = Trainer(model=model, args=args, train_dataset=rows)
    shard(trainer)
    return trainer


def _adapter(trainer) -> dict:
    """The trained adapter, gathered full (a collective)."""
    from torch.distributed.checkpoint.state_dict import StateDictOptions, get_model_state_dict

    state = get_model_state_dict(trainer.model, options=StateDictOptions(full_state_dict=True, cpu_offload=True))
    return {k: v.detach().clone() for k, v in state.items() if "lora_" in k}


def rank_main(out: str) -> None:
    """One of two ranks: the whole run (checkpointing every step), then the resume from step STOP's checkpoint;
    what raised goes to a file for the parent (every rank's, with the traceback's last frames)."""
    import traceback

    import torch

    from suite.run.ranks import end_process_group

    rank = int(os.environ["RANK"])
    torch.set_num_threads(1)
    try:
        whole = _trainer(Path(out) / "whole")
        whole.train()
        first = _adapter(whole)
        resumed = _trainer(Path(out) / "resumed")
        resumed.train(resume_from_checkpoint=str(Path(out) / "whole" / f"checkpoint-{STOP}"))
        second = _adapter(resumed)
        if rank == 0:
            torch.save({"whole": first, "resumed": second}, Path(out) / "adapters.pt")
    except Exception as exc:  # noqa: BLE001 - what raised is the finding, written for the parent
        (Path(out) / f"error.rank{rank}").write_text(f"{type(exc).__name__}: {exc}\n{traceback.format_exc()[-3000:]}")
        raise
    end_process_group()


def compare(timeout_s: float = 240) -> dict:
    """The launch; the largest difference between the resumed and the whole run's adapters, or RuntimeError with
    every rank's error (the traceback's end)."""
    import torch

    from suite.run.distributed import run_two_ranks

    with tempfile.TemporaryDirectory() as out:
        try:
            run_two_ranks("suite.run.distributed_trainer_resume", [out], timeout_s, what="the Trainer's resume")
        except RuntimeError as exc:
            errors = "\n".join(p.read_text() for p in sorted(Path(out).glob("error.rank*")))
            raise RuntimeError(errors or str(exc)) from exc
        got = torch.load(Path(out) / "adapters.pt")
    whole, resumed = got["whole"], got["resumed"]
    if sorted(whole) != sorted(resumed):
        raise RuntimeError(f"the adapters' keys differ: {sorted(set(whole) ^ set(resumed))[:5]}")
    return {"keys": len(whole),
            "max_weight_diff": max((whole[k] - resumed[k]).abs().max().item() for k in whole)}


if __name__ == "__main__":
    if len(sys.argv) == 3 and sys.argv[1] == "--rank":
        rank_main(sys.argv[2])
    else:
        print(json.dumps(compare()))
