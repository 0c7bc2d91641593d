"""The preference trainers' trl config: every trainer's arguments, beta and max_length (DPOConfig and
KTOConfig take the same fields the suite pins; dpo/config.py and kto/config.py name the class and beta)."""
from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

from suite.train import args as train_args

if TYPE_CHECKING:
    from suite.matrix.spec import Case


def preference_config(case: Case, output_dir: Path, device: str, precision: str, model_init_kwargs: dict | None,
                      config_cls: type, beta: float) -> Any:
    return train_args.config(case, output_dir, device, precision, model_init_kwargs, config_cls,
                             f"trl's {config_cls.__name__}", {"beta": beta, "max_length": case.training.max_length})
