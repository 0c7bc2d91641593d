"""What a case measures while it trains: loss curve, step times, tokens, peak memory.

Runs inside the case's child process, so every number is the case's own.
"""
from __future__ import annotations

import resource
import threading
import time

from transformers import TrainerCallback


class RssSampler:
    """Peak resident memory of this process, sampled in a thread (ru_maxrss would include the
    pages the preloaded parent touched before the fork)."""

    def __init__(self, interval_s: float = 0.05):
        import psutil

        self._proc = psutil.Process()
        self._interval = interval_s
        self.start_bytes = self._proc.memory_info().rss
        self.peak_bytes = self.start_bytes
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.is_set():
            self.peak_bytes = max(self.peak_bytes, self._proc.memory_info().rss)
            self._stop.wait(self._interval)

    def __enter__(self) -> RssSampler:
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join()
        self.peak_bytes = max(self.peak_bytes, self._proc.memory_info().rss)


def ru_maxrss_bytes() -> int:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


class MeasureCallback(TrainerCallback):
    """Collects per-step wall times and every logged loss without adding device syncs.

    logging_steps=1 already makes the trainer read the loss each step, which synchronises; a
    per-step timer therefore measures the real step, not only its launch.
    """

    def __init__(self) -> None:
        self.step_times: list[float] = []
        self.losses: list[dict] = []
        self.first_step_at: float | None = None
        self._t0: float | None = None

    def on_step_begin(self, args, state, control, **kwargs):
        self._t0 = time.perf_counter()
        if self.first_step_at is None:
            self.first_step_at = time.time()

    def on_step_end(self, args, state, control, **kwargs):
        if self._t0 is not None:
            self.step_times.append(time.perf_counter() - self._t0)
            self._t0 = None

    def on_log(self, args, state, control, logs=None, **kwargs):
        if logs and "loss" in logs:
            entry = {"step": state.global_step, "loss": float(logs["loss"])}
            for key in ("grad_norm", "learning_rate", "num_tokens", "mean_token_accuracy"):
                if key in logs:
                    entry[key] = float(logs[key])
            self.losses.append(entry)
