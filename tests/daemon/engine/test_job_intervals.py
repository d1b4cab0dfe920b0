"""A job's intervals: calibrated on its validation part, in its outputs, scored on its holdout, ranked by."""

import json

import numpy as np
import pandas as pd
import pytest

from stratcast.daemon.engine.data.synthetic import make_strategy_panel
from stratcast.daemon.engine.run.job import run_job
from stratcast.daemon.engine.spec.runspec import build_spec
from stratcast.shared.runfiles import Outputs

SETS = ["max_steps=5", "batch_size=32", "hidden_size=8", "num_layers=1"]


def small_job(tmp_path, *sets, holdout=4, **options):
    path = tmp_path / "p.parquet"
    make_strategy_panel(12, 60, seed=3).to_parquet(path, index=False)
    return build_spec(
        data=str(path), model="mlp", out=str(tmp_path / "out"), device="cpu", horizon=4, input_size=8,
        holdout=holdout, sets=[*SETS, *sets], **options,
    )  # fmt: skip


def test_a_job_with_a_holdout_writes_bounds_and_their_coverage(tmp_path):
    lines: list[str] = []
    result = run_job(small_job(tmp_path, "val_size=12"), log=lines.append)
    files = Outputs(tmp_path / "out")
    forecast = pd.read_parquet(files.forecast)
    assert {"lo80", "hi80", "lo95", "hi95"} <= set(forecast.columns)
    assert (forecast["lo95"] <= forecast["lo80"]).all() and (forecast["lo80"] <= forecast["forecast"]).all()
    assert (forecast["forecast"] <= forecast["hi80"]).all() and (forecast["hi80"] <= forecast["hi95"]).all()
    summary = pd.read_parquet(files.summary)
    one = forecast[forecast["strategy"] == summary["strategy"][0]]
    assert summary["lo80"][0] == pytest.approx(one["lo80"].mean())
    intervals = json.loads(files.metrics.read_text())["intervals"]
    assert intervals == result.metrics["intervals"]
    eighty = intervals["levels"]["80"]
    assert eighty["nominal"] == 0.8 and len(eighty["per_step"]) == 4 and eighty["cells"] == 12 * 4
    assert 0 <= eighty["coverage"] <= 1 and eighty["msis"] > 0
    assert eighty["scores_per_step"] == [12 * 12, 12 * 11, 12 * 10, 12 * 9]  # 12 origins, masked at the holdout
    assert eighty["source"] == "validation part: 12 origins x 12 strategies"
    assert any(line.startswith("intervals: 80% covered") for line in lines)
    # the future's bands calibrate on the holdout's residuals too, after the validation part's
    future = intervals["future_calibration"]
    assert future["source"] == "validation part and holdout: 16 origins x 12 strategies"
    # step h: 13 - h validation origins and 5 - h holdout ones (each part masked at its end)
    assert future["scores_per_step"] == [12 * 16, 12 * 14, 12 * 12, 12 * 10]


def test_a_job_without_a_holdout_calibrates_its_future_on_the_validation_part(tmp_path):
    result = run_job(small_job(tmp_path, "val_size=12", holdout=0), log=lambda line: None)
    intervals = result.metrics["intervals"]
    assert "levels" not in intervals
    assert intervals["future_calibration"] == intervals["calibration"]


def test_ranking_by_the_lower_bound_ranks_by_its_mean_over_the_horizon(tmp_path):
    run_job(small_job(tmp_path, rank_by="lo80"), log=lambda line: None)
    summary = pd.read_parquet(Outputs(tmp_path / "out").summary)
    assert summary["rank"].tolist() == list(range(1, 13))
    assert np.all(np.diff(summary["lo80"].to_numpy()) <= 0)
    assert not np.all(np.diff(summary["forecast_mean"].to_numpy()) <= 0)  # the lower bound ranked, not the mean


def test_a_job_without_validation_says_it_has_no_intervals_and_ranks_by_the_mean(tmp_path):
    lines: list[str] = []
    result = run_job(small_job(tmp_path, "val_size=0", rank_by="lo80"), log=lines.append)
    assert result.metrics["intervals"]["calibrated"] is False
    assert "no validation part" in result.metrics["intervals"]["notes"][0]
    assert any("no intervals" in line for line in lines)
    assert "ranked by the forecast mean: --rank-by lo80 needs intervals" in lines
    assert "lo80" not in pd.read_parquet(Outputs(tmp_path / "out").forecast).columns


def test_a_job_without_levels_calibrates_no_intervals_and_still_scores_its_holdout(tmp_path):
    lines: list[str] = []
    result = run_job(small_job(tmp_path, "val_size=12", levels=()), log=lines.append)
    assert result.metrics["intervals"] == {
        "calibrated": False,
        "notes": ["no intervals: no levels asked for (--levels)"],
    }
    assert not any(line.startswith("intervals: ") and "calibrated on" in line for line in lines)
    assert "rmse" in result.metrics["errors"]["model"]
    assert not {"lo80", "hi80"} & set(pd.read_parquet(Outputs(tmp_path / "out").forecast).columns)


def test_rank_by_a_bound_of_a_level_not_asked_for_is_refused_naming_the_levels(tmp_path):
    with pytest.raises(ValueError, match=r"--rank-by lo90: .*\(80,95\).*mean, lo80, hi80, lo95, hi95"):
        small_job(tmp_path, rank_by="lo90")
    with pytest.raises(ValueError, match="interval level 100 is not between 0 and 100"):
        small_job(tmp_path, levels=(80, 100))
    assert small_job(tmp_path, levels=(90,), rank_by="lo90").rank_by == "lo90"
