"""The trainer runs with what the case declares: max_length, truncation, every SFTConfig field."""
from __future__ import annotations

import pytest

from suite.invariants import configs
from suite import cases as load
from suite.matrix import spec
from suite.train import compat

pytestmark = [pytest.mark.slow, pytest.mark.invariant, pytest.mark.tiny]


def _cpu_tiny_cases(request) -> list[spec.Case]:
    all_cases = load.load_cases(request.config.getoption("cases_dir"))
    # not the ZeRO rows: DeepSpeed's arguments start DeepSpeed's comm in this process (accelerate's PartialState),
    # which needs a launcher's ranks (without, it asks mpi4py and leaves ACCELERATE_USE_DEEPSPEED set in the
    # process, which then turned every later trainer of the worker into a DeepSpeed one: CI, 2026-12-08); their
    # fields reach the trainer as tests/run/test_deepspeed.py holds
    return [c for c in all_cases if c.model.size == "tiny" and not c.needs_gpu and c.uses.zero_stage is None]


def test_every_declared_field_reaches_trainer_args(request, tmp_path, invariant):
    invariant.holds(configs.measure_config(_cpu_tiny_cases(request), tmp_path))


@pytest.mark.lora
@pytest.mark.text
def test_sequences_are_cut_at_the_declared_length(tmp_path, invariant):
    invariant.holds(configs.measure_truncation(tmp_path))


@pytest.mark.lora
@pytest.mark.text
def test_can_fail_when_trl_default_max_length_applies(monkeypatch, tmp_path, invariant):
    monkeypatch.setattr(compat, "max_length_args", lambda max_length: {})  # the suite forgets to pass it
    verdicts = configs.measure_truncation(tmp_path)
    invariant.breaks(verdicts, "truncation.lengths")
    invariant.breaks(verdicts, "truncation.max_length")


def test_can_fail_when_trl_default_checkpointing_applies(monkeypatch, request, tmp_path, invariant):
    import dataclasses

    from trl import SFTConfig

    defaults = {f.name: f.default for f in dataclasses.fields(SFTConfig)
                if f.name in ("gradient_checkpointing", "activation_checkpointing")}
    if not any(v is True for v in defaults.values()):  # trl before 1.x: its default is the case's own (off)
        pytest.skip(f"not applicable: the installed trl's SFTConfig defaults checkpointing off ({defaults}), so "
                    f"forgetting to pass it changes nothing to catch")
    monkeypatch.setattr(compat, "checkpointing_args", lambda enabled, use_reentrant=None: {})
    case = next(c for c in _cpu_tiny_cases(request) if "gradient_checkpointing" not in c.features)
    invariant.breaks(configs.measure_config([case], tmp_path), "config.reaches_args")
