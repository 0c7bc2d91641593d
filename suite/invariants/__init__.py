"""Correctness invariants: relations between two real training runs or states that must hold
whatever the package versions (token-level loss normalisation, packing isolation, masks, NEFTune,
save/load, resume, trainable parameters, EOS, truncation). Tests: tests/invariants/."""
