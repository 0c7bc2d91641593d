"""options_exercised (suite/train/backends/online/exercised.py) on hand-made records, no training: each option the
config sets must have acted on the recorded run, and a run where one changed nothing fails naming it. Its real-run
can-fail test is in tests/train/test_online_options.py (num_iterations 2 with an optimizer that updates nothing)."""
from __future__ import annotations

import math

import pytest

from suite.train.backends.online.exercised import OptionsExercised, asks

TRUNCATED, ENDED = [0, 0, 0], [1, 1, 0]


def record(moved: float, masks: list[list[int]]) -> dict:
    """Two completions of 3 tokens; the policy's log-probabilities `moved` above the sampling policy's."""
    old = [[-1.0, -2.0, -3.0]] * len(masks)
    return {"step": 2, "logps": [[x + moved for x in row] for row in old], "old": old, "mask": masks,
            "advantages": [1.0, -1.0]}


CURVE = [{"step": 1, "sampled/rewards": [0.0, 0.125, 0.375, 0.125]}]


@pytest.mark.parametrize("config, records, loss_type, idle", [
    # acts: a truncated completion masked out, ratios past the clip, rewards clipped from both sides
    ({"mask_truncated_completions": True}, [record(0.0, [TRUNCATED, ENDED])], "dapo", None),
    ({"num_iterations": 2, "epsilon": 0.02}, [record(0.1, [ENDED, ENDED])], "dapo", None),
    ({"num_iterations": 2, "epsilon": 0.02}, [record(0.1, [ENDED, ENDED])], None, None),  # RLOO's sequence ratio
    ({"num_iterations": 2, "epsilon_high": 1.02}, [record(0.1, [ENDED, ENDED])], "cispo", None),
    ({"num_iterations": 2}, [record(1e-3, [ENDED, ENDED])], "sapo", None),  # no clip: the ratio moved is enough
    ({"reward_clip_range": [0.05, 0.25]}, [record(0.0, [ENDED, ENDED])], None, None),
    # changes nothing: no completion truncated, the policy never moved, moved but inside the clip, nothing clipped
    ({"mask_truncated_completions": True}, [record(0.0, [ENDED, ENDED])], "dapo", "mask_truncated_completions"),
    ({"num_iterations": 2}, [record(0.0, [ENDED, ENDED])], "sapo", "num_iterations 2"),
    ({"num_iterations": 2, "epsilon": 0.2}, [record(0.01, [ENDED, ENDED])], "grpo", "outside the clip range"),
    ({"num_iterations": 2, "epsilon_high": 5.0}, [record(0.1, [ENDED, ENDED])], "cispo", "above cispo's cap"),
    ({"reward_clip_range": [0.0, 1.0]}, [record(0.0, [ENDED, ENDED])], None, "reward_clip_range"),
])
def test_each_option_acted_or_the_check_names_it(config, records, loss_type, idle):
    assert asks(config)
    result = OptionsExercised().evaluate("c", records, config, CURVE, loss_type)
    assert result.passed == (idle is None), result.message
    if idle:
        assert "changed nothing" in result.message and idle in result.message, result.message
        assert result.value >= 1


def test_a_record_without_its_micro_batches_fails_and_defaults_ask_nothing():
    assert not OptionsExercised().evaluate("c", [], {"num_iterations": 2}, CURVE, "dapo").passed
    assert not OptionsExercised().evaluate("c", [{"error": "x"}], {"num_iterations": 2}, CURVE, "dapo").passed
    assert not asks({"num_iterations": 1, "mask_truncated_completions": False, "reward_clip_range": None})
    assert math.isclose(OptionsExercised().evaluate("c", [record(0.1, [ENDED, ENDED])], {"num_iterations": 2},
                                                    CURVE, "vespo").value, 0.0)


def test_an_option_case_skips_on_a_trl_without_its_loss_type_naming_the_release(monkeypatch):
    """Floors (issue 37 item 6): trl 0.20 skips every option case (generating_trainers, trl 0.24); between 0.24 and the
    release that brought a loss type, its case skips naming that release; the older types need nothing more."""
    from suite.cases import load_cases
    from suite.paths import ROOT
    from suite.train import compat
    from suite.train.backends.registry import backend_for

    # keyed by the option label's loss type or RLOO settings
    cases = {c.option.split(",")[0].split(":")[-1] if c.trainer == "grpo" else c.option: c
             for c in load_cases(ROOT / "cases") if c.option and c.trainer in ("grpo", "rloo")}  # not DPO's

    def why(tag: str, trl: str) -> list[str]:
        versions = {"trl": trl, "transformers": "4.57.6"}  # transformers 4: no trl_package_checks conflict
        monkeypatch.setattr(compat, "package_version", lambda name: versions.get(name, "99"))
        return compat.cannot_express(cases[tag], backend_for(cases[tag]).version_needs(cases[tag]))

    assert all(why(tag, "1.16.0") == [] for tag in cases)
    assert all(any(w.startswith("trl>=0.24.0") for w in why(tag, "0.20.0")) for tag in cases)
    assert why("dapo", "0.25.1") == [] and why("reward_clip_range:0.05-0.25,mask_truncated_completions:true", "0.25.1") == []
    [cispo] = why("cispo", "0.25.1")
    assert cispo.startswith("trl>=0.26.2 for GRPO's loss type cispo"), cispo
    [vespo] = why("vespo", "0.29.1")
    assert vespo.startswith("trl>=1.0.0 for GRPO's loss type vespo"), vespo
    assert why("luspo", "0.28.0") == []
