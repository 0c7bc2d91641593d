"""trl's DistillationTrainer (trainer `distill`): prompt-only data, completions sampled on-policy by the student,
trl's generalized JSD to a tiny teacher (the same architecture and vocabulary, another seed, given by path) with
each case's `beta` (0 forward KL, 1 reverse KL, 0.5 JSD). It logs no distributions, so the suite captures the
student's and teacher's logits itself (recorder.py). Its checks: the held-out divergence from the teacher falls
(`distill_divergence_falls`); by definition (relations.py): the logged loss is the generalized JSD of the
captured logits (`distill_loss_by_definition`); its metrics: `distill_entropy_final`; its faults:
`distill_beta_flipped`, `distill_gradient_reversed` (faults.py). backend.py, config.py (DistillationConfig),
checks.py, relations.py, metrics.py, faults.py, recorder.py."""
