from stratcast.shared.report import (
    models_text,
    results_text,
    saved_text,
    skill_table,
    table,
    top_table,
    trailing_window,
)


def test_table_aligns_numbers_right_and_text_left():
    text = table(["name", "value"], [["a", 1.5], ["bbb", 22.0]])
    lines = text.splitlines()
    assert lines[0].startswith("name") and lines[1].startswith("----")
    assert lines[2] == "a       1.5" and lines[3] == "bbb      22"


def test_skill_table_lists_every_method_and_the_best_possible_pick():
    metrics = {
        "errors": {
            "model": {"mae": 1.0, "rmse": 2.0, "total_mae": 3.0},
            "zero": {"mae": 1.1, "rmse": 2.1, "total_mae": 3.1},
        },
        "ranking": {
            "k": {"top10": 10, "top1pct": 5},
            "universe_mean": 0.25,
            "picks": {"model": {"top10": 1.0, "top1pct": 2.0}, "oracle": {"top10": 9.0, "top1pct": 9.5}},
        },
    }
    text = skill_table(metrics)
    assert "zero forecast" in text and "best possible" in text and "top 1% (5) mean" in text
    zero_line = next(line for line in text.splitlines() if line.startswith("zero forecast"))
    assert zero_line.split()[-2:] == ["-", "-"]  # the zero forecast cannot rank


def test_top_table_keeps_rank_order_and_limit():
    rows = [
        {"rank": i, "strategy": f"s{i}", "forecast_mean": 1.0 / i, "forecast_sum": 2.0, "trailing_mean": 0.1}
        for i in range(1, 30)
    ]
    lines = top_table(rows, limit=3).splitlines()
    assert len(lines) == 5 and "s1" in lines[2] and "s3" in lines[4]


def ranked(trailing):
    return [
        {"rank": i, "strategy": f"s{i}", "forecast_mean": 1.0, "forecast_sum": 52.0, "trailing_mean": t}
        for i, t in enumerate(trailing, 1)
    ]


def test_the_top_table_says_when_most_top_picks_lost_money_over_their_trailing_window():
    rows = ranked([-1.0] * 7 + [2.0] * 3 + [-5.0] * 5)
    last = top_table(rows, window=52).splitlines()[-1]
    assert (
        last
        == "7 of the top 10 lost money over their last 52 periods (trailing mean < 0): the model bets on a turnaround"
    )
    assert top_table(rows, limit=3).splitlines()[-1].startswith("3 of the top 3 lost money over their trailing window")


def test_the_top_table_says_nothing_when_half_or_fewer_top_picks_lost_money():
    text = top_table(ranked([-1.0] * 5 + [0.0] * 5), window=52)
    assert "lost money" not in text and len(text.splitlines()) == 12


def test_the_trailing_window_comes_from_the_runs_spec():
    assert trailing_window({"spec": {"train": {"trailing_window": 26}}}) == 26
    assert trailing_window({}) is None


def test_results_without_a_holdout_list_the_runs_warnings_with_the_picks():
    top = [{"rank": 1, "strategy": 9, "forecast_mean": 0.5, "forecast_sum": 1.0, "trailing_mean": -2.0}]
    metrics = {
        "best_strategy": {"strategy": 9, "forecast_mean": 0.5},
        "warnings": [{"kind": "loss", "message": "loss=mae on a panel with 40% zeros"}],
    }
    text = results_text(metrics, top, where="/runs/7/out")
    assert "outputs in /runs/7/out" in text
    assert "Best strategy: 9" in text
    assert "- warning: loss=mae on a panel with 40% zeros" in text
    assert "1 of the top 1 lost money" in text


def test_a_models_heading_names_its_own_training_defaults_and_the_panels_choices_only_when_it_has_some():
    def model(name, train_defaults):
        return {"name": name, "summary": "s", "paper": "p", "stackable": True, "train_defaults": train_defaults}

    lr = {"name": "learning_rate", "default": 0.001, "lo": None, "hi": None, "help": "peak learning rate"}
    models = [model("patchtst", {"learning_rate": 0.0001}) | {"params": []}, model("dlinear", {}) | {"params": []}]
    models.append(model("softs", {"learning_rate": 0.0003}) | {"params": [], "from_panel": ["loss", "batch_size"]})
    models.append(model("nlinear", {}) | {"params": [], "from_panel": ["scaler", "loss"]})
    lines = models_text({"models": models, "train_options": [lr]}).splitlines()
    assert lines[0] == "patchtst: s (p) (training defaults: learning_rate=0.0001)"
    assert next(line for line in lines if line.startswith("dlinear")) == "dlinear: s (p)"
    softs = next(line for line in lines if line.startswith("softs"))
    assert softs == "softs: s (p) (training defaults: learning_rate=0.0003; from the panel: loss, batch_size)"
    assert "nlinear: s (p) (from the panel: scaler, loss)" in lines


def test_the_top_table_flags_strategies_that_stopped_before_the_panels_end():
    rows = ranked([1.0] * 3)
    rows[1]["ended_early"] = True
    lines = top_table(rows).splitlines()
    assert "s2 *" in lines[3] and "s1 *" not in lines[2] and "*" not in lines[4]
    assert lines[-1].startswith("* stopped before the panel's end")
    assert "*" not in top_table(ranked([1.0] * 3))


def test_skill_table_shows_the_raw_model_and_the_combination_weights():
    metrics = {
        "errors": {
            "model": {"mae": 1.0, "rmse": 2.0, "total_mae": 3.0},
            "model_raw": {"mae": 1.2, "rmse": 2.2, "total_mae": 3.2},
        },
        "ranking": {"k": {"top10": 10, "top1pct": 5}, "universe_mean": 0.25, "picks": {}},
        "combination": {
            "fitted": True,
            "no_signal": True,
            "mean": {"model": 0.0, "trailing_mean": 0.0, "zero": 1.0},
            "weights": {"model": [0.0, 0.0], "trailing_mean": [0.0, 0.0], "zero": [1.0, 1.0]},
        },
    }
    text = skill_table(metrics)
    assert any(line.startswith("model, raw") for line in text.splitlines())
    assert "mean 0.00/0.00/1.00, step 1 0.00/0.00/1.00, step 2 0.00/0.00/1.00" in text
    assert "no signal: the forecast is zero, ranked by the raw model" in text
    metrics["combination"] = {"fitted": False}
    assert "combination" not in skill_table(metrics)


def test_results_with_intervals_show_coverage_next_to_nominal_with_the_worst_step_and_msis():
    top = [{"rank": 1, "strategy": 9, "forecast_mean": 0.5, "forecast_sum": 1.0, "trailing_mean": 2.0}]
    level = {"nominal": 0.8, "coverage": 0.793, "per_step": [0.81, 0.776], "msis": 5.25, "source": "validation part"}
    intervals = {
        "calibrated": True,
        "calibration": {"notes": ["95%: too few calibration scores at steps 2 (need 19): the interval is infinite"]},
        "levels": {"80": {**level, "worst_step": {"step": 2, "coverage": 0.776}}},
    }
    text = results_text({"intervals": intervals}, top)
    assert "80%    80.0%    79.3%    77.6% (step 2)  5.25" in text, text
    assert "calibrated on the validation part" in text
    assert "- 95%: too few calibration scores at steps 2" in text
    none = results_text({"intervals": {"calibrated": False, "notes": ["no intervals: no validation part"]}}, top)
    assert "- no intervals: no validation part" in none and "MSIS" not in none


def test_skill_table_shows_each_ensemble_member_and_names_them_under_the_table():
    errors = {
        "model": {"mae": 1.0, "rmse": 2.0, "total_mae": 3.0},
        "member nhits#0": {"mae": 1.2, "rmse": 2.4, "total_mae": 3.1},
        "member nhits#1": {"mae": 1.1, "rmse": 2.2, "total_mae": 3.2},
        "zero": {"mae": 1.3, "rmse": 2.5, "total_mae": 3.3},
    }
    picks = {name: {"top10": 0.1, "top1pct": 0.2} for name in errors if name != "zero"}
    members = [{"label": f"nhits#{i}", "seed": i, "steps": 300} for i in (0, 1)]
    metrics = {
        "errors": errors,
        "ranking": {
            "k": {"top10": 10, "top1pct": 60},
            "picks": {**picks, "oracle": picks["model"]},
            "universe_mean": 0,
        },
        "ensemble": {"members": members},
    }
    text = skill_table(metrics)
    assert "member nhits#0" in text and "member nhits#1" in text
    assert "the mean of 2 members: nhits#0 (seed 0, 300 steps), nhits#1 (seed 1, 300 steps)" in text


def test_results_with_quantiles_show_each_ones_share_below_and_the_bands_coverage():
    top = [{"rank": 1, "strategy": 9, "forecast_mean": 0.5, "forecast_sum": 1.0, "trailing_mean": 2.0}]
    holdout = {
        "below": {"q10": 0.125, "q90": 0.875},
        "pinball_by_column": {"q10": 0.5, "q90": 0.25},
        "pinball": 0.375,
        "band": ["q10", "q90"],
        "nominal": 0.8,
        "coverage": 0.75,
    }
    quantiles = {"levels": [0.1, 0.9], "columns": ["q10", "q90"], "holdout": holdout}
    text = results_text({"quantiles": quantiles}, top)
    assert "q10       10.0%  12.5%      0.5" in text, text
    assert "q10-q90 band: 75.0% covered (nominal 80.0%); mean pinball loss 0.375" in text
    assert "quantiles" not in results_text({"quantiles": {"levels": [0.1], "columns": ["q10"]}}, top)  # no holdout


def test_a_saved_version_kept_by_a_study_shows_its_trials_evidence_with_the_verdict():
    manifest = {
        "model": "nhits", "mode": "batch", "members": ["nhits"], "source_run": "run 9", "created": "2026-12-07",
        "training": {"steps": 10, "train_seconds": 1.0}, "intervals": None, "metrics": {},
        "data": {"strategies": 6000, "id_col": "No.", "time_col": "week", "target_col": "profit",
                 "frequency": "7 days", "input_size": 52, "horizon": 13},
        "study": {"study": "eurusd", "trial": 7, "objectives": ["holdout-rmse", "backtest-top-k"],
                  "values": [1.0059, 3.5], "keep": "all-data", "complete": 14},
    }  # fmt: skip
    text = saved_text({"ref": "eurusd:1", "path": "/x", "manifest": manifest})
    assert (
        "kept best   study eurusd trial 7 of 14 complete: holdout-rmse 1.0059 loses backtest-top-k 3.5; "
        "trained again on all the data"
    ) in text.splitlines()
    assert "kept best" not in saved_text({"ref": "a:1", "path": "/x", "manifest": {**manifest, "study": None}})
