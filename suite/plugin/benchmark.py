"""Hand a case's measured step times to pytest-benchmark, so its JSON, autosave, compare and
compare-fail work on training steps (not on the wall time of a child process)."""
from __future__ import annotations

from suite.judge.metrics import timed_window
from suite.records import provenance
from suite.records.record import CaseRecord

EXTRA_METRICS = ("step_time_median_s", "tokens_per_s", "processed_tokens_per_s", "samples_per_s", "mfu",
                 "model_flops_per_s", "peak_rss_gib", "cuda_max_allocated_gib", "cuda_max_reserved_gib",
                 "nvml_peak_used_gib", "setup_s", "fixed_cost_s", "save_s", "checkpoint_bytes", "final_loss")


class StepClock:
    """A timer that advances by one measured step each round: pytest-benchmark reads it before and
    after the round's (empty) target, so each round's duration is exactly one measured step."""

    def __init__(self, steps: list[float]):
        self._steps = list(steps)
        self._now = 0.0
        self._next = 0

    def __call__(self) -> float:
        return self._now

    def tick(self) -> None:
        self._now += self._steps[self._next]
        self._next += 1


def timed_steps(record: CaseRecord) -> list[float]:
    """The steps a record's metrics were computed from: warm-up left out (as suite.judge.metrics does)."""
    return timed_window(record.step_times_s, record.step_tokens, record.warmup_steps)[0]


def extra_info(records: list[CaseRecord]) -> dict:
    """What a maintainer needs beside the timings: memory, throughput, MFU, versions, per repeat."""
    first = records[0]
    info = {"case_id": first.case_id, "fingerprint": first.fingerprint, "mode": first.mode,
            "profile": first.profile, "repeats": len(records),
            "run_id": first.run_id, "packages": provenance.capture()["packages"],
            "device": first.device, "statuses": [r.status for r in records]}
    for name in EXTRA_METRICS:
        values = [r.metrics[name]["value"] for r in records if name in r.metrics]
        if values:
            info[name] = values[0] if len(values) == 1 else values
    return info


def report(benchmark, records: list[CaseRecord]) -> bool:
    """Feed every timed step of every passed repeat to the fixture; False when none was timed."""
    steps = [t for r in records if r.measured for t in timed_steps(r)]
    benchmark.extra_info.update(extra_info(records))
    if not steps:
        return False
    clock = StepClock(steps)
    # pytest-benchmark has no public hook for externally measured durations; its fixture reads
    # the timer from this attribute when each round starts (pytest-benchmark 4 and 5).
    benchmark._timer = clock
    benchmark.group = "ftsuite"
    benchmark.pedantic(clock.tick, rounds=len(steps), iterations=1, warmup_rounds=0)
    return True
