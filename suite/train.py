"""One case's training, run inside its child process: the only code that drives trl.

It returns measurements; judging them is suite/checks.py's job, in the parent.
"""
from __future__ import annotations

import os
import time
import warnings
from pathlib import Path

from suite import compat, data, models
from suite.cases import Case

# Fixed input for the reload check: the trained model in memory and the checkpoint read back
# must give the same logits on it.
PROBE_TEXTS = ["what colour is the cat ? the cat is", "count from two ? two three four"]


def _device_and_dtype(case: Case):
    import torch

    cuda = torch.cuda.is_available()
    if case.training.precision == "auto":
        precision = "bf16" if cuda and torch.cuda.is_bf16_supported() else "fp32"
    else:
        precision = case.training.precision
    if precision not in ("bf16", "fp32", "fp16"):
        raise ValueError(f"training.precision: unknown precision {precision!r} (auto, bf16, fp16, fp32)")
    dtype = {"bf16": torch.bfloat16, "fp16": torch.float16, "fp32": torch.float32}[precision]
    return ("cuda" if cuda else "cpu"), precision, dtype


def _dataset(case: Case):
    from datasets import Dataset

    t = case.training
    return Dataset.from_list(data.generate(case.dataset, t.num_samples, seed=t.seed, turns=t.turns))


def _sft_config(case: Case, output_dir: Path, device: str, precision: str, model_init_kwargs: dict | None):
    from trl import SFTConfig

    t = case.training
    unknown = compat.unknown_sft_fields(dict(t.extra))
    if unknown:
        raise ValueError(f"{case.source}: training.extra: {', '.join(unknown)} not a field of the installed "
                         f"trl's SFTConfig")
    kwargs = dict(
        output_dir=str(output_dir), max_steps=case.steps, per_device_train_batch_size=t.batch_size,
        gradient_accumulation_steps=t.grad_accum, learning_rate=t.learning_rate,
        lr_scheduler_type=t.lr_scheduler, warmup_steps=t.warmup_steps, weight_decay=t.weight_decay,
        seed=t.seed, data_seed=t.seed, logging_steps=1, save_strategy="no", report_to="none",
        disable_tqdm=True, bf16=precision == "bf16", fp16=precision == "fp16",
        **{compat.key("use_cpu"): device == "cpu"},
        packing="packing" in case.features, dataloader_num_workers=0,
        neftune_noise_alpha=t.neftune_alpha if "neftune" in case.features else None,
        **compat.checkpointing_args("gradient_checkpointing" in case.features),
        **compat.max_length_args(t.max_length),
    )
    # Explicit, so that every backend trains alike: unsloth's patched SFTConfig defaults to
    # optim="adamw_8bit" and padding_free=None (it may turn padding-free batching on by itself),
    # which would make its side-by-side with the HF case compare optimisers and batching too.
    kwargs["optim"] = _transformers_default_optim()
    if "packing" not in case.features and "padding_free" in compat.sft_config_fields():
        kwargs["padding_free"] = False
    if case.effective_loss == "assistant_only":
        kwargs["assistant_only_loss"] = True
    elif case.dataset in ("prompt_completion", "conversational_pc"):
        kwargs["completion_only_loss"] = case.effective_loss == "completion_only"
    if model_init_kwargs is not None:
        kwargs["model_init_kwargs"] = model_init_kwargs
    kwargs.update(dict(t.extra))
    return SFTConfig(**kwargs)


def _transformers_default_optim() -> str:
    """transformers' own default optimiser (adamw_torch_fused from torch 2.8), not a subclass's."""
    import dataclasses

    from transformers import TrainingArguments

    field = next(f for f in dataclasses.fields(TrainingArguments) if f.name == "optim")
    return getattr(field.default, "value", field.default)


def _bnb_config(dtype):
    from transformers import BitsAndBytesConfig

    return BitsAndBytesConfig(load_in_4bit=True, bnb_4bit_quant_type="nf4", bnb_4bit_use_double_quant=True,
                              bnb_4bit_compute_dtype=dtype)


def _lora_config(case: Case):
    from peft import LoraConfig

    target = case.lora.target_modules
    return LoraConfig(r=case.lora.r, lora_alpha=case.lora.alpha, lora_dropout=case.lora.dropout,
                      target_modules=target if isinstance(target, str) else list(target), task_type="CAUSAL_LM")


def model_init_kwargs(case: Case, device: str, dtype) -> dict:
    kwargs = {**compat.dtype_kwarg(dtype), "attn_implementation": case.attention,
              # each rank of a ddp/fsdp case loads onto its own GPU (LOCAL_RANK is set by the launcher)
              "device_map": {"": int(os.environ.get("LOCAL_RANK", "0"))} if device == "cuda" else None}
    if case.method == "qlora":
        kwargs["quantization_config"] = _bnb_config(dtype)
    return kwargs


def ensure_chat_template(tokenizer) -> None:
    """Base 7B tokenizers ship no chat template; give them a plain one with generation markers."""
    if tokenizer.chat_template is None:
        tokenizer.chat_template = models.fallback_chat_template()


def _probe_logits(model, tokenizer, device: str):
    import torch

    # Right padding, said explicitly (unsloth sets its tokenizers to pad on the left), and only
    # the positions that hold a token: logits at padding are not the model's answer to anything.
    tokenizer.padding_side = "right"
    enc = tokenizer(PROBE_TEXTS, return_tensors="pt", padding=True).to(model.device if device == "cuda" else "cpu")
    model.eval()
    with torch.no_grad():
        logits = model(**enc).logits.float().cpu()
    return logits[enc["attention_mask"].cpu().bool()]


def _param_summary(model, is_adapter: bool) -> dict:
    trainable = [(n, p) for n, p in model.named_parameters() if p.requires_grad]
    if hasattr(model, "get_nb_trainable_parameters"):  # counts 4-bit packed weights correctly
        n_trainable, n_total = model.get_nb_trainable_parameters()
    else:
        n_trainable = sum(p.numel() for _, p in trainable)
        n_total = sum(p.numel() for p in model.parameters())
    out = {
        "trainable": int(n_trainable), "total": int(n_total),
        "trainable_bytes": int(sum(p.numel() * p.element_size() for _, p in trainable)),
        "trainable_dtypes": sorted({str(p.dtype).replace("torch.", "") for _, p in trainable}),
        "trainable_tensors": len(trainable),
    }
    if not is_adapter:
        sd = model.state_dict()
        tied = {"lm_head.weight"} if getattr(model.config, "tie_word_embeddings", False) else set()
        keys = [k for k in sd if k not in tied]
        out["state_dict_keys"] = keys
        out["state_dict_bytes"] = int(sum(sd[k].numel() * sd[k].element_size() for k in keys))
    return out


def _quantized_summary(model) -> dict | None:
    """Storage of the 4-bit weights, in the QLoRA paper's accounting (sec. 3: 4.127 bits/param for
    NF4 with double quantization): packed 4-bit weights plus block constants (8-bit absmax per 64
    weights, fp32 absmax of those per 256), per logical parameter. The per-tensor constants (the
    NF4 and dynamic code tables, the offset) are counted apart: they vanish on 7B layers."""
    params = packed = constants = per_tensor = 0
    for module in model.modules():
        weight = getattr(module, "weight", None)
        qs = getattr(weight, "quant_state", None)
        if qs is None or not hasattr(qs, "absmax"):
            continue
        params += int(qs.shape.numel())
        packed += weight.numel() * weight.element_size()
        constants += qs.absmax.numel() * qs.absmax.element_size()
        per_tensor += qs.code.numel() * qs.code.element_size()
        if getattr(qs, "nested", False):
            constants += qs.state2.absmax.numel() * qs.state2.absmax.element_size()
            per_tensor += qs.state2.code.numel() * qs.state2.code.element_size() + 4  # + the fp32 offset
    if not params:
        return None
    return {"params": params, "packed_bytes": packed, "block_constant_bytes": constants,
            "per_tensor_bytes": per_tensor, "bits_per_param": (packed + constants) * 8 / params}


def _sdpa_backends() -> dict[str, bool]:
    """Which kernels torch's SDPA was allowed to pick (the flash one only for fp16/bf16 without an
    arbitrary mask). What it did pick is in `attention_ops`."""
    import torch

    b = torch.backends.cuda
    return {"flash": b.flash_sdp_enabled(), "mem_efficient": b.mem_efficient_sdp_enabled(),
            "math": b.math_sdp_enabled(), "cudnn": getattr(b, "cudnn_sdp_enabled", lambda: False)()}


def _memory(device: str, start_rss: int, nvml) -> dict:
    import torch

    from suite.measure import peak_rss_bytes

    mem = {"device": device, "peak_rss_bytes": peak_rss_bytes(), "start_rss_bytes": start_rss}
    if device == "cuda":
        mem["cuda_max_allocated_bytes"] = torch.cuda.max_memory_allocated()
        mem["cuda_max_reserved_bytes"] = torch.cuda.max_memory_reserved()
        if nvml.peak_bytes is not None:
            mem["nvml_peak_used_bytes"] = nvml.peak_bytes
    return mem


def _flops_info(model, params: dict, counts: list[tuple[int, int, int]], is_adapter: bool) -> dict:
    """What the parent needs to turn tokens/s into model FLOP/s (suite.hardware.flops_per_token)."""
    cfg = model.config.get_text_config() if hasattr(model.config, "get_text_config") else model.config
    tied = bool(getattr(cfg, "tie_word_embeddings", False))
    emb = model.get_input_embeddings()
    processed = sum(c[0] for c in counts)
    sequences = sum(c[2] for c in counts)
    return {"n_layers": getattr(cfg, "num_hidden_layers", 0), "hidden": getattr(cfg, "hidden_size", 0),
            "embedding_params": 0 if tied or emb is None else int(emb.weight.numel()),
            "total_params": params["total"], "trainable_params": params["trainable"], "full": not is_adapter,
            "mean_seq_len": processed / sequences if sequences else 0.0}


def run(case: Case, workdir: Path, process_start: float) -> dict:
    """Train the case, save and reload its checkpoint; return what was measured."""
    import torch
    from transformers import set_seed

    from suite.measure import CountingCollator, DeviceMemorySampler, MeasureCallback, attention_ops, current_rss_bytes

    device, precision, dtype = _device_and_dtype(case)
    set_seed(case.training.seed)
    torch.use_deterministic_algorithms(device == "cpu", warn_only=True)
    if device == "cpu":
        # Tiny models gain nothing from intra-op threads, and on a shared machine OpenMP threads
        # spinning against other processes made step times vary 100x; one thread is steady.
        torch.set_num_threads(int(os.environ.get("FTSUITE_CPU_THREADS", "1")))
    resolved = models.resolve(case.model.size, arch=case.model.arch, hub_id=case.model.hub_id,
                              env=case.model.env, path=case.model.path, config=case.model.config)
    if device == "cuda":  # building a 7B shape put a whole bf16 model on the GPU: not this case's peak
        torch.cuda.reset_peak_memory_stats()
    measure = MeasureCallback()
    timing: dict[str, float] = {}
    start_rss = current_rss_bytes()
    with DeviceMemorySampler(enabled=device == "cuda") as nvml, \
            warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("default")  # each distinct warning once: "always" costs time every step
        t0 = time.perf_counter()
        if case.method == "unsloth":
            from suite.backends import unsloth as backend
        else:
            from suite.backends import hf as backend
        trainer, tokenizer, load_kwargs = backend.build_trainer(case, resolved.path, device, precision, dtype,
                                                                workdir / "trainer", _dataset(case), [measure])
        timing["build_s"] = time.perf_counter() - t0
        counter = trainer.data_collator = CountingCollator(trainer.data_collator)
        params = _param_summary(trainer.model, case.is_adapter)
        quantized = _quantized_summary(trainer.model)
        if quantized:
            params["quantized"] = quantized
        t0 = time.perf_counter()
        result = trainer.train()
        timing["train_s"] = time.perf_counter() - t0
        # Without the mixed-precision wrapper accelerate put on forward (bf16 autocast on a GPU): the
        # reloaded model has none, and the check compares the two models, not two precisions.
        probe = _probe_logits(trainer.accelerator.unwrap_model(trainer.model, keep_fp32_wrapper=False),
                              tokenizer, device)
        ckpt = workdir / "checkpoint"
        t0 = time.perf_counter()
        trainer.save_model(str(ckpt))
        trainer.accelerator.wait_for_everyone()  # in ddp/fsdp only rank 0 writes; the others reload it next
        timing["save_s"] = time.perf_counter() - t0
    memory = _memory(device, start_rss, nvml)  # before the reload, which would count a second model
    counts = counter.per_step(trainer.state.global_step, trainer.args.gradient_accumulation_steps)
    if trainer.args.world_size > 1:  # each rank counts its own batches; ranks see equal shares
        counts = [tuple(x * trainer.args.world_size for x in c) for c in counts]
    t0 = time.perf_counter()
    reloaded, loader = backend.reload(case, resolved.path, ckpt, load_kwargs)
    diff = (reloaded - probe).abs().max().item() if reloaded.shape == probe.shape else float("inf")
    timing["reload_s"] = time.perf_counter() - t0
    # Not for ddp/fsdp (one rank's extra step would need the others) nor unsloth (its model is in
    # inference mode after train()): those records say None and have no attention check.
    ops = attention_ops(trainer) if trainer.args.world_size == 1 and case.method != "unsloth" else None
    if resolved.built_s:  # a one-off fill of the model cache, like a download: not this case's set-up
        timing["materialise_s"] = resolved.built_s
    if measure.first_step_at is not None:
        timing["setup_s"] = measure.first_step_at - process_start - resolved.built_s
    args = trainer.args
    return {
        "loss_curve": measure.losses,
        "step_times_s": measure.step_times,
        "step_tokens": [list(c) for c in counts],  # per step: processed, labelled, sequences
        "flops": _flops_info(trainer.model, params, counts, case.is_adapter),
        "train": {"steps": trainer.state.global_step, "runtime_s": result.metrics.get("train_runtime"),
                  "epochs": trainer.state.epoch,
                  "tokens": sum(c[1] for c in counts),  # tokens that carry a label
                  "processed_tokens": sum(c[0] for c in counts),  # non-padding input tokens
                  "samples": sum(c[2] for c in counts)},
        "params": params,
        "memory": memory,
        "timing": timing,
        "checkpoint": {"dir": str(ckpt), "kind": "adapter" if case.is_adapter else "full"},
        "reload": {"loader": loader, "max_abs_logit_diff": diff, "probe_shape": list(probe.shape)},
        "device": {"type": device, "precision": precision, "threads": torch.get_num_threads(),
                   "attention_ops": ops, "kernels": kernel_profile(),
                   "name": torch.cuda.get_device_name(0) if device == "cuda" else "cpu",
                   **({"sdpa_backends": _sdpa_backends()} if device == "cuda" else {})},
        "resolved": {
            "model_path": resolved.path, "model_source": resolved.source,
            "attention": getattr(trainer.model.config, "_attn_implementation", None),
            "args": {k: _jsonable(getattr(args, k, None)) for k in (
                "max_steps", "learning_rate", "per_device_train_batch_size", "gradient_accumulation_steps",
                "packing", "padding_free", "neftune_noise_alpha", "gradient_checkpointing", "max_length",
                "max_seq_length", "completion_only_loss", "assistant_only_loss", "bf16", "fp16", "use_cpu",
                "seed", "loss_type", "optim")},
        },
        "warnings": sorted({f"{w.category.__name__}: {w.message}"[:300] for w in caught})[:50],
    }


def kernel_profile() -> dict:
    """What decided this process's floating-point rounding on a CPU: torch's vector ISA and the
    bitsandbytes backend (its CPU library has AVX512 paths for 4-bit)."""
    from suite.env import torch_cpu_capability

    out: dict = {"torch_cpu_capability": torch_cpu_capability()}
    try:
        from bitsandbytes import cextension, functional

        lib = getattr(getattr(cextension, "lib", None), "_lib", None)
        out["bitsandbytes"] = {"backend": getattr(cextension, "BNB_BACKEND", None),
                               "library": Path(getattr(lib, "_name", "") or "").name or None,
                               "avx512bf16": bool(functional.has_avx512bf16())
                               if hasattr(functional, "has_avx512bf16") else None}
    except Exception:  # not installed, or an older release without these names
        out["bitsandbytes"] = None
    return out


def _jsonable(value):
    return value if isinstance(value, (int, float, str, bool, type(None))) else str(value)
