"""What trl's offline preference trainers (DPOTrainer, KTOTrainer) share: the model given as a path with
ref_model=None, so that the reference is the disabled adapter (peft) or a second copy of the base that trl
loads itself (full); the reference's logits snapshotted before training and compared after it (the check
`reference_untouched`, and the fault `reference` that breaks it); the config builder both call with their
own trl config class and beta. dpo/ and kto/ import it; nothing here imports them."""
