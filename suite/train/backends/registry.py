"""Every backend, and the one that trains a method. Adding a trainer is adding a module here."""
from __future__ import annotations

from suite.train.backends import dpo, hf, plain, unsloth
from suite.train.backends.base import Backend

BACKENDS: tuple[Backend, ...] = (hf.BACKEND, unsloth.BACKEND, dpo.BACKEND, plain.BACKEND)


def backend_for(method: str, trainer: str = "sft") -> Backend:
    for backend in BACKENDS:
        if backend.trainer == trainer and method in backend.methods:
            return backend
    known = ", ".join(m for b in BACKENDS if b.trainer == trainer for m in b.methods)
    raise KeyError(f"no backend trains method {method!r} with trainer {trainer!r}; {trainer} trains: {known or 'nothing'}")
