"""The release sweep's plan and table (benchmarks/release_sweep.py): which families, which releases, in what
order, what a cell says; nothing here installs or trains (the sweep itself is run by hand, docs/floors.md)."""
from __future__ import annotations

import pytest

from benchmarks import release_plan as plan
from benchmarks import release_sweep as sweep
from benchmarks.release_table import NOT_SWEPT, render
from suite.cases import load_cases

FAMILIES = plan.families(load_cases())


def test_every_tiny_cpu_case_belongs_to_a_family_that_the_sweep_runs():
    keys = {f.key for f in FAMILIES}
    # the families the issue names: SFT by method, each trainer, the mixture of experts, the 8-bit optimizer
    assert {"sft/full", "sft/lora", "sft/qlora", "sft/lora_8bit", "dpo", "kto", "reward", "grpo", "rloo",
            "hf_trainer", "moe", "adamw_8bit"} <= keys
    cases = [c for c in load_cases() if c.model.size == "tiny" and not c.needs_gpu]
    assert {plan.family_key(c) for c in cases} == keys
    ids = {c.id for c in cases}
    for fam in FAMILIES:
        assert fam.cases and set(fam.cases) <= ids, fam
        assert all(plan.family_key(c) == fam.key for c in cases if c.id in fam.cases)


def test_representatives_are_the_simplest_and_split_where_failures_split():
    by_key = {f.key: f.cases for f in FAMILIES}
    assert by_key["sft/lora"] == ("tiny-llama/lora/base",)
    assert by_key["grpo"] == ("tiny-llama/grpo/lora/base/prompt_only",)
    # a mixture of experts: one case per method (its known failures differ by method); the 8-bit optimizer: per trainer
    assert {c.split("/")[1] for c in by_key["moe"]} == {"full", "lora", "qlora"}
    assert any("/dpo/" in c for c in by_key["adamw_8bit"]) and len(by_key["adamw_8bit"]) == 2


def test_one_release_per_minor_from_the_floor_to_the_lock():
    available = ["0.45.5", "0.46.0", "0.46.1", "0.46.2", "0.47.0", "0.48.0rc1", "0.48.1", "0.48.2", "0.49.0", "0.50.0"]
    # the floor itself for its minor (0.46.1, not 0.46.2), the newest patch between, nothing past the lock
    assert plan.releases(available, "0.46.1", "0.49.0") == ["0.46.1", "0.47.0", "0.48.2", "0.49.0"]
    assert plan.releases(available, "0.46", "0.48.1") == ["0.46.0", "0.47.0", "0.48.1"]


def test_floors_are_read_from_pyproject(tmp_path):
    floors = plan.floors()
    assert set(floors) == set(plan.SWEPT) and floors["bitsandbytes"] == "0.46.1"
    bad = tmp_path / "pyproject.toml"
    bad.write_text('dependencies = ["trl>=0.20"]\n')
    with pytest.raises(SystemExit, match=r"pyproject.toml: no floor `transformers>=...`"):
        plan.floors(bad)


def test_the_order_covers_every_release_ends_first_round_robin():
    items = list(range(9))
    order = plan.spread(items)
    assert sorted(order) == items and order[:3] == [0, 8, 4]
    cells = plan.sweep_order({"a": ["1", "2", "3"], "b": ["x"]})
    assert cells == [("a", "1"), ("b", "x"), ("a", "3"), ("a", "2")]


@pytest.mark.parametrize("statuses, family", [
    (["passed", "failed"], "ran"),  # a failed check still ran: the sweep asks whether it runs, not its numbers
    (["passed", "skipped"], "ran"),
    (["skipped", "skipped"], "skipped"),
    (["passed", "error"], "error"),
    (["skipped", "lost"], "error"),  # a case with no record is never a skip
    (["no environment"], "error"),
])
def test_a_family_errors_when_any_case_does(statuses, family):
    assert plan.family_status({str(i): {"status": s, "reason": ""} for i, s in enumerate(statuses)}) == family


def _cell(version: str, family: str, outcomes: dict[str, dict], moved: dict | None = None) -> plan.Cell:
    return plan.Cell("peft", version, family, plan.family_status(outcomes), outcomes, {}, moved or {},
                     "trl 1.16.0 depends on accelerate>=1.10.1" if moved else "")


def test_the_table_names_each_reason_once_and_shows_what_was_not_swept():
    fams = [plan.Family("sft/lora", ("a",)), plan.Family("moe", ("m-lora", "m-full"))]
    skip = "needs peft>=0.17.0 for LoRA on parameters (installed: {})"
    cells = [_cell("0.15.0", "sft/lora", {"a": {"status": "passed", "reason": ""}}, moved={"trl": "0.29.1"}),
             _cell("0.16.0", "sft/lora", {"a": {"status": "failed", "reason": "loss_decreases, reload/merged"}}),
             _cell("0.15.0", "moe", {"m-lora": {"status": "skipped", "reason": skip.format("0.15.0")},
                                     "m-full": {"status": "error", "reason": "TypeError: boom"}}),
             _cell("0.16.0", "moe", {"m-lora": {"status": "skipped", "reason": skip.format("0.16.0")},
                                     "m-full": {"status": "skipped", "reason": skip.format("0.16.0")}})]
    text = render(cells, fams, {"peft": ["0.15.0", "0.16.0", "0.17.1"]}, {"peft": "0.17.1"}, {"peft": "0.15"})
    rows = {line.split(" | ")[0].lstrip("| ").split(" ")[0]: line for line in text.splitlines() if line.startswith("| 0.")}
    assert rows["0.15.0"] == "| 0.15.0 m1 | ran | skipped s1 / **ERROR** e1 |"
    assert rows["0.16.0"] == "| 0.16.0 | ran, checks failed f1 | skipped s1 |"  # the installed version is not in s1
    assert "0.17.1" not in rows and "Not swept yet (peft): 0.17.1." in text  # a release not run is named once
    assert "- s1 (skipped): peft>=0.17.0 for LoRA on parameters" in text
    assert "- e1 (ERROR): TypeError: boom" in text
    assert "- m1 (moved from the lock): trl 0.29.1 (pip: trl 1.16.0 depends on accelerate>=1.10.1)" in text
    assert "- f1 (checks failed): loss_decreases, reload/merged" in text
    assert "2 ran, 1 skipped, 1 ERROR; 1 releases not swept" in text


def test_pips_reason_for_a_conflict_is_kept_in_its_words():
    message = ("installing transformers==4.56.0 with pip failed (exit 1):\nERROR: Cannot install transformers==4.56.0 "
               "because these package versions have conflicting dependencies.\n\nThe conflict is caused by:\n"
               "    The user requested transformers==4.56.0\n    trl 1.16.0 depends on transformers>=4.56.2\n\n"
               "To fix this you could try to:")
    assert sweep.conflict_words(message) == ("The user requested transformers==4.56.0; "
                                             "trl 1.16.0 depends on transformers>=4.56.2")


def test_the_lock_holds_every_package_but_the_one_swept():
    held = sweep.held_constraints("peft")
    assert "\npeft==" not in held and "\ntrl==" in held and "\naccelerate==" in held


def sweep_table(text: str) -> tuple[list[str], dict[str, list[str]]]:
    """The columns of docs/floors.md's sweep tables and each row's cells, `package release` -> cells."""
    columns, rows, package = [], {}, None
    for line in text.split("### The table", 1)[1].splitlines():
        if line.startswith("**") and "** (floor" in line:
            package = line.split("**")[1]
        elif line.startswith("| release |"):
            columns = [c.strip(" `") for c in line.strip("|").split("|")[1:]]
        elif line.startswith("| ") and package and not line.startswith("|---"):
            cells = [c.strip() for c in line.strip("|").split("|")]
            rows[f"{package} {cells[0].split(' ')[0]}"] = cells[1:]
    return columns, rows


def errors_in(rows: dict[str, list[str]]) -> list[str]:
    return [f"{release}: {cell}" for release, cells in rows.items() for cell in cells if "ERROR" in cell]


def test_the_documented_sweep_covers_every_family_and_no_release_errors():
    """docs/floors.md's table has a column per family of today's cases and no ERROR cell: every release it lists
    runs or skips each family by name (a new family, or a release that errors, is the sweep's to run again)."""
    from suite.paths import ROOT

    columns, rows = sweep_table((ROOT / "docs" / "floors.md").read_text())
    assert columns == [f.key for f in FAMILIES]
    assert rows and all(len(cells) == len(columns) for cells in rows.values())
    assert {r.split(" ")[0] for r in rows} == set(plan.SWEPT)
    assert errors_in(rows) == []


def test_an_error_cell_in_the_documented_table_is_found():
    text = ("### The table\n\n**peft** (floor 0.15, lock 0.21.2): ...\n\n| release | `sft/full` | `moe` |\n|---|---|---|\n"
            "| 0.19.1 | ran | skipped s1 / **ERROR** e1 |\n")
    columns, rows = sweep_table(text)
    assert columns == ["sft/full", "moe"] and errors_in(rows) == ["peft 0.19.1: skipped s1 / **ERROR** e1"]


def test_an_error_cell_names_the_exception_and_the_cause_it_points_to():
    from types import SimpleNamespace

    failure = {"message": "Traceback (most recent call last):\n  File x\nRuntimeError: Failed to import "
                          "trl.trainer.dpo_trainer because of the following error (look up to see its traceback):\n"
                          "No module named 'mergekit'\n"}
    record = SimpleNamespace(status="error", reason="crashed", failure=failure, failed_checks=[])
    assert plan.outcome_of(record) == {"status": "error", "reason": "RuntimeError: Failed to import trl.trainer."
                                       "dpo_trainer because of the following error (look up to see its traceback): "
                                       "No module named 'mergekit'"}
    skipped = SimpleNamespace(status="skipped", reason="needs trl>=0.24.0 for x (installed: 0.22.2)", failure=None)
    assert plan.outcome_of(skipped) == {"status": "skipped", "reason": "needs trl>=0.24.0 for x (installed: 0.22.2)"}


def test_the_documented_sweep_starts_at_pyprojects_floors():
    """Each package's table begins at its floor (the floor's own release): a floor raised or lowered in
    pyproject.toml is a window the sweep has to run again."""
    from packaging.version import Version

    from suite.paths import ROOT

    _, rows = sweep_table((ROOT / "docs" / "floors.md").read_text())
    for package, floor in plan.floors().items():
        mine = [r.split(" ")[1] for r in rows if r.split(" ")[0] == package]
        assert mine and Version(mine[0]) == Version(floor), (package, floor, mine[:1])


def test_the_rest_of_the_stack_is_named_so_pip_resolves_its_requirements_too():
    held = sweep.held_pins("accelerate", "1.1.0")
    assert held[0] == "accelerate==1.1.0" and {"trl", "transformers", "peft"} <= set(held[1:])
    assert "torch" not in held and not any(p.startswith("accelerate") for p in held[1:])
    moved = sweep.moved_pins("accelerate", "1.1.0", {"trl": "1.16.0", "peft": "0.21.2", "accelerate": "1.15.0"})
    assert moved == ("accelerate==1.1.0", "trl<=1.16.0", "peft<=0.21.2")  # never past the lock
