"""What trl's offline preference trainers (DPOTrainer, KTOTrainer) share: the model given as a path with
ref_model=None, so that the reference is the disabled adapter (peft) or a second copy of the base that trl
loads itself (full); the reference's logits snapshotted before training and compared after it (the check
`reference_untouched`, and the fault `reference` that breaks it); the config builder both call with their
own trl config class and beta; and what their by-definition relations share: definitions.py (the suite's own
formulas of DPO's losses and rewards, KTO's KL estimate and loss, the reward model's pairwise loss, and
FORBIDDEN_ORACLES, the library functions each relation must not call), recorder.py (the log-probabilities trl's
loss used, at the first, a middle and the last step), own_logps.py (the suite's own forward at step 1),
relations.py (the record read back, the verdict). dpo/, kto/ and reward/ import it; nothing here imports them."""
