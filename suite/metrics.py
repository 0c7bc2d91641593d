"""Every metric a record can carry, with its unit and which direction is better.

Checks, budgets and reports read these declarations instead of special-casing names.
"""
from __future__ import annotations

import statistics
from dataclasses import dataclass

GIB = 2**30


@dataclass(frozen=True)
class Metric:
    name: str
    unit: str
    better: str  # "lower" | "higher" | "none" (informational)
    description: str
    rel_tolerance: float = 0.05  # change below this is within noise when no repeats exist


METRICS: dict[str, Metric] = {m.name: m for m in [
    # rel_tolerance of timings and RSS (a ratio bound both ways, suite/compare.py): the largest
    # factor measured between runs of the same cases on the shared 2-core CPU (5 tiny runs, 23
    # cases each, other jobs competing for the cores) with 2-6x margin: step_time_median_s 276x
    # (0.007 s/step when idle, up to 2 s under contention), train_runtime_s, tokens_per_s and
    # samples_per_s 78x, save_s 16x, setup_s 4.2x, step_time_iqr_s 3679x, peak_rss_delta_gib
    # 1.3x, peak_rss_gib 1.04x. A single timing there says nothing finer; repeats can.
    # setup_s also holds the forkserver's start for the first case of a session (5-8 s, later
    # cases 0.5-2.6 s), so a case that runs first in one run and not in the other moves 16x.
    Metric("train_runtime_s", "s", "lower", "wall time of trainer.train()", 499.0),
    Metric("step_time_median_s", "s", "lower", "median optimizer-step time, first step excluded", 999.0),
    Metric("step_time_iqr_s", "s", "none", "interquartile range of step times", 9999.0),
    Metric("tokens_per_s", "tokens/s", "higher", "trained tokens per second of train()", 499.0),
    Metric("samples_per_s", "samples/s", "higher", "samples per second of train()", 499.0),
    Metric("setup_s", "s", "lower", "process start to first training step", 29.0),
    Metric("save_s", "s", "lower", "checkpoint save time", 49.0),
    Metric("peak_rss_gib", "GiB", "lower", "peak resident memory of the case's process", 0.10),
    Metric("peak_rss_delta_gib", "GiB", "lower", "peak resident memory above the process's start", 0.50),
    Metric("cuda_max_allocated_gib", "GiB", "lower", "torch.cuda.max_memory_allocated", 0.02),
    Metric("cuda_max_reserved_gib", "GiB", "lower", "torch.cuda.max_memory_reserved", 0.05),
    Metric("checkpoint_bytes", "B", "lower", "bytes of every file in the saved checkpoint", 0.01),
    Metric("final_loss", "nats", "lower", "mean of the last k logged losses", 0.05),
    Metric("initial_loss", "nats", "none", "mean of the first k logged losses", 0.05),
    Metric("trainable_params", "params", "none", "parameters with requires_grad", 0.0),
    Metric("total_params", "params", "none", "all parameters (4-bit weights counted unpacked)", 0.0),
    Metric("reload_max_abs_logit_diff", "logit", "lower", "reloaded checkpoint vs in-memory model", 0.0),
]}


def _window_mean(losses: list[float], k: int, last: bool) -> float | None:
    if not losses:
        return None
    window = losses[-k:] if last else losses[:k]
    return sum(window) / len(window)


def derive(payload: dict, loss_window: int, checkpoint_bytes: int | None) -> dict[str, float]:
    """Metric values from what a child measured."""
    out: dict[str, float] = {}
    train, timing, mem = payload.get("train", {}), payload.get("timing", {}), payload.get("memory", {})
    steps = payload.get("step_times_s") or []
    if len(steps) > 1:
        tail = steps[1:]
        out["step_time_median_s"] = statistics.median(tail)
        if len(tail) >= 4:
            q = statistics.quantiles(tail, n=4)
            out["step_time_iqr_s"] = q[2] - q[0]
    train_s = timing.get("train_s")
    if train_s:
        out["train_runtime_s"] = train_s
        if train.get("tokens"):
            out["tokens_per_s"] = train["tokens"] / train_s
        if train.get("samples"):
            out["samples_per_s"] = train["samples"] / train_s
    for key in ("setup_s", "save_s"):
        if key in timing:
            out[key] = timing[key]
    if "peak_rss_bytes" in mem:
        out["peak_rss_gib"] = mem["peak_rss_bytes"] / GIB
        out["peak_rss_delta_gib"] = (mem["peak_rss_bytes"] - mem.get("start_rss_bytes", 0)) / GIB
    for key in ("cuda_max_allocated", "cuda_max_reserved"):
        if f"{key}_bytes" in mem:
            out[f"{key}_gib"] = mem[f"{key}_bytes"] / GIB
    if checkpoint_bytes is not None:
        out["checkpoint_bytes"] = checkpoint_bytes
    losses = [p["loss"] for p in payload.get("loss_curve", [])]
    if losses:
        out["final_loss"] = _window_mean(losses, loss_window, last=True)
        out["initial_loss"] = _window_mean(losses, loss_window, last=False)
    params = payload.get("params", {})
    for key in ("trainable", "total"):
        if key in params:
            out[f"{key}_params"] = params[key]
    if "reload" in payload:
        out["reload_max_abs_logit_diff"] = payload["reload"]["max_abs_logit_diff"]
    return out


def described(values: dict[str, float]) -> dict[str, dict]:
    """Values with their declared unit and direction, as stored in a record."""
    return {name: {"value": value, "unit": METRICS[name].unit, "better": METRICS[name].better}
            for name, value in values.items()}
