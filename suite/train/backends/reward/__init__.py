"""trl's RewardTrainer (trainer `reward`): a one-output sequence classifier trained on paired preference data
with the pairwise loss; an adapter is peft's SEQ_CLS task, the score head saved with it. Its checks: the
pairwise accuracy and margin rise (`reward_pairs_rise`), the checkpoint holds the score head
(`score_head_saved`); by definition (relations.py, from recorder.py's scores): the logged loss is the pairwise
loss of the scores with `center_rewards_coefficient` (`reward_loss_by_definition`), and a text scores the same
alone and padded (`reward_padding_invariance`); its metrics: `pairwise_accuracy_final`, `pairwise_margin_final`;
its faults: `drop_score` (the saved adapter loses its score head), `reward_last_position`,
`reward_center_ignored`. backend.py, config.py (RewardConfig), checks.py, relations.py, recorder.py, metrics.py,
faults.py."""
