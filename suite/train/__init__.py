"""The child side: the only code that imports trl, peft, unsloth and bitsandbytes. run.py trains one case;
args.py builds the trainer's arguments; probes.py measures the model; measure.py times steps; backends/ holds
one object per trainer kind; compat.py the version differences; models.py and data.py what is trained."""
