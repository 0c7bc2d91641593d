"""The reward trainer's known fault (suite/train/inject.py installs it under FTSUITE_INJECT only):
`drop_score`, the saved adapter loses its score-head tensors (a reload would score with a new random
head), which `score_head_saved` must see."""
from __future__ import annotations

from typing import Any

from suite.train.backends.base import DeclaredFaults
from suite.train.backends.spoil import after_save, drop_tensors


def drop_score(trainer: Any, faults: dict[str, float]) -> None:
    after_save(trainer, lambda saved: drop_tensors(saved, "score"))


DROP_SCORE = DeclaredFaults(("drop_score",), drop_score)
