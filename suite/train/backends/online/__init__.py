"""What trl's generating trainers (GRPOTrainer in grpo/, RLOOTrainer in rloo/) share: prompt-only data, a
reward computed in code (the share of colour words), the model given as a path, a recorder of what each step
sampled; their config (num_generations 4, max_completion_length 8); their checks (the sampled reward rises,
the first loss is the loss type's definition at ratio 1, advantages are zero-mean per group, the KL starts
at 0 where beta > 0, completions are the current policy's samples); their metrics (`online_reward_final`,
`online_kl_final`); their faults (`replay_completions`, `stale_old_logps`, `batch_baseline`). backend.py,
config.py, checks.py, metrics.py, faults.py."""
