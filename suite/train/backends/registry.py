"""Every backend, and the one that trains a method. Adding a trainer is adding a module here."""
from __future__ import annotations

from suite.train.backends import hf, unsloth
from suite.train.backends.base import Backend

BACKENDS: tuple[Backend, ...] = (hf.BACKEND, unsloth.BACKEND)


def backend_for(method: str) -> Backend:
    for backend in BACKENDS:
        if method in backend.methods:
            return backend
    raise KeyError(f"no backend trains method {method!r}; known: {', '.join(m for b in BACKENDS for m in b.methods)}")
