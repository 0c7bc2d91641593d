"""trl's KTOTrainer (trainer `kto`): unpaired preference data (prompt, completion, desirable or not),
ref_model=None, beta 0.1 and desirable/undesirable weights 1 as trl's docs run it; the reference as in
DPO (preference/). Its checks: the first step is the reference's (`kto_starts_at_reference`: loss 0.5, kl
0), desirable rewards end above undesirable ones and the margin rises (`kto_rewards_separate`), the
reference is untouched (`reference_untouched`); its metrics: `kto_reward_margin_final`, `kto_kl_final`.
backend.py, config.py (KTOConfig), checks.py, metrics.py."""
