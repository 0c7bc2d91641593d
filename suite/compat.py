"""The one place that knows how argument names differ across trl/transformers releases.

Every mapping is keyed on what the installed version offers (its dataclass fields), never on a
guess, and each has a test against the installed version (tests/test_compat.py).
"""
from __future__ import annotations

import dataclasses
import functools


@functools.lru_cache(maxsize=1)
def sft_config_fields() -> frozenset[str]:
    from trl import SFTConfig

    return frozenset(f.name for f in dataclasses.fields(SFTConfig))


def checkpointing_args(enabled: bool, use_reentrant: bool | None = None) -> dict:
    """transformers 5.x renamed gradient_checkpointing to activation_checkpointing (old name deprecated).

    Always explicit: trl's configs default gradient checkpointing to True, which silently changes
    memory and speed when a case did not ask for it. `use_reentrant` goes to the matching *_kwargs.
    """
    prefix = "activation" if "activation_checkpointing" in sft_config_fields() else "gradient"
    out: dict = {f"{prefix}_checkpointing": enabled}
    if use_reentrant is not None:
        out[f"{prefix}_checkpointing_kwargs"] = {"use_reentrant": use_reentrant}
    return out


def max_length_args(max_length: int) -> dict:
    """trl < 0.20 called the sequence bound max_seq_length."""
    if "max_length" in sft_config_fields():
        return {"max_length": max_length}
    return {"max_seq_length": max_length}


def dtype_kwarg(dtype) -> dict:
    """transformers 4.56 renamed from_pretrained's torch_dtype to dtype (the old name is deprecated)."""
    from suite.env import package_version, version_at_least

    return {"dtype": dtype} if version_at_least(package_version("transformers"), "4.56.0") else {"torch_dtype": dtype}


def unknown_sft_fields(names) -> list[str]:
    return sorted(set(names) - sft_config_fields())


def sft_loss_types() -> tuple[str, ...]:
    """The loss_type values the installed trl's SFTConfig declares (its field's `choices`)."""
    from trl import SFTConfig

    field = next(f for f in dataclasses.fields(SFTConfig) if f.name == "loss_type")
    return tuple(field.metadata.get("choices") or (field.default,))
