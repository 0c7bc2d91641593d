"""One object per trainer backend: how its child starts, what it requires, what it controls, how it builds
the trainer and reloads the checkpoint (registry.py)."""
