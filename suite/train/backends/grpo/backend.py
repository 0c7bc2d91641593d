"""full / lora through trl's GRPOTrainer: prompt-only data, completions sampled by the policy and scored by
a reward computed in code (suite/train/backends/online/), group-relative advantages (each completion's
reward less its prompt group's mean, over the group's standard deviation), and trl 1.16's default loss type
("dapo"), declared explicitly."""
from __future__ import annotations

from typing import TYPE_CHECKING

from suite.train.backends.base import TrainerCheck
from suite.train.backends.online import checks as online
from suite.train.backends.online import relations, sampling
from suite.train.backends.online.backend import Online
from suite.train.backends.online.config import GRPO_LOSS_TYPE

if TYPE_CHECKING:
    from suite.matrix.spec import Case

DEFAULTS = {"loss_type": GRPO_LOSS_TYPE}  # the config fields it pins beside generation and sampling
FIRST_LOSS = online.first_loss("grpo_first_loss", defaults=DEFAULTS)
# loss types later than the trl the generating trainers need -> the requirement naming the release that brought each
LOSS_TYPE_NEEDS = {"cispo": "grpo_loss_cispo", "sapo": "grpo_loss_sapo", "luspo": "grpo_loss_luspo",
                   "vespo": "grpo_loss_vespo"}


class GRPO(Online):
    name = "trl GRPOTrainer"
    label = "GRPO"
    trainer = "grpo"
    description = "trainer: trl's GRPOTrainer (prompt-only data, sampled completions, a reward computed in code)"
    # the reward rises; the first loss is the declared loss type's value for a policy equal to its old self;
    # advantages are zero-mean within each prompt's group; with beta above 0 the KL starts at 0; each step's
    # completions are the current policy's samples
    checks = (online.REWARD_RISES, FIRST_LOSS,
              online.ADVANTAGES_ZERO_MEAN, online.KL_STARTS_AT_ZERO, online.COMPLETIONS_ON_POLICY,
              relations.GRPO_ADVANTAGES, relations.GRPO_LOSS, sampling.SAMPLING_AS_DOCUMENTED)
    defaults = DEFAULTS

    def version_needs(self, case: Case) -> list[str]:
        """The generating trainers' needs, and the release that brought the case's loss type (suite/train/compat.py)."""
        newer = LOSS_TYPE_NEEDS.get(self.config_value(case, "loss_type"))
        return [*super().version_needs(case), *([newer] if newer else [])]

    def checks_for(self, case: Case) -> tuple[TrainerCheck, ...]:
        """The first-loss check where the loss type's value at ratio 1 has a derivation from the completions' lengths
        and advantages alone (not cispo, sapo, vespo: their loss_by_definition judges them on the log-probabilities)
        over one micro-batch per generation (not under gradient accumulation: loss_by_definition's, again)."""
        derived = self.config_value(case, "loss_type") in online.LOSS_AT_RATIO_ONE and case.training.grad_accum == 1
        return tuple(c for c in super().checks_for(case) if c is not FIRST_LOSS or derived)

    def trl_trainer(self) -> type:
        from trl import GRPOTrainer

        return GRPOTrainer

    def trl_config_cls(self) -> type:
        from trl import GRPOConfig

        return GRPOConfig


BACKEND = GRPO()
