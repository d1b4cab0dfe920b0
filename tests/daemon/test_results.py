"""Reading and exporting a run's results without a daemon: NaN as None, only the top rows, clear write errors."""

import json
import math

import pandas as pd
import pytest

from stratcast.daemon.results import ExportRefused, ResultsMissing, export, read_results


@pytest.fixture
def out(tmp_path):
    """Results of 3 strategies over 2 steps, strategy "b" too short to score (NaN)."""
    summary = pd.DataFrame(
        {"strategy": ["a", "b", "c"], "rank": [2, 1, 3], "forecast_mean": [1.0, 2.0, 0.5], "score": [0.1, math.nan, 0]}
    )
    summary.to_parquet(tmp_path / "summary.parquet", index=False)
    forecast = pd.DataFrame(
        {
            "strategy": ["a", "a", "b", "b", "c", "c"],
            "step": [2, 1, 1, 2, 1, 2],
            "forecast": [1.5, 0.5, 2, math.inf, 0, 1],
        }
    )
    forecast.to_parquet(tmp_path / "forecast.parquet", index=False)
    (tmp_path / "metrics.json").write_text(json.dumps({"run": {"steps": 7}}))
    return tmp_path


def test_the_top_strategies_come_best_first_with_forecasts_in_step_order_and_nan_as_none(out):
    result = read_results(out, 2)
    assert result == {
        "metrics": {"run": {"steps": 7}},
        "top": [
            {"strategy": "b", "rank": 1, "forecast_mean": 2.0, "score": None, "forecast": [2.0, None]},
            {"strategy": "a", "rank": 2, "forecast_mean": 1.0, "score": 0.1, "forecast": [0.5, 1.5]},
        ],
        "horizon": 2,
    }


def test_a_strategys_last_period_comes_as_iso_text_that_encodes_as_json(out):
    summary = pd.read_parquet(out / "summary.parquet")
    summary["last_period"] = pd.to_datetime(["2019-12-30 00:00", "2019-12-23 00:00", "2019-12-30 12:00"])
    summary.to_parquet(out / "summary.parquet", index=False)
    top = read_results(out, 3)["top"]
    assert [row["last_period"] for row in top] == ["2019-12-23", "2019-12-30", "2019-12-30T12:00:00"]
    json.dumps(top)


def test_a_missing_result_file_is_named(out):
    (out / "forecast.parquet").unlink()
    with pytest.raises(ResultsMissing, match=r"forecast\.parquet does not exist"):
        read_results(out, 2)


def test_an_existing_file_gets_a_free_name_suggested(out, tmp_path):
    for name in ("top.csv", "top-2.csv"):
        (tmp_path / name).write_text("")
    with pytest.raises(ExportRefused, match=r"top\.csv already exists: choose another name, such as .*top-3\.csv"):
        export(out / "summary.parquet", str(tmp_path / "top.csv"), None)


def test_a_failed_write_names_the_path_and_the_os_error_and_leaves_nothing_behind(out, tmp_path):
    dest = tmp_path / "exports"
    dest.mkdir()
    long_name = "x" * 240 + ".csv"  # fits, but its temporary sibling's name is over the 255-byte limit
    with pytest.raises(ExportRefused, match=rf"cannot write {dest / long_name}: .*too long"):
        export(out / "summary.parquet", str(dest / long_name), None)
    assert list(dest.iterdir()) == []


def test_a_backtest_run_answers_with_its_table(tmp_path):
    (tmp_path / "backtest.json").write_text(json.dumps({"version": 1, "verdicts": ["v"]}))
    assert read_results(tmp_path, 5) == {"backtest": {"version": 1, "verdicts": ["v"]}}
    (tmp_path / "backtest.json").write_text("{not json")
    with pytest.raises(ResultsMissing, match=r"backtest\.json"):
        read_results(tmp_path, 5)


def test_a_run_with_intervals_gives_each_top_strategy_its_80_band_in_step_order(out):
    forecast = pd.read_parquet(out / "forecast.parquet")
    forecast["lo80"] = forecast["forecast"] - forecast["step"]
    forecast["hi80"] = forecast["forecast"] + 10 * forecast["step"]
    forecast.to_parquet(out / "forecast.parquet", index=False)
    [best] = read_results(out, 1)["top"]
    assert best["band"] == {"level": 80.0, "lo": [1.0, None], "hi": [12.0, None]}  # b: inf read as None


def test_a_run_with_quantiles_gives_each_top_strategy_its_lowest_to_highest_quantile_band(out):
    forecast = pd.read_parquet(out / "forecast.parquet")
    for name, offset in (("q50", 0.0), ("q90", 5.0), ("q10", -5.0), ("lo80", -9.0), ("hi80", 9.0)):
        forecast[name] = forecast["forecast"] + offset
    forecast.to_parquet(out / "forecast.parquet", index=False)
    [best] = read_results(out, 1)["top"]
    assert best["quantile_band"] == {"columns": ["q10", "q90"], "lo": [-3.0, None], "hi": [7.0, None]}
    assert best["band"]["lo"] == [-7.0, None]  # the conformal band comes too


def test_a_run_without_quantiles_has_no_quantile_band(out):
    [best] = read_results(out, 1)["top"]
    assert "quantile_band" not in best
