from stratcast.tui.widgets.run_results import skill_text, summary_text, top_text


def test_the_summary_gives_the_training_time_of_all_segments_of_a_resumed_run():
    metrics = {"run": {"steps": 600, "train_seconds": 41.0, "train_segment_seconds": [38.0, 3.0]}}
    assert summary_text(metrics).plain == "600 steps · trained 41s over 2 segments"


def test_the_summary_of_a_run_trained_in_one_go_or_written_before_segments_names_none():
    assert summary_text({"run": {"train_seconds": 41.0, "train_segment_seconds": [41.0]}}).plain == "trained 41s"
    assert summary_text({"run": {"train_seconds": 41.0}}).plain == "trained 41s"


def band_row(**bands):
    return {"rank": 1, "strategy": "S1", "forecast_mean": 1.5, "forecast": [1.0, 2.0], **bands}


CONFORMAL = {"level": 80.0, "lo": [0.0, 0.0], "hi": [3.0, 7.0]}
QUANTILES = {"columns": ["q10", "q90"], "lo": [0.5, 1.0], "hi": [2.5, 4.0]}


def test_a_models_quantile_band_is_drawn_around_the_forecast_before_the_conformal_one():
    lines = top_text([band_row(band=CONFORMAL, quantile_band=QUANTILES)], width=9).plain.splitlines()
    assert lines[0].endswith("q10│forecast│q90")
    assert lines[2].endswith("▁▂│▂▄│▅█")  # 0.5..4 on one scale: the quantile band's range, not the interval's 0..7


def test_without_quantiles_the_band_is_the_conformal_interval():
    lines = top_text([band_row(band=CONFORMAL)], width=9).plain.splitlines()
    assert lines[0].endswith("lo80│forecast│hi80") and lines[2].endswith("▁▁│▂▃│▄█")


def test_a_row_without_any_band_shows_its_forecast_alone():
    lines = top_text([band_row()], width=8).plain.splitlines()
    assert lines[0].endswith("forecast") and "│" not in lines[2]


def test_the_skill_box_gives_the_quantile_bands_coverage_on_the_holdout():
    holdout = {"below": {"q5": 0.0625, "q95": 0.9}, "band": ["q5", "q95"], "nominal": 0.9, "coverage": 0.8375}
    metrics = {"quantiles": {"levels": [0.05, 0.95], "columns": ["q5", "q95"], "holdout": {**holdout, "pinball": 1.0}}}
    assert "q5-q95 band: 83.8% covered (nominal 90.0%)" in skill_text(metrics).plain
