"""One case's training, inside its child process: build the trainer through the case's backend, train,
save, reload and probe; return what was measured. Judging it is suite/judge/'s job, in the parent."""
from __future__ import annotations

import os
import time
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

from suite.errors import exception_line
from suite.matrix.spec import Case
from suite.train import args as train_args
from suite.train import modeling, models, probes, routes, wrapped
from suite.train.backends.base import Backend
from suite.train.backends.registry import backend_for, logged_keys, logged_lists
from suite.train.mechanics import MechanicsRecorder, lora_probe
from suite.train.quantize import quantizer_for
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


@dataclass
class Trained:
    """What the training phase leaves for the phases after it."""

    trainer: Any
    tokenizer: Any
    load_kwargs: dict  # what the reload loads the base with
    params: dict  # parameter counts and dtypes (suite/train/probes.py), with the quantized base's footprint
    result: Any  # trainer.train()'s TrainOutput
    reference: dict | None  # a preference trainer's reference after training vs before
    probe: Any  # the trained model's logits on the probe input
    generated: list[int] | None  # its greedy ids from the probe prompt (what a route's model must generate)
    dropout: dict | None  # its LoRA dropout at work: eval-mode forwards agree, training-mode ones differ
    counter: Any  # the CountingCollator that counted each step's tokens
    checkpoint: Path
    mechanics: Any = None  # the MechanicsRecorder's record (suite/train/mechanics.py)
    save_raised: str | None = None  # what saving raised: the checkpoint check's failure, not the case's error


def run(case: Case, workdir: Path, process_start: float) -> Payload:
    """Train the case, save and reload its checkpoint; return what was measured."""
    from suite.train.measure import DeviceMemorySampler, MeasureCallback, current_rss_bytes

    device, precision, dtype = _set_up(case)
    resolved = _resolve_model(case, device)
    backend = backend_for(case)
    # every trainer's logged keys, whichever trains: what a curve records does not depend on its trainer
    measure = MeasureCallback(logged_keys(), logged_lists())
    timing: dict[str, float] = {}
    start_rss = current_rss_bytes()
    with DeviceMemorySampler(enabled=device == "cuda") as nvml, \
            warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("default")  # each distinct warning once: "always" costs time every step
        trained = _train(case, backend, resolved.path, (device, precision, dtype), workdir, measure, timing)
    memory = probes.memory(device, start_rss, nvml)  # before the reload, which would count a second model
    counts = _step_counts(trained.trainer, trained.counter)
    # From here on there is something to judge: a phase that raises is its check's failure (payload.raised),
    # and the phases after it still run; an exception in training above is the case's error.
    raised: dict[str, str] = {"save": trained.save_raised} if trained.save_raised else {}
    if case.is_adapter and trained.mechanics.not_judged is None:  # after every probe of the trained model
        trained.mechanics.lora = _phase(raised, "mechanics", lambda: lora_probe(trained.trainer.model), None)
    relations = _phase(raised, "model_relations", lambda: _model_relations(case, backend, trained), None)
    reload = _reload(case, backend, resolved.path, trained, timing, device, raised)
    # Not for ddp/fsdp (one rank's extra step would need the others) nor a backend that picks its own
    # kernels (unsloth's model is in inference mode after train()): those records say None and have
    # no attention check.
    ops, work = _phase(raised, "profile", lambda: _profile(trained.trainer, backend, trained.counter), (None, None))
    if resolved.built_s:  # a one-off fill of the model cache, like a download: not this case's set-up
        timing["materialise_s"] = resolved.built_s
    if measure.first_step_at is not None:
        timing["setup_s"] = measure.first_step_at - process_start - resolved.built_s
    payload = _payload(case, trained, measure, counts, memory, timing, reload, (device, precision), ops, work,
                       resolved, caught)
    payload.raised = raised
    payload.model_relations = relations
    return payload


def _model_relations(case: Case, backend: Backend, trained: Trained) -> Any:
    """The trained causal LM's padding invariance and router relations (suite/train/modeling.py), measured
    in one process on a model whose kernels the suite chose (not ddp/fsdp ranks, not unsloth's)."""
    trainer = trained.trainer
    if backend.head != "causal_lm" or trainer.args.world_size > 1 or backend.picks_attention:
        return None
    model = trainer.accelerator.unwrap_model(trainer.model, keep_fp32_wrapper=False)
    return modeling.measure(model, trained.tokenizer, trainer.data_collator, case.quantization.bits)


def _set_up(case: Case) -> tuple[str, str, Any]:
    """Device, precision and dtype; the seed, deterministic kernels and the CPU's thread count."""
    import torch
    from transformers import set_seed

    device, precision, dtype = train_args.device_and_dtype(case)
    set_seed(case.training.seed)
    torch.use_deterministic_algorithms(device == "cpu", warn_only=True)
    if device == "cpu":
        # Tiny models gain nothing from intra-op threads, and on a shared machine OpenMP threads
        # spinning against other processes made step times vary 100x; one thread is steady.
        torch.set_num_threads(int(os.environ.get("FTSUITE_CPU_THREADS", "1")))
    return device, precision, dtype


def _resolve_model(case: Case, device: str) -> models.ResolvedModel:
    import torch

    resolved = models.resolve(case.model.size, arch=case.model.arch, hub_id=case.model.hub_id,
                              env=case.model.env, path=case.model.path, config=case.model.config)
    if device == "cuda":  # building a 7B shape put a whole bf16 model on the GPU: not this case's peak
        torch.cuda.reset_peak_memory_stats()
    return resolved


def _train(case: Case, backend: Backend, model_path: str, where: tuple[str, str, Any], workdir: Path,
           measure: Any, timing: dict[str, float]) -> Trained:
    """Build the trainer through the backend, train, compare its reference, probe and save."""
    device, precision, dtype = where
    t0 = time.perf_counter()
    if case.uses.zero_stage is not None:  # ZeRO rows: DeepSpeed's comm first (suite/train/wrapped.py says why)
        wrapped.init_deepspeed()
    trainer, tokenizer, load_kwargs = backend.build_trainer(case, model_path, device, precision, dtype,
                                                            workdir / "trainer", train_args.dataset(case), [measure],
                                                            train_args.eval_dataset(case))
    timing["build_s"] = time.perf_counter() - t0
    if wrapped.suite_shards(case):  # fully_shard rows: FSDP2 driven by the suite on CPU ranks
        wrapped.shard(trainer)
    # DPO: the reference's logits before training, to compare with the same model object's after training
    reference_before = backend.reference_snapshot(trainer, case, tokenizer, device)
    counter = backend.instrument(trainer)  # it counts (and records) what training saw
    recorder = MechanicsRecorder(trainer, case)  # after the backend's: it sees the step the optimizer takes
    params = probes.param_summary(trainer.model, case.is_adapter)
    quantized = quantizer_for(case).summary(trainer.model)
    if quantized:
        params["quantized"] = quantized
    t0, c0 = time.perf_counter(), os.times()
    result = trainer.train()
    timing["train_s"] = time.perf_counter() - t0
    mechanics = recorder.finish()  # before the profiled step, which is not training
    c1 = os.times()  # the process's user + system time in train(): every thread, data loading too
    timing["train_cpu_s"] = (c1.user - c0.user) + (c1.system - c0.system)
    # DPO: the reference after training against before, before any eval-mode forward (the probe
    # below) could switch a 4-bit base to other kernels
    reference = (backend.reference(trainer, case, reference_before, tokenizer, device)
                 if reference_before is not None else None)
    # Without the mixed-precision wrapper accelerate put on forward (bf16 autocast on a GPU): the
    # reloaded model has none, and the check compares the two models, not two precisions.
    model = trainer.accelerator.unwrap_model(trainer.model, keep_fp32_wrapper=False)
    probe = routes.probe(model, tokenizer, device, backend.head)  # a causal LM's logits, a classifier's scores
    generated = (probes.generate(model, tokenizer, device, routes.GENERATE_TOKENS)
                 if backend.routes(case) and backend.generates else None)
    dropout = probes.lora_dropout(model, tokenizer, device, probe) if backend.head == "causal_lm" else None
    if trainer.is_world_process_zero():  # what another version's load of the checkpoint must give
        probes.save_probe(probe, workdir / probes.PROBE_FILE)
    ckpt = workdir / "checkpoint"
    t0 = time.perf_counter()
    saving: dict[str, str] = {}  # a save that raises fails the checkpoint check; the reload and routes still run
    _phase(saving, "save", lambda: (wrapped.save_full(trainer.model, ckpt, trainer.is_world_process_zero(),
                                                      trainer.processing_class) if wrapped.suite_shards(case)
                                    else backend.save(case, trainer, ckpt)), None)
    trainer.accelerator.wait_for_everyone()  # in ddp/fsdp only rank 0 writes; the others reload it next
    if case.uses.zero_stage is not None:  # reloads are fresh loads, as in another process: not under zero.Init
        wrapped.end_deepspeed_init()
    timing["save_s"] = time.perf_counter() - t0
    return Trained(trainer, tokenizer, load_kwargs, params, result, reference, probe, generated, dropout, counter,
                   ckpt, mechanics, saving.get("save"))


def _step_counts(trainer: Any, counter: Any) -> list[tuple[int, int, int]]:
    """Per step: processed tokens, labelled tokens, sequences (every rank's)."""
    counts = counter.per_step(trainer.state.global_step, trainer.args.gradient_accumulation_steps)
    if trainer.args.world_size > 1:  # each rank counts its own batches; ranks see equal shares
        counts = [tuple(x * trainer.args.world_size for x in c) for c in counts]
    return counts


def _phase(raised: dict[str, str], phase: str, run_it: Callable[[], Any], fallback: Any) -> Any:
    """Run a phase after training; what it raises is recorded under its name (its check fails with it)."""
    try:
        return run_it()
    except Exception as exc:  # noqa: BLE001 - any exception here is the finding of that phase's check
        raised[phase] = exception_line(exc)
        return fallback


def _reload(case: Case, backend: Backend, model_path: str, trained: Trained, timing: dict[str, float],
            device: str, raised: dict[str, str]) -> Reload:
    """Read the checkpoint back as a user would (the backend's own way, then every load route) and
    compare each with the trained model; each may raise without stopping the others."""
    t0 = time.perf_counter()
    probe = trained.probe
    reloaded, loader = _phase(raised, "reload", lambda: backend.reload(case, model_path, trained.checkpoint,
                                                                       trained.load_kwargs),
                              (None, f"{backend.name}'s reload"))
    diff = float("inf") if reloaded is None or reloaded.shape != probe.shape else (reloaded - probe).abs().max().item()
    timing["reload_s"] = time.perf_counter() - t0
    if not trained.trainer.is_world_process_zero() or not backend.routes(case):
        return Reload(loader, diff, list(probe.shape))
    ctx = backend.route_context(case, model_path, trained.checkpoint, trained.load_kwargs, device, probe,
                                trained.generated)
    t0 = time.perf_counter()
    outcomes = [o.to_dict() for o in routes.check_routes(ctx, backend.routes(case))]
    timing["routes_s"] = time.perf_counter() - t0
    tokenizer = _phase(raised, "tokenizer", lambda: routes.tokenizer_check(trained.checkpoint, trained.tokenizer,
                                                                           model_path), None)
    return Reload(loader, diff, list(probe.shape), routes=outcomes, generated=trained.generated, tokenizer=tokenizer)


def _profile(trainer: Any, backend: Backend, counter: Any) -> tuple[Any, Any]:
    from suite.train.measure import profiled_step

    if trainer.args.world_size == 1 and not backend.picks_attention:
        return profiled_step(trainer, counter)
    return None, None


def _payload(case: Case, trained: Trained, measure: Any, counts: list, memory: dict, timing: dict[str, float],
             reload: Reload, where: tuple[str, str], ops: Any, work: Any, resolved: Any, caught: list) -> Payload:
    import torch

    device, precision = where
    trainer, params = trained.trainer, trained.params
    return Payload(
        loss_curve=measure.losses,
        eval_curve=measure.evals,
        step_times_s=measure.step_times,
        step_cpu_times_s=measure.step_cpu_times,
        work=work,
        step_tokens=[list(c) for c in counts],  # per step: processed, labelled, sequences
        flops=Flops(**probes.flops_info(trainer.model, params, counts, case.is_adapter)),
        train=TrainInfo(steps=trainer.state.global_step, runtime_s=trained.result.metrics.get("train_runtime"),
                        epochs=trainer.state.epoch,
                        tokens=sum(c[1] for c in counts),  # tokens that carry a label
                        processed_tokens=sum(c[0] for c in counts),  # non-padding input tokens
                        samples=sum(c[2] for c in counts)),
        params=Params.from_dict(params),
        memory=Memory(**memory),
        timing=Timing(**timing),
        checkpoint=CheckpointRef(str(trained.checkpoint), "adapter" if case.is_adapter else "full"),
        reload=reload,
        device=Device(type=device, precision=precision, threads=torch.get_num_threads(), attention_ops=ops,
                      kernels=probes.kernel_profile(),
                      name=torch.cuda.get_device_name(0) if device == "cuda" else "cpu",
                      sdpa_backends=probes.sdpa_backends() if device == "cuda" else None),
        resolved={**_resolved(trainer, resolved), **backend_for(case).describe(trainer)},
        warnings=sorted({f"{w.category.__name__}: {w.message}"[:300] for w in caught})[:50],
        reference=Reference(**trained.reference) if trained.reference else None,
        dropout=trained.dropout,
        strategy=wrapped.strategy(trainer) if case.distributed else None,
        mechanics=trained.mechanics,
    )


def _resolved(trainer: Any, resolved: Any) -> dict:
    """Where the model came from and the arguments the trainer really ran with."""
    args = trainer.args
    return {
        "model_path": resolved.path, "model_source": resolved.source,
        "attention": getattr(trainer.model.config, "_attn_implementation", None),
        "args": {k: _jsonable(getattr(args, k, None)) for k in (
            "max_steps", "learning_rate", "per_device_train_batch_size", "gradient_accumulation_steps",
            "packing", "padding_free", "neftune_noise_alpha", "gradient_checkpointing", "max_length",
            "max_seq_length", "completion_only_loss", "assistant_only_loss", "bf16", "fp16", "use_cpu",
            "seed", "loss_type", "optim", "beta")},
    }


def _jsonable(value):
    return value if isinstance(value, (int, float, str, bool, type(None))) else str(value)
