"""full / lora through trl's GRPOTrainer: prompt-only data, completions sampled by the policy and scored by
a reward computed in code (suite/train/backends/online.py), group-relative advantages (each completion's
reward less its prompt group's mean, over the group's standard deviation), and trl 1.16's default loss type
("dapo"), declared explicitly."""
from __future__ import annotations

from suite.train import args as train_args
from suite.train.backends.online import Online


class GRPO(Online):
    name = "trl GRPOTrainer"
    label = "GRPO"
    trainer = "grpo"
    description = "trainer: trl's GRPOTrainer (prompt-only data, sampled completions, a reward computed in code)"
    # the reward rises; the first loss is the declared loss type's value for a policy equal to its old self;
    # advantages are zero-mean within each prompt's group; with beta above 0 the KL starts at 0; each step's
    # completions are the current policy's samples
    checks = ("online_reward_rises", "grpo_first_loss", "advantages_zero_mean", "kl_starts_at_zero",
              "completions_on_policy")
    logged_metrics = {"online_reward_final": "reward", "online_kl_final": "kl"}
    defaults = {"loss_type": train_args.GRPO_LOSS_TYPE}

    def trl_trainer(self) -> type:
        from trl import GRPOTrainer

        return GRPOTrainer

    def trl_config_cls(self) -> type:
        from trl import GRPOConfig

        return GRPOConfig


BACKEND = GRPO()
