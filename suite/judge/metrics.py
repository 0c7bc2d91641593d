"""Every metric a record can carry, with its unit and which direction is better.

Checks, budgets and reports read these declarations instead of special-casing names.
"""
from __future__ import annotations

import statistics
from dataclasses import replace
from typing import Mapping

from suite.metric import Metric  # noqa: F401 - what importers of the judge's metrics name
from suite.train.backends.registry import trainer_metrics
from suite.train.routes import ROUTES
from suite.train.payload import Memory, Params, Payload, Reference, Reload, Timing

GIB = 2**30


TIMINGS = ("train_runtime_s", "step_time_median_s", "step_time_iqr_s", "tokens_per_s", "processed_tokens_per_s",
           "samples_per_s", "model_flops_per_s", "mfu", "step_cpu_time_median_s", "step_off_cpu_median_s",
           "train_cpu_s", "setup_s", "fixed_cost_s", "save_s")

METRICS: dict[str, Metric] = {m.name: m for m in [
    # rel_tolerance bounds the ratio both ways on a dedicated device; cpu_rel_tolerance is the largest factor seen
    # between identical runs on the shared 2-core CPU (step time up to 276x) with margin (docs/reports.md, "Comparing runs").
    Metric("train_runtime_s", "s", "lower", "wall time of trainer.train()", 0.10, 499.0),
    Metric("step_time_median_s", "s", "lower", "median optimizer-step time, warm-up steps excluded", 0.10, 999.0),
    Metric("step_time_iqr_s", "s", "none", "interquartile range of the timed step times", 0.5, 9999.0),
    Metric("tokens_per_s", "tokens/s", "higher", "tokens that carry a label per second of timed steps", 0.10,
           499.0),
    Metric("processed_tokens_per_s", "tokens/s", "higher", "non-padding input tokens per second of timed steps",
           0.10, 499.0),
    Metric("samples_per_s", "samples/s", "higher", "sequences per second of timed steps", 0.10, 499.0),
    Metric("model_flops_per_s", "FLOP/s", "higher", "model FLOPs (suite.judge.hardware.flops_per_token) per second", 0.10,
           499.0),
    Metric("mfu", "fraction", "higher", "model FLOPs utilisation: model_flops_per_s / the device's peak", 0.10),
    # CPU time does not grow while a process waits for a core another one holds: its CPU tolerance
    # is measured (benchmarks/sensitivity.py, docs/reports.md, "Performance verdicts"), not the wall clock's.
    Metric("step_cpu_time_median_s", "s", "lower", "median CPU time of the training thread per optimizer step, "
           "warm-up steps excluded", 0.10, 0.25),
    # Wall minus CPU time of the training thread: what a step spent waiting (a sleep, a lock, I/O, a
    # device sync) or preempted. A VM whose CPU runs faster or slower between runs moves wall and CPU
    # time together and this not; a step that waits longer moves it at once.
    Metric("step_off_cpu_median_s", "s", "lower", "median time per optimizer step the training thread was off the "
           "CPU (step wall time minus its CPU time), warm-up steps excluded", 0.10, 999.0),  # one CPU record: as
    # noisy as its wall clock (1.8e-5 -> 5.2e-5 s between two runs of one commit); repeats judge it by their test
    Metric("train_cpu_s", "s", "lower", "user + system CPU time of the case's process in trainer.train()", 0.10,
           0.25),
    # Counted in one extra step, the same on any machine for the same code path: exact.
    Metric("counted_flops_per_step", "FLOP", "lower", "FLOPs of one forward and backward on the first batch "
           "(torch.utils.flop_counter)", 0.0),
    # Not exact: the profiler's count of one step moved 3,848 -> 3,862 (+0.4%) between two runs of the same
    # code (a bisect probe in CI); an extra forward adds about a third.
    Metric("aten_calls_per_step", "calls", "lower", "aten operator calls of that step (torch's profiler)", 0.02,
           min_change=0.02),
    Metric("counted_vs_analytic_flops", "ratio", "none", "counted FLOPs over the analytic model FLOPs "
           "(suite/judge/hardware.py) of that step's tokens", 0.01),
    Metric("setup_s", "s", "lower", "process start to first training step", 0.20, 29.0),
    Metric("fixed_cost_s", "s", "lower", "setup_s minus building model and trainer: the isolation overhead", 0.30,
           29.0),
    Metric("save_s", "s", "lower", "checkpoint save time", 0.50, 49.0),
    # single_run_spread: the largest max(a/b, b/a) - 1 between two records of one case on one stack, 441 pairs
    # of 11 runs on an AMD EPYC Zen 4 and an Intel Xeon (avx512-bf16), 2026-12-05 to 2026-12-07, rounded up
    # (python -m benchmarks.memory_spread: benchmarks/memory_spread.json, docs/reports.md)
    Metric("peak_rss_gib", "GiB", "lower", "peak resident memory of the case's process (VmHWM)", 0.05, 0.10,
           min_change=0.02, single_run_spread=0.072),
    Metric("peak_rss_delta_gib", "GiB", "lower", "peak resident memory above the process's start", 0.10, 0.50,
           single_run_spread=0.47),
    Metric("cuda_max_allocated_gib", "GiB", "lower", "torch.cuda.max_memory_allocated", 0.02, min_change=0.01),
    Metric("cuda_max_reserved_gib", "GiB", "lower", "torch.cuda.max_memory_reserved", 0.05, min_change=0.02),
    Metric("nvml_peak_used_gib", "GiB", "lower", "device memory used per NVML, sampled every 0.1 s", 0.05),
    Metric("checkpoint_bytes", "B", "lower", "bytes of every file in the saved checkpoint", 0.01),
    Metric("final_loss", "nats", "lower", "mean of the last k logged losses", 0.05),
    Metric("initial_loss", "nats", "none", "mean of the first k logged losses", 0.05),
    Metric("trainable_params", "params", "none", "parameters with requires_grad", 0.0),
    Metric("total_params", "params", "none", "all parameters (4-bit weights counted unpacked)", 0.0),
    Metric("quant_bits_per_param", "bits", "lower", "storage of the 4-bit base weights per parameter, packed "
           "weights plus block constants (QLoRA paper: 4.127 for NF4 with double quantization)", 0.001),
    Metric("reload_max_abs_logit_diff", "logit", "lower", "reloaded checkpoint vs in-memory model", 0.0),
    # one per load route (suite/train/routes.py): what a user's loader gives against the trained model
    *[Metric(f"reload/{r.name}", "logit", "lower", f"{r.loader} vs the trained model", 0.0)
      for r in {r.name: r for rs in ROUTES.values() for r in rs}.values()],
    # each trainer's own (its backend package's metrics.py), in the registry's order
    *trainer_metrics(),
    Metric("eval_loss_initial", "nats", "none", "loss on the eval split before the first step", 0.05),
    Metric("eval_loss_final", "nats", "lower", "loss on the eval split after the last step", 0.05),
    Metric("reference_max_abs_logit_diff", "logit", "lower", "DPO: the reference after training vs before "
           "(same model object)", 0.0),
]}
METRICS = {name: (replace(m, timing=True) if name in TIMINGS else m) for name, m in METRICS.items()}


def _window_mean(losses: list[float], k: int, last: bool) -> float | None:
    if not losses:
        return None
    window = losses[-k:] if last else losses[:k]
    return sum(window) / len(window)


def timed_window(step_times_s: list[float], step_tokens: list[list[int]],
                 warmup: int) -> tuple[list[float], list[list[int]]]:
    """Step times and per-step token counts of the timed steps: warm-up left out, when enough remain."""
    times, counts = step_times_s or [], step_tokens or []
    skip = warmup if len(times) > warmup else 0
    return times[skip:], counts[skip:len(times)]


def derive(payload: Payload, loss_window: int, checkpoint_bytes: int | None, warmup_steps: int = 0,
           peak_flops: float | None = None, logged: Mapping[str, str] | None = None) -> dict[str, float]:
    """Metric values from what a child measured (peak_flops: the device's peak for the case's dtype;
    logged: the metrics the case's trainer logs beyond the loss, {metric: log key}, its backend's).

    Each phase below returns its own figures; they are merged in this order (the order a record lists them)."""
    times, counts = timed_window(payload.step_times_s, payload.step_tokens, warmup_steps)
    cpu_times, _ = timed_window(payload.step_cpu_times_s, [], warmup_steps)
    per_token = _model_flops_per_token(payload)
    return {**_step_figures(times, counts, per_token, peak_flops),
            **_cpu_step_figures(times, cpu_times),
            **_phase_time_figures(payload.timing),
            **_memory_figures(payload.memory),
            **_work_figures(payload.work, per_token),
            **({} if checkpoint_bytes is None else {"checkpoint_bytes": checkpoint_bytes}),
            **_loss_figures(payload.losses, loss_window),
            **_param_figures(payload.params),
            **_check_figure("reload_max_abs_logit_diff", payload.reload),
            **_route_figures(payload.reload),
            **_logged_figures(payload.loss_curve, logged or {}, loss_window),
            **_eval_figures(payload.eval_curve),
            **_check_figure("reference_max_abs_logit_diff", payload.reference)}


def _model_flops_per_token(payload: Payload) -> float | None:
    """The analytic model FLOPs per processed token (suite/judge/hardware.py), when the child said the model's shape."""
    f = payload.flops
    if not (f and f.hidden):
        return None
    from suite.judge.hardware import flops_per_token

    return flops_per_token(f.total_params, f.trainable_params, f.embedding_params, f.n_layers, f.hidden,
                           f.mean_seq_len, f.full)


def _step_figures(times: list[float], counts: list[list[int]], per_token: float | None,
                  peak_flops: float | None) -> dict[str, float]:
    """Step time, its spread and the throughputs of the timed steps."""
    out: dict[str, float] = {}
    if not times:
        return out
    out["step_time_median_s"] = statistics.median(times)
    if len(times) >= 4:
        q = statistics.quantiles(times, n=4)
        out["step_time_iqr_s"] = q[2] - q[0]
    total = sum(times)
    if counts and total > 0:
        out["tokens_per_s"] = sum(c[1] for c in counts) / total
        out["processed_tokens_per_s"] = sum(c[0] for c in counts) / total
        out["samples_per_s"] = sum(c[2] for c in counts) / total
        if per_token is not None:
            out["model_flops_per_s"] = per_token * out["processed_tokens_per_s"]
            if peak_flops:
                out["mfu"] = out["model_flops_per_s"] / peak_flops
    return out


def _cpu_step_figures(times: list[float], cpu_times: list[float]) -> dict[str, float]:
    """The training thread's CPU time per step, and the time it spent off the CPU."""
    out: dict[str, float] = {}
    if cpu_times:
        out["step_cpu_time_median_s"] = statistics.median(cpu_times)
        if len(cpu_times) == len(times):
            out["step_off_cpu_median_s"] = statistics.median(max(w - c, 0.0) for w, c in zip(times, cpu_times))
    return out


def _phase_time_figures(timing: Timing) -> dict[str, float]:
    """Wall (and CPU) time of the case's phases: training, set-up, saving, and set-up's fixed cost."""
    out: dict[str, float] = {"train_runtime_s": timing.train_s}
    if timing.train_cpu_s is not None:
        out["train_cpu_s"] = timing.train_cpu_s
    if timing.setup_s is not None:
        out["setup_s"] = timing.setup_s
    out["save_s"] = timing.save_s
    if timing.setup_s is not None:
        out["fixed_cost_s"] = max(timing.setup_s - timing.build_s, 0.0)
    return out


def _memory_figures(mem: Memory) -> dict[str, float]:
    """Peak host memory, and the device's peaks where it measured them."""
    out = {"peak_rss_gib": mem.peak_rss_bytes / GIB,
           "peak_rss_delta_gib": (mem.peak_rss_bytes - mem.start_rss_bytes) / GIB}
    for key in ("cuda_max_allocated", "cuda_max_reserved", "nvml_peak_used"):
        value = getattr(mem, f"{key}_bytes")
        if value is not None:
            out[f"{key}_gib"] = value / GIB
    return out


def _work_figures(work: dict | None, per_token: float | None) -> dict[str, float]:
    """What the one profiled step counted: FLOPs, aten calls, and the FLOPs against the analytic count."""
    if not work:
        return {}
    out = {"counted_flops_per_step": work["flops"], "aten_calls_per_step": work["aten_calls"]}
    if per_token and work.get("processed_tokens"):
        out["counted_vs_analytic_flops"] = work["flops"] / (per_token * work["processed_tokens"])
    return out


def _loss_figures(losses: list[float], loss_window: int) -> dict[str, float]:
    """The mean of the last and of the first `loss_window` logged losses."""
    if not losses:
        return {}
    return {"final_loss": _window_mean(losses, loss_window, last=True),
            "initial_loss": _window_mean(losses, loss_window, last=False)}


def _param_figures(params: Params) -> dict[str, float]:
    """Parameter counts, and the 4-bit base's storage per parameter."""
    out = {"trainable_params": params.trainable, "total_params": params.total}
    if params.quantized is not None:
        out["quant_bits_per_param"] = params.quantized.bits_per_param
    return out


def _check_figure(name: str, check: Reload | Reference | None) -> dict[str, float]:
    """A logit check's largest difference (the reloaded checkpoint's, DPO's reference's), where it ran."""
    return {} if check is None else {name: check.max_abs_logit_diff}


def _route_figures(reload: Reload | None) -> dict[str, float]:
    """Each load route's logits against the trained model's (`reload/<route>`), where it was checked."""
    if reload is None or not reload.routes:
        return {}
    return {f"reload/{r['route']}": r["max_abs_logit_diff"] for r in reload.routes
            if r.get("status") == "checked" and r.get("max_abs_logit_diff") is not None}


def _logged_figures(loss_curve: list[dict], logged: Mapping[str, str], loss_window: int) -> dict[str, float]:
    """What the trainer logged beyond the loss (DPO's implicit reward margin and accuracy), as the mean
    over the last `loss_window` steps; only the metrics its backend declares (Backend.logged_metrics)."""
    out: dict[str, float] = {}
    for name, key in logged.items():
        series = [p[key] for p in loss_curve if key in p]
        if series:
            out[name] = _window_mean(series, loss_window, last=True)
    return out


def _eval_figures(eval_curve: list[dict]) -> dict[str, float]:
    """The eval split's loss before the first step and after the last."""
    if not eval_curve:
        return {}
    return {"eval_loss_initial": eval_curve[0]["eval_loss"], "eval_loss_final": eval_curve[-1]["eval_loss"]}


def described(values: dict[str, float]) -> dict[str, dict]:
    """Values with their declared unit and direction, as stored in a record."""
    return {name: {"value": value, "unit": METRICS[name].unit, "better": METRICS[name].better}
            for name, value in values.items()}
