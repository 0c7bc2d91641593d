"""upgrade-check's checkpoint compatibility (suite/tools/checkpoints.py) loads a checkpoint by the routes of
its own head, as the in-run reload does: a reward model's LoRA (a sequence classifier with its score head)
loads by the sequence classifier's routes with the same outputs. Until 2026-12-07 it was loaded through the
causal LM's (`routes.Context` built without the backend's head): auto_peft raised "Expected target PEFT
class: PeftModelForSequenceClassification", peft_model and merged gave "outputs differ by inf", and every
upgrade-check that selected the case reported three newly failing rows."""
from __future__ import annotations

import pytest

from suite.cases import load_cases
from suite.paths import CASES
from suite.run.session import RunSession
from suite.tools import checkpoints

pytestmark = pytest.mark.slow  # its module fixture trains the reward LoRA case

REWARD_LORA = "tiny-llama/reward/lora/base/preference"  # the repository's case: load_one looks it up there


@pytest.fixture(scope="module")
def reward_record(tmp_path_factory):
    """A real run of the reward LoRA case, its checkpoint and probe kept (the compat check's input)."""
    tmp = tmp_path_factory.mktemp("compat")
    case = next(c for c in load_cases(CASES) if c.id == REWARD_LORA)
    session = RunSession(tmp / "results", "compat", baselines=None, keep_checkpoints="always")
    result = session.run_case(case)
    session.finish()
    assert result.status == "passed", result.reason
    return result.record_path


def test_a_reward_lora_checkpoint_loads_by_its_own_routes_with_the_same_outputs(reward_record):
    assert checkpoints.usable(reward_record.parent) == {REWARD_LORA: reward_record}
    rows = {r["route"]: r for r in checkpoints.load_one(reward_record)}
    assert {r: row["verdict"] for r, row in rows.items()} == {
        "peft_model": checkpoints.SAME, "auto_peft": checkpoints.SAME, "merged": checkpoints.SAME,
        "full_model": checkpoints.NOT_APPLICABLE}, [row.get("error") for row in rows.values()]
    assert rows["auto_peft"]["loader"] == "AutoPeftModelForSequenceClassification.from_pretrained(dir)"
    assert rows["peft_model"]["max_abs_logit_diff"] == 0.0
