"""trl's KTOTrainer (trainer `kto`): unpaired preference data (prompt, completion, desirable or not),
ref_model=None, beta 0.1 and desirable/undesirable weights 1 as trl's docs run it; the reference as in
DPO (preference/). Its checks: the first step is the reference's (`kto_starts_at_reference`: kl and the
implicit rewards 0), desirable rewards end above undesirable ones and the margin rises (`kto_rewards_separate`),
the reference is untouched (`reference_untouched`); by definition (relations.py): the logged KL estimate is the
clamped mean log-ratio of mismatched pairs (`kto_kl_by_definition`), the logged loss is KTO's with the weights
(`kto_loss_by_definition`); its metrics: `kto_reward_margin_final`, `kto_kl_final`; its faults: `reference`,
`kto_kl_matched`, `kto_kl_unclamped`, `kto_undesirable_ignored` (faults.py). backend.py, config.py (KTOConfig), checks.py,
relations.py, metrics.py, faults.py."""
