"""A check, a load route or a phase after training that raises is that one's failure, carrying the exception;
the rest of the case is judged and its record is `failed`, not `error`. Until 2026-12-07 an exception there
ended the case: the canary's 46 adapter cases trained normally, then transformers' PEFT integration raised
"The version of PEFT you are using is not compatible, please use a version >= 0.22.0" while a route was
measured, and each became an error record with its curve, its other routes and its checks unjudged.

On real tiny training: the `route_raises` fault (suite/train/inject.py) makes the integration refuse the
installed peft once the checkpoint is saved, exactly as the canary's transformers did; and one of the parent's
checks (the attention check, here made to raise) raises too."""
from __future__ import annotations

import pytest

from suite.cases import load_cases
from suite.judge import checks
from suite.paths import CASES
from suite.run.session import RunSession
from suite.train import inject
from suite.train.payload import Payload
from tests.helpers import check_outcomes, write_cases

pytestmark = pytest.mark.xdist_group("route-faults")
LORA = ("matrix:\n  - {models: [tiny-llama], methods: [lora], training: {max_steps: 10}, "
        "checks: {loss_window: 3, loss_margin: 0.01}}\n")
INTEGRATION_ROUTES = {"reload/load_adapter", "reload/transformers_adapter_dir"}  # through transformers' integration
CHECK_RAISES = "RuntimeError: the profiler's operator table changed shape"


@pytest.fixture(scope="module")
def record(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("raises")
    case = load_cases(write_cases(tmp / "cases", LORA))[0]
    session = RunSession(tmp / "results", "raises", baselines=None, child_env={inject.ENV: "route_raises"})

    def raising(self, case_id, implementation, ops):
        raise RuntimeError("the profiler's operator table changed shape\n(a second line the record leaves out)")

    with pytest.MonkeyPatch.context() as mp:  # the checks run here, in the parent
        mp.setattr(checks.AttentionRan, "evaluate", raising)
        result = session.run_case(case)
    session.finish()
    return result.record


@pytest.mark.slow
def test_a_raising_route_and_a_raising_check_fail_alone_and_the_case_is_judged(record):
    assert record.status == "failed" and record.failure is None, record.reason
    outcomes = check_outcomes(record)
    failing = {name for name, ok in outcomes.items() if not ok}
    assert failing == INTEGRATION_ROUTES | {"attention_ran"}, record.reason
    # the rest is judged: the curve, peft's own routes, the checkpoint
    for name in ("loss_decreases", "reload_logits", "reload/peft_model", "reload/auto_peft", "reload/merged",
                 "adapter_only", "checkpoint_size", "saved_tokenizer"):
        assert outcomes[name], name
    assert len(record.loss_curve) == 10 and record.metrics["final_loss"]["value"] > 0


@pytest.mark.slow
def test_each_failure_carries_its_exception_type_and_first_line(record):
    raised = {c["name"]: c.get("raised") for c in record.checks if not c["passed"]}
    for route in INTEGRATION_ROUTES:
        assert raised[route].startswith("ValueError: The version of PEFT you are using is not compatible, please "
                                        "use a version >= "), raised[route]
    assert raised["attention_ran"] == CHECK_RAISES
    assert all("raised" not in c for c in record.checks if c["passed"])  # a passing check keeps its old shape
    routes = {r["route"]: r for r in record.reload["routes"]}
    assert routes["load_adapter"]["status"] == "error" and routes["peft_model"]["status"] == "checked"


CURVE = [{"step": i + 1, "loss": 3.0 - 0.1 * i} for i in range(10)]


def _payload(routes: list[dict], raised: dict[str, str]) -> Payload:
    """A payload as a child hands it over, with the routes' outcomes and the phases that raised."""
    return Payload.from_dict({
        "loss_curve": CURVE, "step_times_s": [], "step_tokens": [], "flops": None,
        "train": {"steps": 10, "runtime_s": 1.0, "epochs": 1.0, "tokens": 1, "processed_tokens": 1, "samples": 1},
        "params": {"trainable": 1, "total": 2, "trainable_bytes": 4, "trainable_dtypes": ["float32"],
                   "trainable_tensors": 1},
        "memory": {"device": "cpu", "peak_rss_bytes": 1, "start_rss_bytes": 1},
        "timing": {"build_s": 0.0, "train_s": 0.0, "save_s": 0.0, "reload_s": 0.0},
        "checkpoint": {"dir": "x", "kind": "adapter"},
        "reload": {"loader": "PeftModel.from_pretrained", "max_abs_logit_diff": float("inf"), "probe_shape": [1],
                   "routes": routes, "tokenizer": None},
        "device": {"type": "cpu", "precision": "fp32", "threads": 1, "kernels": {}, "attention_ops": {"x": 1},
                   "name": "cpu"},
        "raised": raised})


def test_a_check_that_raises_or_a_phase_that_raised_fails_alone_and_the_others_are_judged():
    """A route outcome that breaks its check (a number that is not one) used to raise out of run_all, and
    the parent lost every check of the case; the phases after training (the backend's reload, the
    tokenizer's check, the profiled step) hand what they raised over in Payload.raised."""
    case = next(c for c in load_cases(CASES) if c.id == "tiny-llama/lora/base")
    routes = [{"route": "peft_model", "loader": "PeftModel", "status": "checked", "max_abs_logit_diff": 0.0},
              {"route": "load_adapter", "loader": "base.load_adapter(dir)", "status": "checked",
               "max_abs_logit_diff": "not a number"}]
    raised = {"reload": "OSError: no file named adapter_config.json", "tokenizer": "KeyError: 'chat_template'",
              "profile": "RuntimeError: the profiler is already enabled"}
    got = {c.name: c for c in checks.run_all(case, _payload(routes, raised), None)}
    assert got["loss_decreases"].passed and got["reload/peft_model"].passed  # judged
    assert got["reload/load_adapter"].raised == "ValueError: could not convert string to float: 'not a number'"
    assert "the check reload/load_adapter raised ValueError" in got["reload/load_adapter"].message
    for name, phase in (("reload_logits", "reload"), ("saved_tokenizer", "tokenizer"), ("attention_ran", "profile")):
        assert not got[name].passed and got[name].raised == raised[phase], name
        assert got[name].message.startswith(f"{case.id}: ") and raised[phase] in got[name].message
    assert checks.run_all(case, _payload(routes[:1], {}), None)  # nothing raised: nothing of the kind
    assert not any(c.raised for c in checks.run_all(case, _payload(routes[:1], {}), None))
