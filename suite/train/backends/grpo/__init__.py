"""trl's GRPOTrainer (trainer `grpo`): prompt-only data, completions sampled by the policy and scored by a
reward computed in code, group-relative advantages, trl 1.16's default loss type ("dapo") declared
explicitly. What it shares with RLOO (the recorder, config, checks, metrics, faults) is online/'s; its own:
the first-loss check of its loss type (`grpo_first_loss`, recorded as `first_loss_by_definition`) and its
pinned loss type. backend.py."""
