"""trl's SFTTrainer (trainer `sft`, the default): through transformers and peft (backend.py, the base that
the other trl trainers' backends subclass) or through unsloth (unsloth.py, a side-by-side twin). It has no
check, metric or fault of its own: the generic ones of suite/judge/checks.py, suite/judge/metrics.py and
suite/train/inject.py are for every trainer. config.py (SFTConfig)."""
