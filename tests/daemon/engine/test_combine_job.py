import json

import numpy as np
import pandas as pd

from stratcast.daemon.engine.data.synthetic import make_strategy_panel
from stratcast.daemon.engine.evaluation.skill import NO_SIGNAL, RAW_KEPT, verdict
from stratcast.daemon.engine.run.job import run_job
from stratcast.daemon.engine.spec.runspec import build_spec
from stratcast.shared.runfiles import Outputs

OVERFIT = ["max_steps=400", "batch_size=32", "hidden_size=256", "num_layers=2", "learning_rate=1e-2"]
"""A wide MLP trained hard: on noise it learns patterns that are not there."""


def noise_panel(n: int, t: int, seed: int) -> pd.DataFrame:
    """Strategies of pure noise: half the weeks without a trade, heavy tails, a scale per strategy."""
    rng = np.random.default_rng(seed)
    scale = rng.lognormal(0, 0.5, size=(n, 1))
    values = rng.standard_t(4, size=(n, t)) * scale * (rng.random((n, t)) < 0.5)
    weeks = pd.date_range("2016-01-04", periods=t, freq="W-MON")
    return pd.DataFrame({"No.": np.repeat(np.arange(n), t), "week": np.tile(weeks, n), "profit": values.ravel()})


def small_job(tmp_path, frame: pd.DataFrame, sets: list[str]):
    path = tmp_path / "panel.parquet"
    frame.to_parquet(path, index=False)
    spec = build_spec(
        data=str(path), model="mlp", out=str(tmp_path / "out"), device="cpu", horizon=8, input_size=16, holdout=8,
        sets=sets,
    )  # fmt: skip
    lines: list[str] = []
    return run_job(spec, log=lines.append), lines


def test_on_a_panel_without_signal_the_default_forecast_is_within_1pct_of_the_better_baseline(tmp_path):
    result, lines = small_job(
        tmp_path, noise_panel(60, 80, seed=0), [*OVERFIT, "early_stop_patience=-1", "val_size=24"]
    )
    errors = result.metrics["errors"]
    better = min(errors["zero"]["rmse"], errors["trailing_mean"]["rmse"])
    assert errors["model"]["rmse"] <= 1.01 * better, errors
    combo = result.metrics["combination"]
    assert combo["fitted"] and combo["mean"]["zero"] > 0.9, combo["mean"]
    assert any(line.startswith("combination weights: mean model") for line in lines)
    assert "model_raw" in errors  # both forecasts are scored on the holdout


def test_the_summary_ranks_by_the_ranking_score_and_metrics_keep_the_weights(tmp_path):
    result, _ = small_job(tmp_path, make_strategy_panel(30, 70, seed=1), ["max_steps=20", "hidden_size=16"])
    summary = pd.read_parquet(Outputs(result.out_dir).summary)
    assert summary["rank"].tolist() == list(range(1, 31))
    assert (np.diff(summary["rank_score"].to_numpy()) <= 0).all()
    written = json.loads(Outputs(result.out_dir).metrics.read_text())
    weights = written["combination"]["weights"]
    assert len(weights["model"]) == 8
    total = np.add(np.add(weights["model"], weights["trailing_mean"]), weights["zero"])
    assert np.allclose(total, 1, atol=1e-5) and min(min(w) for w in weights.values()) >= 0


def test_combine_none_forecasts_with_the_raw_model(tmp_path):
    result, lines = small_job(tmp_path, make_strategy_panel(20, 60, seed=2), ["max_steps=10", "combine=none"])
    assert "model_raw" not in result.metrics["errors"]
    assert result.metrics["combination"] == {"fitted": False}
    assert "combination: off (combine=none): the raw model forecasts" in lines


def test_without_validation_the_run_keeps_the_raw_model_and_says_why(tmp_path):
    result, lines = small_job(tmp_path, make_strategy_panel(20, 60, seed=3), ["max_steps=10", "val_size=0"])
    assert result.metrics["combination"] == {"fitted": False}
    assert "combination: no validation windows to fit it on (val_size=0): the raw model forecasts" in lines


def test_the_verdict_says_plainly_when_the_combination_forecasts_zero():
    combination = {"fitted": True, "no_signal": True, "mean": {"model": 0.0, "trailing_mean": 0.0, "zero": 1.0}}
    metrics = {
        "errors": {name: {"rmse": 1.0} for name in ("model", "model_raw", "zero", "trailing_mean")},
        "ranking": {"picks": {"model": {"top1pct": 0.1}, "trailing_mean": {"top1pct": 0.2}}, "universe_mean": 0.0},
        "combination": combination,
    }
    assert NO_SIGNAL in verdict(metrics)
    combination["no_signal"] = False
    assert NO_SIGNAL not in verdict(metrics)
    assert RAW_KEPT not in verdict(metrics)
    combination["check"] = {"combined": 2.0, "raw": 1.0, "kept": False}
    assert RAW_KEPT in verdict(metrics)
