"""What trl's generating trainers (GRPOTrainer in grpo/, RLOOTrainer in rloo/) share: prompt-only data, a
reward computed in code (the share of colour words), the model given as a path, a recorder of what each step
sampled; their config (num_generations 4, max_completion_length 8); their checks (the sampled reward rises,
the first loss is the loss type's definition at ratio 1, advantages are zero-mean per group, the KL starts
at 0 where beta > 0, completions are the current policy's samples) and their relations by definition (the
advantages from the logged rewards, the loss of recorded micro-batches from the suite's own forward, every loss
type); their metrics (`online_reward_final`, `online_kl_final`); their faults (`replay_completions`,
`stale_old_logps`, `batch_baseline`, and the relations' `scale_rewards_ignored`, `dapo_per_sequence`,
`clip_dropped`, `truncated_counted`, `loo_self_baseline`, and `sampling_from_model_file` for the
`sampling_as_documented` check: the settings `generate` resolved, against trl's documented precedence over the
model's generation_config.json; the options' `loss_type_ignored`, `reward_clip_ignored`, `normalize_ignored`) and
`options_exercised` (each option a case sets acted on its run). backend.py, config.py, checks.py, metrics.py, faults.py, definitions.py (the
suite's own formulas), lossrecord.py (what the child records for them), relations.py (the checks), exercised.py (options_exercised), observe.py
(what generate resolved) and sampling.py (its check)."""
