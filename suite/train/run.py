"""One case's training, inside its child process: build the trainer through the case's backend, train,
save, reload and probe; return what was measured. Judging it is suite/judge/'s job, in the parent."""
from __future__ import annotations

import os
import time
import warnings
from pathlib import Path

from suite.matrix.spec import Case
from suite.train import args as train_args
from suite.train import inject, models, probes
from suite.train.payload import (
    CheckpointRef,
    Device,
    Flops,
    Memory,
    Params,
    Payload,
    Reference,
    Reload,
    Timing,
    TrainInfo,
)


def run(case: Case, workdir: Path, process_start: float) -> Payload:
    """Train the case, save and reload its checkpoint; return what was measured."""
    import torch
    from transformers import set_seed

    from suite.train.measure import (
        CountingCollator,
        DeviceMemorySampler,
        MeasureCallback,
        current_rss_bytes,
        profiled_step,
    )

    device, precision, dtype = train_args.device_and_dtype(case)
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
        backend = case.backend
        trainer, tokenizer, load_kwargs = backend.build_trainer(case, resolved.path, device, precision, dtype,
                                                                workdir / "trainer", train_args.dataset(case), [measure],
                                                                train_args.eval_dataset(case))
        timing["build_s"] = time.perf_counter() - t0
        # DPO: the reference's logits before training (and before a known fault is installed), to
        # compare with the same model object's after training
        reference_before = backend.reference_snapshot(trainer, tokenizer, device)
        injected = inject.install(trainer)  # FTSUITE_INJECT: known faults, for benchmarks/sensitivity.py and tests only
        counter = trainer.data_collator = CountingCollator(trainer.data_collator)
        params = probes.param_summary(trainer.model, case.is_adapter)
        quantized = probes.quantized_summary(trainer.model)
        if quantized:
            params["quantized"] = quantized
        t0, c0 = time.perf_counter(), os.times()
        result = trainer.train()
        timing["train_s"] = time.perf_counter() - t0
        c1 = os.times()  # the process's user + system time in train(): every thread, data loading too
        timing["train_cpu_s"] = (c1.user - c0.user) + (c1.system - c0.system)
        # DPO: the reference after training against before, before any eval-mode forward (the probe
        # below) could switch a 4-bit base to other kernels
        reference = (backend.reference(trainer, case, reference_before, tokenizer, device)
                     if reference_before is not None else None)
        # Without the mixed-precision wrapper accelerate put on forward (bf16 autocast on a GPU): the
        # reloaded model has none, and the check compares the two models, not two precisions.
        probe = probes.probe_logits(trainer.accelerator.unwrap_model(trainer.model, keep_fp32_wrapper=False),
                                    tokenizer, device)
        if trainer.is_world_process_zero():  # what another version's load of the checkpoint must give
            probes.save_probe(probe, workdir / probes.PROBE_FILE)
        ckpt = workdir / "checkpoint"
        t0 = time.perf_counter()
        backend.save(case, trainer, ckpt)
        trainer.accelerator.wait_for_everyone()  # in ddp/fsdp only rank 0 writes; the others reload it next
        timing["save_s"] = time.perf_counter() - t0
    memory = probes.memory(device, start_rss, nvml)  # before the reload, which would count a second model
    counts = counter.per_step(trainer.state.global_step, trainer.args.gradient_accumulation_steps)
    if trainer.args.world_size > 1:  # each rank counts its own batches; ranks see equal shares
        counts = [tuple(x * trainer.args.world_size for x in c) for c in counts]
    t0 = time.perf_counter()
    reloaded, loader = backend.reload(case, resolved.path, ckpt, load_kwargs)
    diff = (reloaded - probe).abs().max().item() if reloaded.shape == probe.shape else float("inf")
    timing["reload_s"] = time.perf_counter() - t0
    # Not for ddp/fsdp (one rank's extra step would need the others) nor a backend that picks its own
    # kernels (unsloth's model is in inference mode after train()): those records say None and have
    # no attention check.
    ops, work = (profiled_step(trainer) if trainer.args.world_size == 1 and not backend.picks_attention
                 else (None, None))
    if resolved.built_s:  # a one-off fill of the model cache, like a download: not this case's set-up
        timing["materialise_s"] = resolved.built_s
    if measure.first_step_at is not None:
        timing["setup_s"] = measure.first_step_at - process_start - resolved.built_s
    args = trainer.args
    return Payload(
        loss_curve=measure.losses,
        eval_curve=measure.evals,
        step_times_s=measure.step_times,
        step_cpu_times_s=measure.step_cpu_times,
        work=work,
        step_tokens=[list(c) for c in counts],  # per step: processed, labelled, sequences
        flops=Flops(**probes.flops_info(trainer.model, params, counts, case.is_adapter)),
        train=TrainInfo(steps=trainer.state.global_step, runtime_s=result.metrics.get("train_runtime"),
                        epochs=trainer.state.epoch,
                        tokens=sum(c[1] for c in counts),  # tokens that carry a label
                        processed_tokens=sum(c[0] for c in counts),  # non-padding input tokens
                        samples=sum(c[2] for c in counts)),
        params=Params.from_dict(params),
        memory=Memory(**memory),
        timing=Timing(**timing),
        checkpoint=CheckpointRef(str(ckpt), "adapter" if case.is_adapter else "full"),
        reload=Reload(loader, diff, list(probe.shape)),
        device=Device(type=device, precision=precision, threads=torch.get_num_threads(), attention_ops=ops,
                      kernels=probes.kernel_profile(),
                      name=torch.cuda.get_device_name(0) if device == "cuda" else "cpu",
                      sdpa_backends=probes.sdpa_backends() if device == "cuda" else None),
        resolved={
            "model_path": resolved.path, "model_source": resolved.source,
            **({"injected": injected} if injected else {}),
            "attention": getattr(trainer.model.config, "_attn_implementation", None),
            "args": {k: _jsonable(getattr(args, k, None)) for k in (
                "max_steps", "learning_rate", "per_device_train_batch_size", "gradient_accumulation_steps",
                "packing", "padding_free", "neftune_noise_alpha", "gradient_checkpointing", "max_length",
                "max_seq_length", "completion_only_loss", "assistant_only_loss", "bf16", "fp16", "use_cpu",
                "seed", "loss_type", "optim", "beta")},
        },
        warnings=sorted({f"{w.category.__name__}: {w.message}"[:300] for w in caught})[:50],
        reference=Reference(**reference) if reference else None,
    )


def _jsonable(value):
    return value if isinstance(value, (int, float, str, bool, type(None))) else str(value)
