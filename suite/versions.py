"""Installed package versions, and the one list of the stack's packages."""
from __future__ import annotations

import importlib.metadata as md

# The stack under test: what the control lock pins at the top, golden curves record, envs check.
STACK = ("torch", "transformers", "trl", "peft", "accelerate", "datasets", "bitsandbytes")
# Every package whose version a run records, and the ones a report's header names (in this order).
PACKAGES = (*STACK, "unsloth", "flash-attn", "safetensors", "tokenizers", "pytest", "pytest-benchmark")
HEADLINE = ("trl", "transformers", "peft", "torch", "accelerate", "bitsandbytes", "unsloth")


def package_version(name: str) -> str | None:
    try:
        return md.version(name)
    except md.PackageNotFoundError:
        return None


def _vtuple(version: str) -> tuple[int, ...]:
    out = []
    for part in version.split("+")[0].split(".")[:3]:
        digits = "".join(ch for ch in part if ch.isdigit())
        out.append(int(digits) if digits else 0)
    return tuple(out)


def version_at_least(version: str | None, minimum: str) -> bool:
    return version is not None and _vtuple(version) >= _vtuple(minimum)
