"""trl's RewardConfig: the pairwise loss on a one-output classifier the backend loads itself."""
from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

from suite.train import args as train_args

if TYPE_CHECKING:
    from suite.matrix.spec import Case


def reward_config(case: Case, output_dir: Path, device: str, precision: str, init_kwargs: dict | None = None) -> Any:
    """`init_kwargs`: trl's model_init_kwargs, for a by-name case (trl loads the classifier from the path)."""
    from trl import RewardConfig

    return train_args.config(case, output_dir, device, precision, init_kwargs, RewardConfig, "trl's RewardConfig",
                             {"max_length": case.training.max_length})
