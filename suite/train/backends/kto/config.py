"""trl's KTOConfig as trl's docs run KTO: beta 0.1, desirable and undesirable weights 1 (the data is about
half each)."""
from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

from suite.train.backends.preference.config import preference_config

if TYPE_CHECKING:
    from suite.matrix.spec import Case

KTO_BETA = 0.1


def kto_config(case: Case, output_dir: Path, device: str, precision: str, model_init_kwargs: dict | None) -> Any:
    from trl import KTOConfig

    return preference_config(case, output_dir, device, precision, model_init_kwargs, KTOConfig, KTO_BETA)
