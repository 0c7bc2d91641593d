"""full / lora through trl's GRPOTrainer: prompt-only data, completions sampled by the policy and scored by
a reward computed in code (suite/train/backends/online/), group-relative advantages (each completion's
reward less its prompt group's mean, over the group's standard deviation), and trl 1.16's default loss type
("dapo"), declared explicitly."""
from __future__ import annotations

from suite.train.backends.online import checks as online
from suite.train.backends.online import relations, sampling
from suite.train.backends.online.backend import Online
from suite.train.backends.online.config import GRPO_LOSS_TYPE

DEFAULTS = {"loss_type": GRPO_LOSS_TYPE}  # the config fields it pins beside generation and sampling


class GRPO(Online):
    name = "trl GRPOTrainer"
    label = "GRPO"
    trainer = "grpo"
    description = "trainer: trl's GRPOTrainer (prompt-only data, sampled completions, a reward computed in code)"
    # the reward rises; the first loss is the declared loss type's value for a policy equal to its old self;
    # advantages are zero-mean within each prompt's group; with beta above 0 the KL starts at 0; each step's
    # completions are the current policy's samples
    checks = (online.REWARD_RISES, online.first_loss("grpo_first_loss", defaults=DEFAULTS),
              online.ADVANTAGES_ZERO_MEAN, online.KL_STARTS_AT_ZERO, online.COMPLETIONS_ON_POLICY,
              relations.GRPO_ADVANTAGES, relations.GRPO_LOSS, sampling.SAMPLING_AS_DOCUMENTED)
    defaults = DEFAULTS

    def trl_trainer(self) -> type:
        from trl import GRPOTrainer

        return GRPOTrainer

    def trl_config_cls(self) -> type:
        from trl import GRPOConfig

        return GRPOConfig


BACKEND = GRPO()
