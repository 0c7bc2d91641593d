"""What every test of the suite's own needs."""
from __future__ import annotations

from pathlib import Path

import pytest

from suite.tools.envs import XDIST_VARIABLES

# The fast inner loop is `python -m pytest -m "not slow"`: every unit test of every stage, without
# training. Slow are the matrix's cases and the invariants (they train, by definition) and the tests
# below, each measured at 0.4 s or more on the 2-core CI machine (AMD EPYC Zen 4, 2026-12-05, one run
# of the whole suite with --durations=0): they train a tiny model, start a child interpreter or a
# pytest, build an environment or open a browser, or read a module fixture that trains ("*": every test
# of the module). A new test that does so belongs here; one that is
# missing makes the fast loop slower, never drops coverage (the whole suite still runs it).
TESTS = Path(__file__).resolve().parent
SLOW_DIRS = ("invariants",)
SLOW: dict[str, tuple[str, ...]] = {
    "test_added_tokens.py": (
        "test_an_adapter_without_the_rows_fails",
        "test_the_adapter_carries_the_new_rows_its_way_and_peft_auto_saves_more",
        "test_trainable_tokens_on_the_head_train_under_sft",
    ),
    "test_budgets.py": (
        "test_benchmark_mode_feeds_pytest_benchmark_json",
        "test_tight_budgets_fail_a_real_tiny_case_and_generous_ones_pass",
    ),
    "test_calibrate.py": ("*",),  # every test reads the records of a module fixture that trains
    "test_checkpoint_compat.py": ("*",),  # its module fixture trains the reward LoRA case
    "test_cli_report.py": (
        "test_a_candidate_that_lost_or_truncated_a_record_fails_the_gate",
        "test_compare_to_prints_the_summary",
        "test_one_run_report_exits_0",
        "test_report_gate_exit_codes",
    ),
    "test_distributed.py": (
        "test_a_hung_launch_is_killed_at_the_timeout",
        "test_two_ranks_train_a_case_end_to_end_on_a_cpu",
    ),
    "test_dpo.py": (  # the tests of its module fixture, which trains (the time shows in the first's setup)
        "test_a_clean_dpo_run_passes_every_check",
        "test_each_fault_fails_its_check_and_leaves_the_others",
        "test_a_shifted_reference_leaves_the_start_at_ln2",
    ),
    "test_invariant_members.py": (  # pytest in a child, under the invariants' conftest (it imports the stack)
        "test_the_invariant_conftest_records_a_raising_member_as_a_failing_member",
    ),
    "test_kto.py": (  # the tests of its module fixture, which trains
        "test_a_clean_kto_run_passes_every_check",
        "test_each_fault_fails_its_check_and_leaves_the_others",
    ),
    "test_merge_shards.py": (  # three pytest runs of five tiny cases (one trains), merged and reported
        "test_a_real_three_shard_pytest_run_merges_and_reports_as_one_run",
    ),
    "test_moe.py": (  # the tests of its module fixture, which trains
        "test_a_clean_moe_qlora_run_passes_every_check",
        "test_each_fault_fails_its_check_and_leaves_the_others",
        "test_a_mixture_of_experts_generates_the_same_ids_without_its_router_logits",
    ),
    "test_reward.py": (  # the tests of its module fixture, which trains
        "test_a_clean_reward_run_passes_every_check",
        "test_each_fault_fails_its_check_and_leaves_the_others",
    ),
    "test_dropout.py": (  # the tests of its module fixture, which trains
        "test_a_clean_run_with_lora_dropout_passes",
        "test_each_fault_fails_the_dropout_check_and_leaves_the_others",
        "test_dropout_on_in_evaluation_also_fails_the_reload",
    ),
    "test_online.py": (  # the tests of its module fixtures (GRPO and RLOO), which train
        "test_a_clean_online_run_passes_every_check",
        "test_each_fault_fails_its_check_and_leaves_the_others",
        "test_the_first_loss_is_each_loss_types_definition",
    ),
    "test_envs.py": (
        "test_an_environment_made_from_a_venv_sees_that_venvs_stack",
    ),
    "test_fsdp2_cpu.py": ("*",),  # a process and two ranks per relation (19 to 25 s each, 2026-12-07)
    "test_gpu_session.py": (
        "test_a_part_past_its_time_stops_and_still_leaves_its_log",
        "test_smoke_part_runs_reports_and_packs",
        "test_the_sdpa_probe_tries_each_backend_alone",
        "test_a_running_stage_is_stopped_at_the_deadline",
    ),
    "test_example_reports.py": ("*",),
    "test_progress.py": ("test_watch_runs_the_command_to_its_end_and_polls_until_then",),  # a child, 1.5 s  # renders three reports, one of 57 cases x 2 machines
    "test_history.py": (
        "test_a_history_of_one_run_analyses_nothing_says_what_it_needs_and_its_gate_fails",
        "test_a_slow_drift_is_reported_as_a_drift_not_a_step",
        "test_cli_writes_the_pages_and_gates_on_a_recent_worse_change",
        "test_runs_are_ordered_by_start_and_the_frame_holds_every_value",
        "test_where_a_step_is_found_over_many_noisy_series",
    ),
    "test_perf_verdicts.py": (  # the same
        "test_counted_work_is_the_same_in_two_runs_and_sees_an_extra_forward",
        "test_a_record_has_cpu_times_beside_wall_times_and_the_analytic_comparison",
        "test_the_measured_flop_budget_refuses_the_extra_forward",
    ),
    "test_plugin.py": (
        "test_a_malformed_case_file_stops_collection_naming_file_and_field",
        "test_benchmark_option_switches_to_long_runs_and_cli_lists_cases",
        "test_markers_select_the_matrix",
        "test_one_pytest_run_under_xdist_leaves_one_run_folder",
        "test_two_pytest_processes_into_one_run_id_keep_every_record",
        "test_unknown_marker_is_refused",
    ),
    "test_quantized.py": (
        "test_nf4_double_quant_stores_the_papers_bits_per_parameter",
    ),
    "test_random_models.py": (
        "test_a_shaped_case_trains_end_to_end_through_the_suite",
    ),
    "test_provisional.py": (  # the CLI's import four times; two imports and a judged store
        "test_import_copies_fixtures_only_when_asked_and_its_exit_code_says_whether_it_imported",
        "test_a_second_machine_s_import_confirms_the_reference_with_its_measured_spread",
    ),
    "test_replay.py": (
        "test_a_tightened_bound_fails_the_replay",
        "test_the_intel_run_of_2026_12_07_passes_every_reference_of_its_class",  # its replay is in the fast loop too
    ),
    "test_raises.py": (  # the tests of its module fixture, which trains
        "test_a_raising_route_and_a_raising_check_fail_alone_and_the_case_is_judged",
        "test_each_failure_carries_its_exception_type_and_first_line",
    ),
    "test_report.py": (
        "test_html_is_self_contained",
        "test_html_escapes_case_ids_and_failure_text",
        "test_write_produces_every_format",
    ),
    "test_report_browser.py": (
        "test_no_sideways_scroll_at_1400_px_and_long_notes_fold",
        "test_no_word_broken_mid_word_and_no_sideways_scroll",
        "test_report_opens_without_console_errors",
        "test_screenshot_is_not_blank",
    ),
    "test_routes.py": (  # its module fixture trains seven tiny runs; the seq-cls test builds a model
        "test_a_clean_run_passes_every_route_that_applies_and_says_why_the_others_do_not",
        "test_each_fault_fails_exactly_the_routes_it_is_aimed_at",
        "test_the_record_says_which_routes_failed",
        "test_a_sequence_classifier_carries_its_score_head_through_its_routes",
    ),
    "test_runner.py": (
        "test_timeout_kills_the_child",
    ),
    "test_session.py": (
        "test_a_full_fine_tune_checkpoint_holds_the_whole_model",
        "test_a_passing_adapter_case_leaves_a_valid_record_and_checkpoint",
        "test_a_spawned_case_trains_and_keeps_its_imports_out_of_set_up",
        "test_a_timeout_is_recorded",
        "test_an_exception_in_the_child_is_an_error_record_and_the_next_case_runs",
        "test_records_of_a_rerun_into_the_same_run_id_are_kept",
    ),
    "test_shard.py": (
        "test_slices_are_disjoint_cover_everything_and_unit_tests_run_once",
    ),
    "test_standin_trainer.py": (  # a child interpreter on a copy of suite/ and cases/ (0.5 s each, 2026-12-07)
        "test_a_standin_trainer_is_its_package_one_registry_entry_and_its_yaml",
        "test_without_its_registry_entry_the_standin_trainer_is_unknown",
        "test_a_standin_feature_is_one_feature_line_and_its_yaml",
        "test_without_its_feature_line_the_standin_feature_is_unknown",
    ),
    "test_strategy.py": (  # an FSDP case launched on two CPU ranks (accelerate trains it with DDP); an fsdp import
        "test_fsdp_asked_through_accelerate_on_a_cpu_trains_with_ddp_and_fails_the_strategy_check",
        "test_a_module_without_a_wrapper_is_described_as_one_process",
    ),
    "test_stopped_runs.py": (  # real runs stopped with SIGKILL and SIGINT, then rerun (2026-12-07: 10 to 54 s)
        "test_a_killed_run_is_finished_by_a_rerun_into_its_id",
        "test_an_interrupted_run_under_xdist_says_what_it_kept_records_the_command_and_can_be_finished",
        "test_a_stopped_run_whose_cases_all_have_records_is_finished_by_a_rerun_that_runs_nothing",
    ),
    "test_upgrade.py": (
        "test_a_packing_selection_collects_the_packing_invariants_only",
        "test_cli_refuses_a_bad_pin_before_making_anything",
        "test_repeats_alternate_the_sides_and_probe_once",
    ),
    "test_upgrade_deep.py": (
        "test_a_commit_bisect_names_the_bad_commit",
        "test_an_upgrade_onto_a_broken_invariant_fails_the_gate_naming_the_relation",
    ),
    "test_usage_errors.py": (  # a pytest or suite subprocess each; three case loads per command (0.44-0.53 s)
        "test_a_marker_typo_under_xdist_is_pytests_usage_error_not_an_internalerror",
        "test_a_run_id_that_is_no_folder_name_is_refused_before_any_case",
        "test_the_selection_chooses_what_pytest_collects",
        "test_a_selection_of_no_case_is_a_usage_error_before_any_environment",
    ),
    "test_wheels.py": ("*",),  # uv and pip subprocesses (0.6 to 3.5 s each, 2026-12-05)
    "test_workflows.py": (
        "test_pytest_options_used_by_workflows_are_registered",
    ),
}


def slow_reason(item: pytest.Item) -> str | None:
    """Why a collected test is slow (the fast loop leaves it out), or None."""
    if item.get_closest_marker("case") or item.get_closest_marker("invariant"):
        return "a matrix case or an invariant: it trains"
    rel = item.path.relative_to(TESTS).as_posix()
    if rel.split("/")[0] in SLOW_DIRS:
        return f"under tests/{rel.split('/')[0]}/"
    listed = SLOW.get(rel, ())
    if "*" in listed or getattr(item, "originalname", item.name) in listed:
        return "measured slow (tests/conftest.py: SLOW)"
    return None


def pytest_configure(config):
    config.addinivalue_line("markers", "slow: trains, starts a child or a browser: left out of the fast loop "
                                       "(-m 'not slow'; tests/conftest.py)")


def pytest_collection_modifyitems(config, items):
    for item in items:
        if slow_reason(item):
            item.add_marker(pytest.mark.slow)


@pytest.fixture(autouse=True)
def _not_an_xdist_worker_for_subprocesses(monkeypatch):
    """Under pytest-xdist, a worker's environment says which worker it is (PYTEST_XDIST_WORKER...); a
    pytest that a test starts would inherit it and take itself for a worker (pytest-benchmark then
    writes no --benchmark-json). The test's own process keeps its identity in config.workerinput."""
    for name in XDIST_VARIABLES:
        monkeypatch.delenv(name, raising=False)
