"""Imported once by the forkserver so that each case's child starts with the stack loaded.

On a CPU-only machine only: importing the stack initialises CUDA where there is a GPU (peft and
transformers import bitsandbytes, which asks the GPU for its compute capability), and a forked
CUDA context is unusable, so there every case is spawned and imports this itself
(runner.train_spawned). unsloth is not imported: it patches transformers and trl globally, which
would leak into every case.
"""
import warnings

warnings.filterwarnings("ignore", category=FutureWarning)

import datasets  # noqa: E402,F401
import peft  # noqa: E402,F401
import torch  # noqa: E402,F401
import transformers  # noqa: E402,F401
import trl  # noqa: E402,F401
from trl import SFTConfig, SFTTrainer  # noqa: E402,F401  (trl's lazy modules: resolve them now)

import suite.train  # noqa: E402,F401
import suite.train.backends.sft.backend  # noqa: E402,F401
import suite.train.measure  # noqa: E402,F401
