"""A metric's declaration: its unit and which direction is better (optimum-benchmark's trackers).
Below the judge, which collects every line (suite/judge/metrics.py), and the trainers' backend packages,
which declare their own (suite/train/backends/<trainer>/metrics.py)."""
from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Metric:
    name: str
    unit: str
    better: str  # "lower" | "higher" | "none" (informational)
    description: str
    rel_tolerance: float = 0.05  # change below this is within noise when no repeats exist
    cpu_rel_tolerance: float | None = None  # the same for records made on a CPU (None: rel_tolerance)
    # With repeats, a change must also exceed this (or the tolerance, if smaller) to be a verdict:
    # five tightly clustered repeats must not turn a 1% drift of a timing into one.
    min_change: float = 0.05
    # A timing (wall or CPU time, a rate): one run a side on a shared machine carries no verdict
    # (suite/report/judgement.py says "needs repeats" and does not gate); repeats judge it.
    timing: bool = False
    # No verdict for a change this small in the metric's unit, whatever the ratio: a multiplicative
    # tolerance on a baseline of 0 would call 0 -> 7 microseconds "worse" (one canary did).
    abs_floor: float | None = None
    # A memory metric measured once a side: the largest relative difference measured between single
    # runs of one case on one stack. A change beyond the tolerance but within this is `needs repeats`
    # (suite/report/judgement.py), not a verdict; beyond it, one run a side judges. None: not applied.
    single_run_spread: float | None = None

    @property
    def floor(self) -> float:
        """The absolute floor: declared, else the default of the metric's unit (UNIT_FLOORS)."""
        return self.abs_floor if self.abs_floor is not None else UNIT_FLOORS.get(self.unit, 0.0)

    def tolerance_for(self, device: str | None) -> float:
        if device == "cpu" and self.cpu_rel_tolerance is not None:
            return self.cpu_rel_tolerance
        return self.rel_tolerance


# Default absolute floors per unit: below a timer's and a scheduler's resolution for times (100 us),
# 1 MiB of memory, a millionth of a nat or a logit (float32 rounding of the tiny models' values);
# counts (FLOPs, calls, parameters, bytes) are exact and have none.
UNIT_FLOORS = {"s": 1e-4, "GiB": 2**-10, "nats": 1e-6, "logit": 1e-6, "fraction": 1e-4, "tokens/s": 0.01,
               "samples/s": 0.001, "FLOP/s": 1.0, "ratio": 1e-4, "bits": 1e-4}
