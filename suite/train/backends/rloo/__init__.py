"""trl's RLOOTrainer (trainer `rloo`): prompt-only data, sampled completions scored by a reward computed in
code, leave-one-out advantages, RLOO's sequence-level loss. What it shares with GRPO is online/'s; its own:
the first-loss check of RLOO's loss (`rloo_first_loss`, recorded as `first_loss_by_definition`). backend.py."""
