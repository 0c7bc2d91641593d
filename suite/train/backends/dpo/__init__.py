"""trl's DPOTrainer (trainer `dpo`): paired preference data (prompt, chosen, rejected), ref_model=None as the
LLM Engineers Handbook's finetune.py runs it after its SFT stage, beta 0.1. Its checks: the first loss is
ln 2 (`dpo_starts_at_ln2`: policy and reference are the same model before the first update), the implicit
rewards' margin and accuracy rise (`dpo_rewards_rise`), the reference is untouched (`reference_untouched`,
shared with KTO in preference/); its metrics: `reward_margin_final`, `reward_accuracy_final`; its fault:
`reference` (preference/faults.py). backend.py (the backend), config.py (DPOConfig), checks.py, metrics.py."""
