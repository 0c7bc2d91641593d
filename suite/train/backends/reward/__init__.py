"""trl's RewardTrainer (trainer `reward`): a one-output sequence classifier trained on paired preference data
with the pairwise loss; an adapter is peft's SEQ_CLS task, the score head saved with it. Its checks: the
pairwise accuracy and margin rise (`reward_pairs_rise`), the checkpoint holds the score head
(`score_head_saved`); its metrics: `pairwise_accuracy_final`, `pairwise_margin_final`; its fault:
`drop_score` (the saved adapter loses its score head). backend.py, config.py (RewardConfig), checks.py,
metrics.py, faults.py."""
