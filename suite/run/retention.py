"""Checkpoint retention: what a case's folder keeps once the case is judged (split out of
suite/run/session.py)."""
from __future__ import annotations

import shutil
from pathlib import Path

# Checkpoints above this size are deleted once checked (their inventory stays in the record),
# unless the run keeps them: a 7B full fine-tune would leave 14 GB per case.
KEEP_CHECKPOINT_BYTES = 256 * 2**20
# --keep-checkpoints: every checkpoint, or those of at most KEEP_CHECKPOINT_BYTES (the retention policy's
# words, not the loss axis's `auto`)
KEEP_ALWAYS, KEEP_SMALL = "always", "auto"


def keeps(rule: str, nbytes: int) -> bool:
    """Whether a checkpoint of `nbytes` stays under the keep rule (auto: up to KEEP_CHECKPOINT_BYTES)."""
    return rule == KEEP_ALWAYS or (rule == KEEP_SMALL and nbytes <= KEEP_CHECKPOINT_BYTES)


def drop_outputs(workdir: Path, rule: str) -> None:
    """The checkpoint goes unless the keep rule keeps it, whether the case passed, failed or
    died after saving (in the reload, say): a 7B full fine-tune's 13.5 GB must not stay."""
    shutil.rmtree(workdir / "trainer", ignore_errors=True)  # empty with save_strategy="no"
    ckpt = workdir / "checkpoint"
    if ckpt.is_dir() and not keeps(rule, sum(f.stat().st_size for f in ckpt.rglob("*") if f.is_file())):
        shutil.rmtree(ckpt, ignore_errors=True)
