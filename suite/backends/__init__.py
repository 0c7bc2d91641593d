"""Backends build a trainer for a case and reload its checkpoint. Each is the only code that
touches its library: hf.py for trl + peft + bitsandbytes, unsloth.py for unsloth."""
