"""The reward trainer's known faults (suite/train/inject.py installs them under FTSUITE_INJECT only):
`drop_score`, the saved adapter loses its score-head tensors (a reload would score with a new random
head), which `score_head_saved` must see; `reward_last_position`, the classifier reads the score at the last
position whatever the padding (its padding id set to one no text holds: the pooling of a release that lost the
padding id), which `reward_padding_invariance` must see while the pair accuracy still rises;
`reward_center_ignored`, the loss drops `center_rewards_coefficient`'s term, which `reward_loss_by_definition`
must see (on a case that sets it)."""
from __future__ import annotations

from typing import Any

from suite.train.backends.base import DeclaredFaults
from suite.train.backends.spoil import after_save, drop_tensors


def drop_score(trainer: Any, faults: dict[str, float]) -> None:
    after_save(trainer, lambda saved: drop_tensors(saved, "score"))


def _read_last_position(cls: type) -> None:
    """The classifier class (every model of it in this child: the trained one and its reloads alike, as a release's
    change would be) reads its score at the last position: its padding id, during its forward, is one no text holds."""
    forward = cls.forward

    def last_position_forward(self: Any, *args: Any, **kwargs: Any) -> Any:
        config = self.config.get_text_config()
        kept, config.pad_token_id = config.pad_token_id, config.vocab_size - 1
        try:
            return forward(self, *args, **kwargs)
        finally:
            config.pad_token_id = kept

    cls.forward = last_position_forward


def reward_faults(trainer: Any, faults: dict[str, float]) -> None:
    if "reward_last_position" in faults:
        model = trainer.accelerator.unwrap_model(trainer.model)
        _read_last_position(type(model.get_base_model() if hasattr(model, "get_base_model") else model))
    if "reward_center_ignored" in faults:
        computing, args = trainer.compute_loss, trainer.args

        def uncentred(*a: Any, **kw: Any) -> Any:
            coefficient, args.center_rewards_coefficient = args.center_rewards_coefficient, None
            try:
                return computing(*a, **kw)
            finally:
                args.center_rewards_coefficient = coefficient

        trainer.compute_loss = uncentred


DROP_SCORE = DeclaredFaults(("drop_score",), drop_score)
REWARD_FAULTS = DeclaredFaults(("reward_last_position", "reward_center_ignored"), reward_faults)
