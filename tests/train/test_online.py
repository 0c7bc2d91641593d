"""The GRPO and RLOO checks, on real tiny training (trl's GRPOTrainer and RLOOTrainer, a LoRA adapter, seeded
sampling, the colour-word reward): a clean run passes them, and each known fault makes its check fail while
the checks it cannot touch pass — an optimizer that updates nothing (the reward stays where it started), old
log-probabilities that are not the sampling policy's (the first loss is not the loss type's value at ratio 1),
advantages against the whole batch's mean reward (a group's advantages are not zero-mean), an adapter that
starts non-zero (the KL does not start at 0), the first step's completions handed out again at every step
(a replay of the sampling by the current policy does not reproduce them)."""
from __future__ import annotations

import pytest

from suite.cases import load_cases
from suite.train.backends.online.checks import (
    AdvantagesZeroMean,
    CompletionsOnPolicy,
    FirstLossByDefinition,
    KLStartsAtZero,
    OnlineRewardRises,
    first_loss_by_definition,
)
from suite.run.session import RunSession
from suite.train import inject
from tests.helpers import write_cases

pytestmark = pytest.mark.xdist_group("online-faults")
# 20 steps at 5e-3: the reward rises clear of the 0.2 margin in both (the cases run 60 at 2e-3); GRPO with a
# KL coefficient so that its KL check applies (RLOO's default is 0.05)
CASES = {trainer: ("matrix:\n  - {models: [tiny-llama], trainers: [%s], methods: [lora], datasets: [prompt_only], "
                   "training: {max_steps: 20, batch_size: 16, learning_rate: 5.0e-3%s}, "
                   "checks: {loss_window: 5, loss_margin: 0.2}}\n") % (trainer, extra)
         for trainer, extra in (("grpo", ", extra: {beta: 0.04}"), ("rloo", ""))}
COMMON = ("adapter_only", "reload_logits")


def fault_checks(trainer: str) -> dict[str, tuple[str, tuple[str, ...]]]:
    """fault -> (the check it must fail, the checks it cannot touch)."""
    first = "first_loss_by_definition"
    return {
        "no_update": ("online_reward_rises", (first, "advantages_zero_mean", "kl_starts_at_zero",
                                              "completions_on_policy", *COMMON)),
        "stale_old_logps": (first, ("advantages_zero_mean", "kl_starts_at_zero", "completions_on_policy",
                                    *COMMON)),
        "batch_baseline": ("advantages_zero_mean", (first, "kl_starts_at_zero", "completions_on_policy", *COMMON)),
        "adapter_init": ("kl_starts_at_zero", (first, "advantages_zero_mean", "completions_on_policy", *COMMON)),
        "replay_completions": ("completions_on_policy", (first, "advantages_zero_mean", "kl_starts_at_zero", *COMMON)),
    }


@pytest.fixture(scope="module", params=("grpo", "rloo"))
def records(request, tmp_path_factory) -> tuple[str, dict[str, dict]]:
    trainer = request.param
    tmp = tmp_path_factory.mktemp(trainer)
    case = load_cases(write_cases(tmp / "cases", CASES[trainer]))[0]
    session = RunSession(tmp / "results", trainer, baselines=None)
    out = {}
    for fault in ("", *fault_checks(trainer)):
        session.child_env = {inject.ENV: fault}
        out[fault or "clean"] = session.run_case(case).record.to_dict()
    session.finish()
    return trainer, out


def _checks(record: dict) -> dict[str, bool]:
    return {c["name"]: c["passed"] for c in record["checks"]}


@pytest.mark.slow
def test_a_clean_online_run_passes_every_check(records):
    trainer, recs = records
    rec = recs["clean"]
    assert rec["status"] == "passed", rec["reason"]
    checks = _checks(rec)
    for name in ("online_reward_rises", "first_loss_by_definition", "advantages_zero_mean", "kl_starts_at_zero",
                 "completions_on_policy", *COMMON):
        assert checks[name], name
    assert "loss_decreases" not in checks  # a surrogate loss near 0: the reward is what rises
    first = rec["loss_curve"][0]
    assert first["kl"] == 0.0 and first["sampled/on_policy"] == 1.0
    sampling = rec["resolved"]["sampling"]
    assert (sampling["num_generations"], sampling["max_completion_length"], sampling["temperature"]) == (4, 8, 1.0)
    assert len(sampling["first_step"]["completions"]) == 4 and sampling["last_step"]["step"] == 20


@pytest.mark.slow
@pytest.mark.parametrize("fault", ("no_update", "stale_old_logps", "batch_baseline", "adapter_init", "replay_completions"))
def test_each_fault_fails_its_check_and_leaves_the_others(records, fault):
    trainer, recs = records
    rec = recs[fault]
    check, untouched = fault_checks(trainer)[fault]
    assert rec["resolved"]["injected"] == {fault: 1.0}
    assert rec["status"] == "failed"
    checks = _checks(rec)
    assert not checks[check], next(c["message"] for c in rec["checks"] if c["name"] == check)
    assert all(checks[name] for name in untouched), [c["message"] for c in rec["checks"] if not c["passed"]]


@pytest.mark.slow
@pytest.mark.parametrize("loss_type", ("bnpo", "dr_grpo", "grpo"))
def test_the_first_loss_is_each_loss_types_definition(tmp_path, loss_type):
    """Real GRPO runs under the other loss types whose value at ratio 1 needs only lengths and advantages:
    the first loss is that type's definition, and not the default's (dapo) where the two differ."""
    yaml = CASES["grpo"].replace("max_steps: 20", "max_steps: 10").replace("beta: 0.04", f"loss_type: {loss_type}")
    case = load_cases(write_cases(tmp_path / "cases", yaml))[0]
    session = RunSession(tmp_path / "results", f"loss-{loss_type}", baselines=None)
    rec = session.run_case(case).record.to_dict()
    session.finish()
    check = next(c for c in rec["checks"] if c["name"] == "first_loss_by_definition")
    assert check["passed"] and f"{loss_type}'s definition" in check["message"], check["message"]
    first = rec["loss_curve"][0]
    as_dapo = first_loss_by_definition("dapo", first["sampled/lengths"], first["sampled/advantages"], 8)
    assert (abs(first["loss"] - as_dapo) > 1e-3) == (loss_type != "bnpo")  # bnpo equals dapo in one micro-batch


def test_the_checks_on_crafted_values():
    lengths, adv = [8, 4, 2, 8], [1.0, -1.0, 0.5, -0.5]
    # dapo: -(8 - 4 + 1 - 4) / 22; grpo: the mean of -A (0); dr_grpo: -(1) / (4 x 8)
    assert first_loss_by_definition("dapo", lengths, adv, 8) == pytest.approx(-1 / 22)
    assert first_loss_by_definition("grpo", lengths, adv, 8) == 0.0
    assert first_loss_by_definition("dr_grpo", lengths, adv, 8) == pytest.approx(-1 / 32)
    assert first_loss_by_definition("cispo", lengths, adv, 8) is None
    point = {"step": 1, "loss": -1 / 22, "sampled/lengths": lengths, "sampled/advantages": adv}
    assert FirstLossByDefinition(1e-6, "dapo", 8).evaluate("c", [point], 1).passed
    assert not FirstLossByDefinition(1e-6, "grpo", 8).evaluate("c", [point], 1).passed
    assert "accumulated 2" in FirstLossByDefinition(1e-6, "dapo", 8).evaluate("c", [point], 2).message
    assert AdvantagesZeroMean(1e-6, 2).evaluate("c", [point]).passed
    assert not AdvantagesZeroMean(1e-6, 4).evaluate("c", [{**point, "sampled/advantages": [1, 1, 1, 0]}]).passed
    assert KLStartsAtZero(1e-4).evaluate("c", [{"kl": 0.0}]).passed
    assert not KLStartsAtZero(1e-4).evaluate("c", [{"kl": 0.01}]).passed
    assert not KLStartsAtZero(1e-4).evaluate("c", [{"loss": 0.0}]).passed
    replayed = [{"step": s, "sampled/on_policy": 1.0} for s in (1, 2)]
    assert CompletionsOnPolicy().evaluate("c", replayed).passed
    stale = CompletionsOnPolicy().evaluate("c", [*replayed, {"step": 3, "sampled/on_policy": 0.25}])
    assert not stale.passed and "first step 3" in stale.message
    rising = [{"reward": 0.1 + 0.05 * i} for i in range(10)]
    assert OnlineRewardRises(3, 0.5).evaluate("c", rising).passed
    assert not OnlineRewardRises(3, 0.5).evaluate("c", [{"reward": 0.2}] * 10).passed


@pytest.mark.parametrize("trainer", ("grpo", "rloo"))
def test_a_4bit_base_skips_on_a_cpu_saying_why(monkeypatch, tmp_path, trainer):
    """trl casts a quantized model's trainable LM head to bf16 while a CPU run computes in fp32 (its generation
    stops on the dtype mismatch, measured on trl 1.16.0): a declared QLoRA case skips with that reason on a CPU
    and is not refused where a CUDA GPU is visible. Nothing is trained."""
    from suite import machine
    from suite.run import requirements

    case = load_cases(write_cases(tmp_path / "cases", CASES[trainer].replace("methods: [lora]", "methods: [qlora]")))[0]
    monkeypatch.setattr(machine, "cuda_available", lambda: False)
    result = RunSession(tmp_path / "results", "skips").run_case(case)
    assert result.status == "skipped", result.reason
    assert "trl casts the trainable LM head to bf16 while a CPU run computes in fp32" in result.reason
    monkeypatch.setattr(machine, "cuda_available", lambda: True)
    assert not any("LM head" in m for m in requirements.missing_requirements(case))
