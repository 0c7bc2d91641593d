"""GRPO's and RLOO's by-definition relations (suite/train/backends/online/relations.py) on real tiny training:
in-process trainers built by the case's backend (suite/invariants/harness.py), 2-4 steps of 16 completions, the
sample recorder installed as a case run installs it, the checks judged on what it recorded (no baselines). Every
one of GRPO's 8 loss types holds its loss relation (with a KL term, and scale_rewards group / batch / none among
them), as does the clipped path (num_iterations 2), truncated completions masked, and RLOO's loss and advantages
(its KL in the reward, clipped and normalised rewards); each by-definition fault breaks its relation and names the
cause, in process here and through a real case run (tests/helpers.py fault_runs, judged without baselines)."""
from __future__ import annotations

import dataclasses
from pathlib import Path
from types import SimpleNamespace

import pytest

from tests.helpers import assert_fails_alone, check_outcomes, fault_runs

pytestmark = pytest.mark.slow


class _Curve:
    """The logged steps with what the recorder added (as the measurement keeps them)."""

    def __init__(self) -> None:
        self.points: list[dict] = []

    def __getattr__(self, name: str):
        if name.startswith("on_"):
            return lambda *a, **k: None
        raise AttributeError(name)

    def on_log(self, args, state, control, logs=None, **kwargs):
        if logs and "loss" in logs:
            self.points.append({**logs, "step": state.global_step})


RELATIONS = ("advantages_by_definition", "loss_by_definition")


def judged(tmp: Path, trainer: str, extra: dict, faults: tuple[str, ...] = (), steps: int = 2,
           learning_rate: float = 1e-2, names: tuple[str, ...] = RELATIONS) -> dict:
    """Train in process and judge the checks named (the two relations): {check name: CheckResult}."""
    from suite.invariants.harness import build_trainer, quiet, tiny_case
    from suite.train import inject
    from suite.train.backends.registry import backend_for

    case = dataclasses.replace(tiny_case(dataset="prompt_only", extra=extra, max_steps=steps, batch_size=16,
                                         learning_rate=learning_rate), trainer=trainer)
    backend = backend_for(case)
    with quiet():
        built = build_trainer(case, tmp)
        if faults:
            inject.install(built.trainer, {f: 1.0 for f in faults})
        backend.instrument(built.trainer)
        curve = _Curve()
        built.trainer.add_callback(curve)
        built.trainer.train()
    payload = SimpleNamespace(resolved=backend.describe(built.trainer), loss_curve=curve.points)
    checks = [c for c in backend.checks_for(case) if c.name in names]
    return {c.name: c.evaluate(case, payload, None, None) for c in checks}


# each of GRPO's loss types with a KL term, scale_rewards varied among them
GRPO_RUNS = {
    "grpo": {"loss_type": "grpo", "beta": 0.04},
    "bnpo": {"loss_type": "bnpo", "beta": 0.04, "scale_rewards": "batch"},
    "dr_grpo": {"loss_type": "dr_grpo", "beta": 0.04, "scale_rewards": "none"},
    "dapo": {"loss_type": "dapo", "beta": 0.04},
    "luspo": {"loss_type": "luspo", "beta": 0.04, "importance_sampling_level": "sequence"},
    "cispo": {"loss_type": "cispo", "beta": 0.04, "epsilon_high": 5.0},
    "sapo": {"loss_type": "sapo", "beta": 0.04, "scale_rewards": "batch"},
    "vespo": {"loss_type": "vespo", "beta": 0.04},
    # the clipped path: old log-probabilities differ from the current ones at every second step
    "clipped": {"loss_type": "dapo", "num_iterations": 2, "epsilon": 0.02},
    "truncated": {"loss_type": "dapo", "mask_truncated_completions": True},
}
# RLOO's loss at ratio 1 is the mean of zero-sum advantages (0 whatever the loss): its second run reuses each
# generation twice (num_iterations 2), so that the sequence ratio and its clipping carry the loss
RLOO_RUNS = {"rloo": {}, "rloo-clip-normalise": {"reward_clip_range": [0.0, 0.2], "normalize_advantages": True,
                                                 "num_iterations": 2, "epsilon": 0.02}}
ITERATED = ("clipped", "rloo-clip-normalise")


@pytest.mark.parametrize("run", [*GRPO_RUNS, *RLOO_RUNS])
def test_a_clean_run_holds_both_relations(tmp_path, run):
    trainer, extra = ("rloo", RLOO_RUNS[run]) if run in RLOO_RUNS else ("grpo", GRPO_RUNS[run])
    lr = 5e-2 if run in ITERATED else 1e-2  # a large step: the second iteration's ratios leave [0.98, 1.02]
    results = judged(tmp_path, trainer, extra, steps=4 if run in ITERATED else 2, learning_rate=lr)
    assert set(results) == {"advantages_by_definition", "loss_by_definition"}
    for result in results.values():
        assert result.passed, result.message


# fault -> (trainer, settings, what the failing message names)
FAULTS = {
    "scale_rewards_ignored": ("grpo", {}, "advantages_by_definition", "not scaled by the reward std"),
    "dapo_per_sequence": ("grpo", {}, "loss_by_definition", "the loss is grpo's"),
    "clip_dropped": ("grpo", GRPO_RUNS["clipped"], "loss_by_definition", "not clipped"),
    "truncated_counted": ("grpo", GRPO_RUNS["truncated"], "loss_by_definition", "truncated completions counted"),
    "loo_self_baseline": ("rloo", {}, "advantages_by_definition", "includes the completion itself"),
}


@pytest.mark.parametrize("fault", FAULTS)
def test_each_fault_breaks_its_relation_alone_naming_the_cause(tmp_path, fault):
    trainer, extra, broken, cause = FAULTS[fault]
    clipped = fault == "clip_dropped"
    results = judged(tmp_path, trainer, extra, (fault,), steps=4 if clipped else 2,
                     learning_rate=5e-2 if clipped else 1e-2)
    assert not results[broken].passed and cause in results[broken].message, results[broken].message
    other = ({"advantages_by_definition", "loss_by_definition"} - {broken}).pop()
    assert results[other].passed, results[other].message


CASE = ("matrix:\n  - {models: [tiny-llama], trainers: [%s], methods: [lora], datasets: [prompt_only], "
        "training: {max_steps: 4, batch_size: 16, learning_rate: 5.0e-2, extra: %s}, "
        "checks: {loss_window: 1, loss_margin: 0.0}, benchmark: {warmup_steps: 1}}\n")
# 4 steps: the reward need not have risen yet (online_reward_rises is left out of what a clean run must pass)
UNTOUCHED = ("advantages_zero_mean", "kl_starts_at_zero", "completions_on_policy", "adapter_only", "reload_logits")


def clean_apart_from_the_reward(record) -> bool:
    failed = [c["message"] for c in record.checks if not c["passed"] and c["name"] != "online_reward_rises"]
    assert record.status in ("passed", "failed") and not failed, failed
    assert {"advantages_by_definition", "loss_by_definition"} <= set(check_outcomes(record)), record.checks
    return True


def test_case_runs_without_baselines_fail_by_the_relation_that_names_the_fault(tmp_path):
    """Through the child a case runs in, judged without baselines: the clean run passes; each fault fails its
    relation and leaves the other relation and the generating trainers' other checks alone."""
    extra = "{num_iterations: 2, epsilon: 0.02, mask_truncated_completions: true, beta: 0.04}"
    grpo = fault_runs(tmp_path / "grpo", CASE % ("grpo", extra),
                      ("", "scale_rewards_ignored", "clip_dropped", "truncated_counted"))
    assert clean_apart_from_the_reward(grpo["clean"])
    assert_fails_alone(grpo["scale_rewards_ignored"], "scale_rewards_ignored", "advantages_by_definition",
                       ("loss_by_definition", *UNTOUCHED))
    for fault in ("clip_dropped", "truncated_counted"):
        assert_fails_alone(grpo[fault], fault, "loss_by_definition", ("advantages_by_definition", *UNTOUCHED))
    rloo = fault_runs(tmp_path / "rloo", CASE % ("rloo", "{}"), ("", "loo_self_baseline"))
    assert clean_apart_from_the_reward(rloo["clean"])
    assert_fails_alone(rloo["loo_self_baseline"], "loo_self_baseline", "advantages_by_definition",
                       ("loss_by_definition", "first_loss_by_definition", *UNTOUCHED))


# the options' faults (cases/grpo_options.yaml, rloo_options.yaml): label -> (fault, trainer, settings, the relation it
# breaks, what the failing message names)
OPTION_FAULTS = {
    # dapo in place of grpo; bnpo gives the same loss where a generation is one micro-batch, so both are named
    "loss_type_ignored": ("loss_type_ignored", "grpo", GRPO_RUNS["grpo"], "loss_by_definition",
                          "the loss is bnpo's or dapo's"),
    "scale_rewards_none_ignored": ("scale_rewards_ignored", "grpo", GRPO_RUNS["dr_grpo"], "advantages_by_definition",
                                   "scaled by the group's reward std"),
    "reward_clip_ignored": ("reward_clip_ignored", "rloo", {"reward_clip_range": [0.05, 0.25]},
                            "advantages_by_definition", "rewards not clipped"),
    "normalize_ignored": ("normalize_ignored", "rloo", {"normalize_advantages": True}, "advantages_by_definition",
                          "normalize_advantages False applied"),
}


@pytest.mark.parametrize("label", OPTION_FAULTS)
def test_each_option_fault_breaks_its_relation_alone_naming_the_cause(tmp_path, label):
    fault, trainer, extra, broken, cause = OPTION_FAULTS[label]
    results = judged(tmp_path, trainer, extra, (fault,))
    assert not results[broken].passed and cause in results[broken].message, results[broken].message
    other = (set(RELATIONS) - {broken}).pop()
    assert results[other].passed, results[other].message


def test_an_option_that_changes_nothing_fails_options_exercised(tmp_path):
    """num_iterations 2 under an optimizer that updates nothing: the second pass's policy is the sampling one, every
    ratio 1, so the clipped path the option is for never ran (options_exercised fails naming it); the relations hold.
    A clean run of the same settings passes it (GRPO_RUNS' "clipped", 4 steps at 5e-2)."""
    names = (*RELATIONS, "options_exercised")
    idle = judged(tmp_path / "idle", "grpo", GRPO_RUNS["clipped"], ("no_update",), steps=4, learning_rate=5e-2,
                  names=names)
    assert not idle["options_exercised"].passed, idle["options_exercised"].message
    assert "num_iterations 2: largest |log ratio| 0" in idle["options_exercised"].message
    assert all(idle[n].passed for n in RELATIONS), idle
    clean = judged(tmp_path / "clean", "grpo", GRPO_RUNS["clipped"], steps=4, learning_rate=5e-2, names=names)
    assert clean["options_exercised"].passed, clean["options_exercised"].message
