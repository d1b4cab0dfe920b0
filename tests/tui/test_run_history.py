import math
from typing import Any

from stratcast.tui.run_history import GAP_S, GIB, Plan, RunHistory, loss_curves, memory_curves
from stratcast.tui.widgets.run_config import timeline_text
from stratcast.tui.widgets.run_memory import checkpoints_text, oom_text, plan_text
from stratcast.tui.widgets.run_results import skill_text, top_text
from tests.tui.fake_daemon import demo_history, demo_results


def test_live_samples_are_appended_only_when_newer_than_the_history_s_last_of_their_kind():
    history = RunHistory.from_result(
        {"progress": [{"time": 10.0, "step": 1}], "memory": [{"time": 20.0, "allocated": 1}], "ooms": []}
    )
    live = [
        {"time": 9.0, "kind": "progress", "step": 0},
        {"time": 11.0, "kind": "progress", "step": 2},
        {"time": 15.0, "kind": "memory", "allocated": 2},
        {"time": 21.0, "kind": "memory", "allocated": 3},
    ]
    merged = history.with_live(live)
    assert [s["step"] for s in merged.progress] == [1, 2]
    assert [s["allocated"] for s in merged.memory] == [1, 3]
    assert "kind" not in merged.memory[-1]
    assert history.with_live([]) is history


def test_loss_curves_keep_the_last_report_of_a_repeated_step_and_give_val_its_own_steps():
    progress: list[dict[str, Any]] = [
        {"step": 10, "train_loss": 1.0, "val_loss": None},
        {"step": 20, "train_loss": 0.9, "val_loss": 0.95},
        {"step": 15, "train_loss": 0.7, "val_loss": None},  # a resume from step 14 repeats step 15
        {"step": 20, "train_loss": 0.8, "val_loss": None},
        {"step": 30, "train_loss": math.nan, "val_loss": None},
    ]
    curves = loss_curves(progress)
    assert curves["train"].x == [10, 15, 20] and curves["train"].y == [1.0, 0.7, 0.8]
    assert curves["val"].x == [20] and curves["val"].y == [0.95]


def test_memory_curves_are_in_gib_break_at_a_pause_and_fall_back_to_rss_on_the_cpu():
    gpu = [{"time": t, "allocated": 2 * GIB, "reserved": 3 * GIB, "peak": 4 * GIB} for t in (0.0, 1.0, 1.0 + 2 * GAP_S)]
    curves = memory_curves(gpu)
    assert list(curves) == ["allocated", "reserved", "peak"]
    assert curves["peak"].y == [4.0, 4.0, None, 4.0]
    assert curves["peak"].x[2] == 1.0 + GAP_S
    cpu = memory_curves([{"time": 0.0, "allocated": 0, "reserved": 0, "peak": 0, "rss": GIB}])
    assert list(cpu) == ["rss"] and cpu["rss"].y == [1.0]
    assert memory_curves([]) == {}


def test_the_oom_count_counts_a_live_oom_the_history_does_not_list_yet():
    history = RunHistory.from_result(demo_history())
    assert history.oom_count == 1
    assert history.with_live([{"time": 1e12, "kind": "memory", "oom_count": 3}]).oom_count == 3


def test_a_plan_reads_the_planners_own_format_too():
    planner = {"probes": [[64, 2 * GIB], [128, None]], "micro_batch": 64, "predicted_peak": 2 * GIB}
    planner |= {"measured_peak": 2 * GIB, "budget_bytes": 3 * GIB, "max_micro_batch": 256, "seconds": 1.0}
    plan = Plan.from_sample(planner)
    assert plan.probes == ((64, 2.0 * GIB), (128, None)) and plan.budget == 3 * GIB and plan.batch_size == 256
    text = plan_text(plan).plain
    assert "budget 3G" in text and "micro-batch 64 of batch 256 (4 accumulation steps)" in text
    assert "128  OOM   no" in text
    assert "nothing fits" in plan_text(Plan(micro_batch=0)).plain
    assert "no memory plan yet" in plan_text(None).plain


def test_tables_say_what_is_missing_rather_than_showing_nothing():
    assert oom_text([]).plain == "no out-of-memory errors"
    assert checkpoints_text([], []).plain == "no checkpoints yet"
    assert "no skill table" in skill_text({"run": {}}).plain
    assert top_text([]).plain == "no strategies"
    assert "no events" in timeline_text([]).plain


def test_checkpoints_show_which_files_rotation_kept():
    saved = demo_history(steps=600)["checkpoints"]
    text = checkpoints_text(saved, ["/runs/1/checkpoints/step-000600.pt"]).plain
    lines = text.splitlines()
    assert lines[0] == "in /runs/1/checkpoints"
    assert lines[-1].endswith("step-000600.pt  yes") and lines[-3].endswith("step-000200.pt  no")


def test_a_new_micro_batch_of_zero_reads_none_in_the_oom_list():
    oom = {**demo_history()["ooms"][0], "phase": "optimizer", "new_micro_batch": 0}
    assert "1024→none" in oom_text([oom]).plain


def test_top_strategies_get_a_forecast_sparkline_each():
    rows = demo_results(3)["top"]
    lines = top_text(rows, width=8).plain.splitlines()
    assert len(lines) == 5 and lines[0].endswith("forecast")
    assert all(len(line.split()[-1]) == 8 for line in lines[2:])


def test_top_strategies_that_mostly_lost_money_say_the_bet_the_model_makes():
    rows = [{**row, "trailing_mean": -1.0} for row in demo_results(3)["top"]]
    last = top_text(rows, width=8, window=52).plain.splitlines()[-1]
    assert (
        last
        == "3 of the top 3 lost money over their last 52 periods (trailing mean < 0): the model bets on a turnaround"
    )


def test_a_top_strategy_with_a_band_shows_it_around_its_forecast_on_one_scale():
    row = {
        **demo_results(1)["top"][0],
        "forecast": [1.0, 2.0],
        "band": {"level": 80.0, "lo": [0.0, 0.0], "hi": [3.0, 7.0]},
    }
    lines = top_text([row], width=9).plain.splitlines()
    assert lines[0].endswith("lo80│forecast│hi80")
    assert lines[2].endswith("▁▁│▂▃│▄█")  # 0..7 on one scale: the forecast sits inside its band
