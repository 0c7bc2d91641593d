"""What a case measures while it trains: loss curve, step times, tokens, peak memory.

Runs inside the case's child process, so every number is the case's own. Nothing here adds a
device synchronisation: step times are taken between successive step starts, and the loss
logging the trainer already does (logging_steps=1 reads the loss) is what closes each step.
"""
from __future__ import annotations

import re
import resource
import threading
import time

from transformers import TrainerCallback


def _status_kib(field: str) -> int | None:
    """A `VmXXX:` line of /proc/self/status, in KiB (None where there is no such file)."""
    try:
        with open("/proc/self/status") as fh:
            for line in fh:
                if line.startswith(field + ":"):
                    return int(line.split()[1])
    except OSError:
        pass
    return None


def peak_rss_bytes() -> int:
    """The kernel's high-water mark of this process's resident memory (exact, no sampling).

    In a forked child it starts at the child's own RSS, not the parent's peak.
    """
    kib = _status_kib("VmHWM")
    return kib * 1024 if kib is not None else resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


def current_rss_bytes() -> int:
    return (_status_kib("VmRSS") or 0) * 1024


class DeviceMemorySampler:
    """Peak device memory in use according to NVML (the driver's view, all allocators included),
    sampled in a thread every `interval_s`. A no-op where NVML or a GPU is missing."""

    def __init__(self, device_index: int = 0, interval_s: float = 0.1, enabled: bool = True):
        self.peak_bytes: int | None = None
        self._enabled = enabled
        self._interval, self._index = interval_s, device_index
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def __enter__(self) -> DeviceMemorySampler:
        if not self._enabled:
            return self
        try:
            import pynvml

            pynvml.nvmlInit()
            self._handle = pynvml.nvmlDeviceGetHandleByIndex(self._index)
            self._nvml = pynvml
        except Exception:  # no NVML, no GPU: nothing to sample
            return self
        self.peak_bytes = 0
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()
        return self

    def _run(self) -> None:
        while not self._stop.is_set():
            used = self._nvml.nvmlDeviceGetMemoryInfo(self._handle).used
            self.peak_bytes = max(self.peak_bytes or 0, used)
            self._stop.wait(self._interval)

    def __exit__(self, *exc) -> None:
        if self._thread is not None:
            self._stop.set()
            self._thread.join()
            self._nvml.nvmlShutdown()


def batch_counts(batch) -> tuple[int, int, int]:
    """(processed, labelled, sequences) of one batch of the layout every trainer has used since trl 0.29:
    `input_ids` with its mask, and `labels` or a completion mask."""
    ids = batch["input_ids"]
    mask = batch.get("attention_mask")
    processed = int(mask.sum()) if mask is not None else int(ids.numel())
    labels = batch.get("labels")
    completion = batch.get("completion_mask")  # DPO's: the chosen and rejected completions' tokens
    labelled = (int((labels[..., 1:] != -100).sum()) if labels is not None
                else int(completion.sum()) if completion is not None else processed)
    pos = batch.get("position_ids")
    sequences = int((pos == 0).sum()) if pos is not None and mask is None else int(ids.shape[0])
    return processed, labelled, sequences


def legacy_counts(batch) -> tuple[int, int, int]:
    """The same counts from the collators of older trl, which keep each part of a pair apart (read in the
    released wheels; the release sweep met them as "KeyError: 'input_ids'"): DPO's until 0.28, the prompt run
    once with each completion; KTO's until 0.25, each completion holding its prompt (labels -100 there) and a
    KL completion beside it; the reward model's until 0.23, the chosen and the rejected text."""
    keys = set(batch.keys())
    if {"prompt_input_ids", "chosen_input_ids", "rejected_input_ids"} <= keys:
        prompt = int(batch["prompt_attention_mask"].sum())
        answers = int(batch["chosen_attention_mask"].sum()) + int(batch["rejected_attention_mask"].sum())
        return 2 * prompt + answers, answers, 2 * int(batch["chosen_input_ids"].shape[0])
    if "completion_input_ids" in keys:
        parts = [p for p in ("completion", "KL_completion") if f"{p}_input_ids" in keys]
        return (sum(int(batch[f"{p}_attention_mask"].sum()) for p in parts),
                sum(_labelled(batch, p) for p in parts),
                sum(int(batch[f"{p}_input_ids"].shape[0]) for p in parts))
    if {"input_ids_chosen", "input_ids_rejected"} <= keys:
        processed = int(batch["attention_mask_chosen"].sum()) + int(batch["attention_mask_rejected"].sum())
        return processed, processed, 2 * int(batch["input_ids_chosen"].shape[0])
    raise ValueError(f"the token counts know no batch layout with the keys {sorted(keys)}: add it to "
                     "suite/train/measure.py's legacy_counts")


def _labelled(batch, part: str) -> int:
    """The loss terms of one part of an older KTO batch: its labels after the causal shift (until 0.25), or
    its completion mask (trl 1.6.0's KTO collator, read in its wheel, keeps `completion_mask` and
    `KL_completion_mask`, no labels: the release sweep met it as "KeyError: 'completion_labels'")."""
    if f"{part}_labels" in batch:
        return int((batch[f"{part}_labels"][..., 1:] != -100).sum())
    return int(batch[f"{part}_mask"].sum())


class CountingCollator:
    """Wraps the trainer's collator to count, per batch, the tokens processed (non-padding), the
    tokens that carry a label (the loss terms after the causal shift) and the sequences."""

    def __init__(self, inner):
        self.inner = inner
        self.batches: list[tuple[int, int, int]] = []

    def __call__(self, features):
        batch = self.inner(features)
        self.batches.append(batch_counts(batch) if "input_ids" in batch else legacy_counts(batch))
        return batch

    def per_step(self, steps: int, grad_accum: int) -> list[tuple[int, int, int]]:
        """Counts summed per optimizer step (the loader may have fetched one batch ahead)."""
        out = []
        for s in range(steps):
            chunk = self.batches[s * grad_accum:(s + 1) * grad_accum]
            out.append(tuple(sum(c[i] for c in chunk) for i in range(3)))
        return out


# What every trainer may log per step beside the loss; a trainer's own keys are its package's (metrics.py's
# LOGGED_KEYS, LOGGED_LISTS), which the registry merges and suite/train/run.py hands to the callback
COMMON_LOGS = ("grad_norm", "learning_rate", "num_tokens", "mean_token_accuracy", "aux_loss")


class MeasureCallback(TrainerCallback):
    """Per-step wall times, per-step CPU times of the training thread, and every logged loss.

    Step i's time is from its start to the start of step i+1, so it includes the trainer's own
    per-step work (logging the loss, which synchronises the device); the last step, followed by
    the end-of-training bookkeeping, is not timed. The CPU time is the training thread's own
    (`time.thread_time`): with one intra-op thread on a CPU, it is the work the step did, which
    waiting for a core shared with other processes does not add to.
    """

    def __init__(self, logged: tuple[str, ...] = (), lists: tuple[str, ...] = ()) -> None:
        """logged: the trainers' own per-step keys recorded as floats; lists: those recorded as logged."""
        self.keys = (*COMMON_LOGS, *logged)
        self.lists = lists
        self.step_starts: list[float] = []
        self.step_cpu_starts: list[float] = []
        self.losses: list[dict] = []
        self.evals: list[dict] = []  # per evaluation: step, eval_loss (and DPO's eval rewards)
        self.first_step_at: float | None = None

    def on_step_begin(self, args, state, control, **kwargs):
        self.step_starts.append(time.perf_counter())
        self.step_cpu_starts.append(time.thread_time())
        if self.first_step_at is None:
            self.first_step_at = time.time()

    def on_log(self, args, state, control, logs=None, **kwargs):
        if logs and "loss" in logs:
            entry = {"step": state.global_step, "loss": float(logs["loss"])}
            for key in self.keys:
                if key in logs:
                    entry[key] = float(logs[key])
            entry.update({key: logs[key] for key in self.lists if key in logs})
            self.losses.append(entry)
        if logs and "eval_loss" in logs:
            self.evals.append({"step": state.global_step, **{k: float(v) for k, v in logs.items()
                                                           if k.startswith("eval_") and isinstance(v, (int, float))}})

    @property
    def step_times(self) -> list[float]:
        return [b - a for a, b in zip(self.step_starts, self.step_starts[1:])]

    @property
    def step_cpu_times(self) -> list[float]:
        return [b - a for a, b in zip(self.step_cpu_starts, self.step_cpu_starts[1:])]


# The operators that say which attention kernel ran: SDPA's backends (flash, efficient, cudnn,
# math, and the CPU ones), flash-attn 2's and xformers' (unsloth's). Not the dispatching
# aten::scaled_dot_product_attention itself, which only says SDPA was asked.
ATTENTION_OPS = re.compile(r"_scaled_dot_product_|flash_?attn|xformers|fmha|efficient_attention", re.IGNORECASE)


def repacked_4bit(model) -> bool:
    """Whether bitsandbytes has repacked any 4-bit weight for its CPU bf16 inference GEMM (it does so at
    the first eval-mode no-grad forward on an AVX512-BF16 CPU, and every later forward, training ones
    included, then runs that GEMM)."""
    return any(getattr(getattr(getattr(m, "weight", None), "quant_state", None), "packing_format_for_cpu", False)
               for m in model.modules())


def profiled_step(trainer, step_counter=None) -> tuple[dict[str, int], dict]:
    """One more forward and backward on the first training batch, after everything else is
    measured (inside training, the profiler cost a tiny CPU case 12% of its step time and 4% of
    its RSS: benchmarks/overhead.py), counted two ways that no noise moves:

    - which attention operators it called (torch's profiler: CPU-side operator records, which
      name the kernel's backend on a GPU too);
    - the work it did: FLOPs (torch.utils.flop_counter, matmuls and attention, forward and
      backward) and aten operator calls, both the same on any machine for the same code path, so
      an extra forward, recomputation, a larger matmul or an upcast shows exactly. On an
      AVX512-BF16 CPU a 4-bit base that bitsandbytes repacked for its bf16 GEMM (an eval-mode forward)
      runs a kernel the counter does not see, and saving unpacks it again: the work records which
      (`repacked_4bit`), so a count is compared with counts of the same path.

    A generating trainer's step samples its completions first (and the suite's recorder replays them):
    its work counts both, and its tokens are what `step_counter` counted of that step.
    """
    from torch.profiler import ProfilerActivity, profile
    from torch.utils.flop_counter import FlopCounterMode

    batch = next(iter(trainer.get_train_dataloader()))
    counter = FlopCounterMode(display=False)
    with profile(activities=[ProfilerActivity.CPU]) as prof, counter:
        trainer.training_step(trainer.model, batch, None)  # num_items_in_batch: the generating trainers require it
    events = prof.key_averages()
    attention = {e.key: e.count for e in events if ATTENTION_OPS.search(e.key)}
    aten = {e.key: e.count for e in events if e.key.startswith("aten::")}
    if isinstance(batch, dict):  # the collator's batch, in today's layout or an older trl's
        tokens = (batch_counts(batch) if "input_ids" in batch else legacy_counts(batch))[0]
    else:  # a generating trainer's prompts: what its counter saw of the step's generation, last
        tokens = step_counter.batches[-1][0]
    by_op = {str(op): int(n) for op, n in counter.get_flop_counts().get("Global", {}).items()}
    work = {"flops": int(counter.get_total_flops()), "aten_calls": int(sum(aten.values())),
            "processed_tokens": tokens, "flops_by_op": dict(sorted(by_op.items())),
            "aten_top": dict(sorted(aten.items(), key=lambda kv: -kv[1])[:20]),
            "repacked_4bit": repacked_4bit(trainer.model)}
    return attention, work
