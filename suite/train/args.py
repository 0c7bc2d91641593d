"""What a case trains with: device and dtype, the data set, what every trainer's arguments say alike
(`common`, `config`), peft's LoraConfig, the 4-bit quantization config and the model's load arguments,
from the case and the installed versions. Each trainer's config builder (trl's SFTConfig, DPOConfig, ...,
transformers' TrainingArguments) lives with its backend (suite/train/backends/<trainer>/config.py)."""
from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING

from suite.train import compat, data, quantize

if TYPE_CHECKING:
    from suite.matrix.spec import Case


AUTO_PRECISION = "auto"  # training.precision: bf16 where the GPU supports it, else fp32


def device_and_dtype(case: Case):
    import torch

    cuda = torch.cuda.is_available()
    if case.training.precision == AUTO_PRECISION:
        precision = "bf16" if cuda and torch.cuda.is_bf16_supported() else "fp32"
    else:
        precision = case.training.precision
    if precision not in ("bf16", "fp32", "fp16"):
        raise ValueError(f"training.precision: unknown precision {precision!r} (auto, bf16, fp16, fp32)")
    dtype = {"bf16": torch.bfloat16, "fp16": torch.float16, "fp32": torch.float32}[precision]
    return ("cuda" if cuda else "cpu"), precision, dtype


def dataset(case: Case):
    from datasets import Dataset

    t = case.training
    return Dataset.from_list(data.generate(case.dataset, t.num_samples, seed=t.seed, turns=t.turns))


EVAL_SEED_OFFSET = 1000  # the eval split's rows come from another seed than the training rows


def eval_dataset(case: Case):
    """The case's eval split (training.eval_samples rows), or None."""
    from datasets import Dataset

    t = case.training
    if not t.eval_samples:
        return None
    return Dataset.from_list(data.generate(case.dataset, t.eval_samples, seed=t.seed + EVAL_SEED_OFFSET,
                                           turns=t.turns))


def common(case: Case, output_dir: Path, device: str, precision: str) -> dict:
    """What every trainer's arguments say alike: steps, batch, optimiser, schedule, logging, precision."""
    t = case.training
    split = case.uses.micro_batches  # the same batch in this many micro-batches (grad_accum)
    # an eval split is evaluated before the first step and after the last
    evals = dict(eval_strategy="steps", eval_steps=case.steps, eval_on_start=True,
                 per_device_eval_batch_size=t.batch_size // split) if t.eval_samples else {}
    return dict(**evals,
        output_dir=str(output_dir), max_steps=case.steps, per_device_train_batch_size=t.batch_size // split,
        gradient_accumulation_steps=t.grad_accum * split, learning_rate=t.learning_rate,
        lr_scheduler_type=t.lr_scheduler, warmup_steps=t.warmup_steps, weight_decay=t.weight_decay,
        seed=t.seed, data_seed=t.seed, logging_steps=1, save_strategy="no", report_to="none",
        disable_tqdm=True, bf16=precision == "bf16", fp16=precision == "fp16",
        **{compat.key("use_cpu"): device == "cpu"}, dataloader_num_workers=0,
        neftune_noise_alpha=t.neftune_alpha if case.uses.noise else None,
        # Explicit, so that every backend trains alike: unsloth's patched SFTConfig defaults to
        # optim="adamw_8bit", which would make its side-by-side with the HF case compare optimisers too.
        optim=case.uses.optim or transformers_default_optim(),
        **compat.checkpointing_args(case.uses.checkpointing),
        **({"use_liger_kernel": True} if case.uses.own_kernels else {}),
        **({"deepspeed": deepspeed_config(case.uses.zero_stage)} if case.uses.zero_stage is not None else {}),
    )


def deepspeed_config(stage: int) -> dict:
    """A ZeRO config as users give the Trainer (transformers' docs): "auto" for what the arguments already say, so
    the batch, accumulation, clipping and precision stay the case's; no optimizer or scheduler section, so the
    Trainer's own (the case's AdamW and schedule) are the ones DeepSpeed steps."""
    # ZeRO-2's default buckets (5e8 elements) cost a tiny model 3.8 s a step on the CPU (ZeRO-3's 0.15 s; measured
    # under load, 2026-12-08); 1e6 elements still hold every gradient of the tiny rows in one bucket
    zero: dict = {"stage": stage, "reduce_bucket_size": 1_000_000, "allgather_bucket_size": 1_000_000}
    if stage == 3:  # save_model then gathers the partitioned parameters into one checkpoint (else it writes none)
        zero["stage3_gather_16bit_weights_on_model_save"] = True
        # and every parameter stays partitioned between uses: below stage3_param_persistence_threshold (1e5
        # elements by default) ZeRO-3 keeps a parameter whole on every rank, and a tiny model has no larger one
        # (measured with suite/run/distributed_adapter.py: a save without the gather was then the whole adapter)
        zero["stage3_param_persistence_threshold"] = 0
    return {"train_micro_batch_size_per_gpu": "auto", "train_batch_size": "auto",
            "gradient_accumulation_steps": "auto", "gradient_clipping": "auto",
            "bf16": {"enabled": "auto"}, "zero_optimization": zero}


def extra_fields(case: Case, fields: set[str], what: str) -> dict:
    unknown = sorted(set(dict(case.training.extra)) - fields)
    if unknown:
        raise ValueError(f"{case.source}: training.extra: {', '.join(unknown)} not a field of the installed {what}")
    return dict(case.training.extra)


def config(case: Case, output_dir: Path, device: str, precision: str, model_init_kwargs: dict | None,
           config_cls: type, what: str, pinned: dict):
    """A trl config dataclass (`config_cls`, named `what` in errors): every trainer's arguments, the
    trainer's `pinned` fields, the model's init kwargs where trl loads it, then the case's extra."""
    import dataclasses

    extra = extra_fields(case, {f.name for f in dataclasses.fields(config_cls)}, what)
    kwargs = dict(**common(case, output_dir, device, precision), **pinned)
    if model_init_kwargs is not None:
        kwargs["model_init_kwargs"] = model_init_kwargs
    return config_cls(**{**kwargs, **extra})


def transformers_default_optim() -> str:
    """transformers' own default optimiser (adamw_torch_fused from torch 2.8), not a subclass's."""
    import dataclasses

    from transformers import TrainingArguments

    field = next(f for f in dataclasses.fields(TrainingArguments) if f.name == "optim")
    return getattr(field.default, "value", field.default)


def lora_config(case: Case, **extra):
    """peft's LoraConfig for the case; `extra`: how it carries added tokens (suite/train/tokens.py)."""
    from peft import LoraConfig

    target = case.lora.target_modules
    if case.lora.target_parameters:  # fused 3-D expert weights: peft wraps the parameters themselves
        extra = {**extra, "target_parameters": list(case.lora.target_parameters)}
    return LoraConfig(r=case.lora.r, lora_alpha=case.lora.alpha, lora_dropout=case.lora.dropout,
                      target_modules=target if isinstance(target, str) else list(target), task_type="CAUSAL_LM",
                      **extra)


def model_init_kwargs(case: Case, device: str, dtype) -> dict:
    kwargs = {**compat.dtype_kwarg(dtype), "attn_implementation": case.attention,
              # each rank of a ddp/fsdp case loads onto its own GPU (LOCAL_RANK is set by the launcher)
              "device_map": {"": int(os.environ.get("LOCAL_RANK", "0"))} if device == "cuda" else None}
    return {**kwargs, **quantize.quantizer_for(case).load_kwargs(dtype)}
