"""full / lora through trl's RLOOTrainer: prompt-only data, sampled completions scored by a reward computed in
code (suite/train/backends/online.py), leave-one-out advantages (each completion's reward less the mean of its
group's other completions'; with beta above 0 the reward carries the KL penalty), and RLOO's sequence-level
clipped loss, averaged over the micro-batch's completions."""
from __future__ import annotations

from suite.train.backends.online import Online


class RLOO(Online):
    name = "trl RLOOTrainer"
    label = "RLOO"
    trainer = "rloo"
    description = "trainer: trl's RLOOTrainer (prompt-only data, sampled completions, a reward computed in code)"
    # as GRPO's, with RLOO's loss and its leave-one-out advantages (zero-sum within each group)
    checks = ("online_reward_rises", "rloo_first_loss", "advantages_zero_mean", "kl_starts_at_zero",
              "completions_on_policy")
    logged_metrics = {"online_reward_final": "reward", "online_kl_final": "kl"}

    def trl_trainer(self) -> type:
        from trl import RLOOTrainer

        return RLOOTrainer

    def trl_config_cls(self) -> type:
        from trl import RLOOConfig

        return RLOOConfig


BACKEND = RLOO()
