"""trl's DPOTrainer (trainer `dpo`): paired preference data (prompt, chosen, rejected), ref_model=None as the
LLM Engineers Handbook's finetune.py runs it after its SFT stage, beta 0.1. Its checks: the first loss is
ln 2 (`dpo_starts_at_ln2`: policy and reference are the same model before the first update), the implicit
rewards' margin and accuracy rise (`dpo_rewards_rise`, unless the case's `checks.dpo_rewards_rise` is off), the reference is untouched (`reference_untouched`,
shared with KTO in preference/); by definition (relations.py, the suite's own formulas in
preference/definitions.py, from what preference/recorder.py recorded at the first, a middle and the last step):
trl's sequence log-probabilities equal the suite's own forward's at step 1 (`dpo_logps_by_definition`), the logged
loss is its loss type's definition (`dpo_loss_by_definition`), the logged rewards are beta x log-ratio
(`dpo_rewards_by_definition`); its metrics: `reward_margin_final`, `reward_accuracy_final`; its faults:
`reference` (preference/faults.py), `dpo_beta_twice`, `dpo_prompt_token`, `dpo_rewards_unscaled`,
`dpo_label_smoothing_ignored`, `dpo_loss_weights_swapped`, `dpo_precomputed_ref_misaligned` (faults.py). backend.py (the backend), config.py (DPOConfig), checks.py,
relations.py, metrics.py, faults.py."""
