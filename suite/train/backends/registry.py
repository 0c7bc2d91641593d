"""Every backend, the one that trains a case, and what they tell the matrix (suite/matrix/support.py).
Adding a trainer is adding a module and one line to BACKENDS."""
from __future__ import annotations

from typing import TYPE_CHECKING

from suite.matrix.axes import ATTENTION, DISTRIBUTED, METHODS, Adapter, Library, Quantization, method_of
from suite.train.backends import dpo, grpo, hf, kto, plain, reward, rloo, unsloth
from suite.train.backends.base import Backend

if TYPE_CHECKING:
    from suite.matrix.spec import Case

BACKENDS: tuple[Backend, ...] = (hf.BACKEND, unsloth.BACKEND, dpo.BACKEND, plain.BACKEND, kto.BACKEND, reward.BACKEND,
                                 grpo.BACKEND, rloo.BACKEND)


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
