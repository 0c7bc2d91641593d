"""Small builders shared by the unit tests."""
from __future__ import annotations

import textwrap
from pathlib import Path

BASE_MODELS = """
models:
  tiny-llama: {size: tiny, arch: llama}
  tiny-qwen2: {size: tiny, arch: qwen2}
  big: {size: 7b, hub_id: org/big-7b, env: FTSUITE_TEST_BIG}
"""


def write_cases(directory: Path, matrix: str, models: str = BASE_MODELS, defaults: str = "") -> Path:
    """A case directory with a models file, an optional defaults file and one matrix file."""
    directory.mkdir(parents=True, exist_ok=True)
    (directory / "models.yaml").write_text(textwrap.dedent(models))
    if defaults:
        (directory / "_base.yaml").write_text(textwrap.dedent(defaults))
    (directory / "matrix.yaml").write_text(textwrap.dedent(matrix))
    return directory
