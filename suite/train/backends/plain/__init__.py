"""transformers' plain Trainer with a peft adapter (trainer `hf_trainer`), the rows tokenised by the suite
itself: the twin of trl's SFTTrainer in a side-by-side. No check, metric or fault of its own. backend.py,
config.py (TrainingArguments)."""
