"""trl's DistillationConfig on the tiny models: completions of at most 8 tokens sampled on-policy by the student
at temperature 1 (trl's default), so that a step generates in milliseconds on a CPU. `beta` (0 forward KL, 1
reverse KL, 0.5 JSD) is each case's own, declared in its `extra` (DistillationConfig's default is 1.0)."""
from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

from suite.train import args as train_args

if TYPE_CHECKING:
    from suite.matrix.spec import Case

MAX_COMPLETION_LENGTH = 8
PINNED = {"max_completion_length": MAX_COMPLETION_LENGTH}


def distill_config(case: Case, output_dir: Path, device: str, precision: str, model_init_kwargs: dict | None,
                   teacher_init_kwargs: dict | None) -> Any:
    from trl import DistillationConfig

    args = train_args.config(case, output_dir, device, precision, model_init_kwargs, DistillationConfig,
                             "trl's DistillationConfig", PINNED)
    if teacher_init_kwargs is not None:
        args.teacher_model_init_kwargs = teacher_init_kwargs
    return args


def declared(case: Case, field: str) -> Any:
    """A DistillationConfig field as the case declares it: its extra, else the suite's pin, else trl's default."""
    import dataclasses

    from trl import DistillationConfig

    values = {**PINNED, **dict(case.training.extra)}
    if field in values:
        return values[field]
    return next(f.default for f in dataclasses.fields(DistillationConfig) if f.name == field)
