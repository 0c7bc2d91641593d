"""full / lora through trl's RLOOTrainer: prompt-only data, sampled completions scored by a reward computed in
code (suite/train/backends/online/), leave-one-out advantages (each completion's reward less the mean of its
group's other completions'; with beta above 0 the reward carries the KL penalty), and RLOO's sequence-level
clipped loss, averaged over the micro-batch's completions."""
from __future__ import annotations

from suite.train.backends.online import checks as online
from suite.train.backends.online import exercised, relations, sampling
from suite.train.backends.online.backend import Online


class RLOO(Online):
    name = "trl RLOOTrainer"
    label = "RLOO"
    trainer = "rloo"
    description = "trainer: trl's RLOOTrainer (prompt-only data, sampled completions, a reward computed in code)"
    # as GRPO's, with RLOO's loss and its leave-one-out advantages (zero-sum within each group)
    checks = (online.REWARD_RISES, online.first_loss("rloo_first_loss", loss_type="rloo"),
              online.ADVANTAGES_ZERO_MEAN, online.KL_STARTS_AT_ZERO, online.COMPLETIONS_ON_POLICY,
              relations.RLOO_ADVANTAGES, relations.RLOO_LOSS, sampling.SAMPLING_AS_DOCUMENTED)
    options_exercised = exercised.options_check(sequence=True)

    def trl_trainer(self) -> type:
        from trl import RLOOTrainer

        return RLOOTrainer

    def trl_config_cls(self) -> type:
        from trl import RLOOConfig

        return RLOOConfig


BACKEND = RLOO()
