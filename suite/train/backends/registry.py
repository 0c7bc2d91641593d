"""Every backend, the one that trains a case, and what they tell the matrix (suite/matrix/support.py), and
what the trainers' packages declare, merged for the rest of the suite: their Metric lines (the judge's
metrics), the keys the measurement records, their known faults (suite/train/inject.py). Adding a trainer is
adding its package under suite/train/backends/ and one line here (tests/test_standin_trainer.py)."""
from __future__ import annotations

from typing import TYPE_CHECKING

from suite.matrix.axes import ATTENTION, DISTRIBUTED, METHODS, Adapter, Library, Quantization, method_of
from suite.train.backends.base import Backend, DeclaredFaults
from suite.train.backends.distill import backend as distill
from suite.train.backends.dpo import backend as dpo
from suite.train.backends.grpo import backend as grpo
from suite.train.backends.kto import backend as kto
from suite.train.backends.plain import backend as plain
from suite.train.backends.reward import backend as reward
from suite.train.backends.rloo import backend as rloo
from suite.train.backends.sft import backend as hf
from suite.train.backends.sft import unsloth

if TYPE_CHECKING:
    from suite.matrix.spec import Case
    from suite.metric import Metric

BACKENDS: tuple[Backend, ...] = (
    hf.BACKEND,
    unsloth.BACKEND,
    dpo.BACKEND,
    plain.BACKEND,
    kto.BACKEND,
    reward.BACKEND,
    grpo.BACKEND,
    rloo.BACKEND,
    distill.BACKEND,
)


def trainer_metrics() -> tuple[Metric, ...]:
    """Every trainer's own Metric lines, in the registry's order, each once (GRPO and RLOO share theirs); a
    name two trainers declare differently is an error naming both."""
    seen: dict[str, tuple[Metric, str]] = {}
    for backend in BACKENDS:
        for metric in backend.metrics:
            if metric.name in seen and seen[metric.name][0] != metric:
                raise ValueError(f"metric {metric.name}: {seen[metric.name][1]} and {backend.name} declare it "
                                 f"differently")
            seen.setdefault(metric.name, (metric, backend.name))
    return tuple(m for m, _ in seen.values())


def logged_keys() -> tuple[str, ...]:
    """The per-step keys the trainers log beside the loss (floats), in the registry's order, each once: the
    measurement records every one of them for every trainer (suite/train/measure.py's MeasureCallback)."""
    return tuple(dict.fromkeys(k for b in BACKENDS for k in b.logged_keys))


def logged_lists() -> tuple[str, ...]:
    """The per-step keys logged as lists (a generating trainer's sample recorder's), each once."""
    return tuple(dict.fromkeys(k for b in BACKENDS for k in b.logged_lists))


def declared_faults() -> dict[str, DeclaredFaults]:
    """Each known fault kind a trainer's package declares, with its declaration (shared ones once)."""
    out: dict[str, DeclaredFaults] = {}
    for backend in BACKENDS:
        for faults in backend.faults:
            for kind in faults.kinds:
                if kind in out and out[kind] is not faults:
                    raise ValueError(f"fault {kind!r}: declared twice, the second time by {backend.name}")
                out[kind] = faults
    return out


def _trains(backend: Backend, trainer: str, adapter: Adapter, quantization: Quantization, library: Library) -> bool:
    return (backend.trainer == trainer and backend.library == library and adapter in backend.adapters
            and quantization in backend.quantizations)


def backend_of(trainer: str, adapter: Adapter, quantization: Quantization, library: Library) -> Backend:
    """The backend that trains these axis values with a trainer (KeyError naming what the trainer trains):
    found from the typed axes themselves, never from the method's name."""
    for backend in BACKENDS:
        if _trains(backend, trainer, adapter, quantization, library):
            return backend
    known = ", ".join(name for name, m in METHODS.items() for b in BACKENDS
                      if _trains(b, trainer, m.adapter, m.quantization, m.library))
    method = method_of(adapter, quantization, library).name  # named for the reader, as case files name it
    raise KeyError(f"no backend trains method {method!r} with trainer {trainer!r}; "
                   f"{trainer} trains: {known or 'nothing'}")


def backend_for(case: Case) -> Backend:
    return backend_of(case.trainer, case.adapter, case.quantization, case.library)


class _Support:
    """The matrix's view of the backends (suite/matrix/support.py's Support)."""

    @property
    def trainers(self) -> dict[str, str]:
        return {b.trainer: b.description for b in BACKENDS}

    def cannot_train(self, case: Case) -> str | None:
        try:
            backend = backend_for(case)
        except KeyError as exc:
            return exc.args[0]
        if case.dataset not in backend.formats:
            return f"{backend.name} trains on {', '.join(backend.formats)} data, not {case.dataset}"
        refused = [f for f in case.features if backend.features is not None and f not in backend.features]
        if refused:
            return f"{backend.name} cannot train with {', '.join(refused)}; it takes {', '.join(backend.features)}"
        if backend.picks_attention and set(ATTENTION) & set(case.features):
            return f"{backend.name} picks its own attention kernels; do not combine it with an attention variant"
        if backend.picks_attention and case.uses.own_kernels:
            return f"{backend.name} patches the model with its own kernels; do not combine it with liger"
        if not backend.distributed and set(DISTRIBUTED) & set(case.features):
            return f"{backend.name} trains on one GPU; it cannot be combined with ddp or fsdp"
        return backend.cannot_run(case)


SUPPORT = _Support()
