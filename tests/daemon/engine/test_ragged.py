"""Ragged panels through whole jobs: series that start late, end early or both, each on its own periods."""

import numpy as np
import pandas as pd
import pytest

from stratcast.daemon.engine.data.synthetic import make_strategy_panel
from stratcast.daemon.engine.run.job import run_job
from stratcast.daemon.engine.spec.runspec import build_spec

H, HOLDOUT = 4, 4
SETS = ["max_steps=10", "batch_size=16", "val_check_steps=5", "season=4"]


def ragged_frame():
    """6 strategies x 50 weeks: No. 2 starts 8 weeks late, No. 3 ends 6 weeks early, No. 4 does both (5 and 9)."""
    frame = make_strategy_panel(6, 50, seed=4)
    k = (frame["week"] - frame["week"].min()).dt.days // 7  # week index 0..49
    no = frame["No."]
    drop = ((no == 2) & (k < 8)) | ((no == 3) & (k >= 44)) | ((no == 4) & ((k < 5) | (k >= 41)))
    frame["profit"] += 100 * no + k  # never 0: a period read past a series' end (0) would show
    return frame[~drop].reset_index(drop=True)


def run(tmp_path, frame: pd.DataFrame, mode: str = "batch", model: str = "mlp"):
    data = tmp_path / "ragged.parquet"
    frame.to_parquet(data, index=False)
    out = tmp_path / f"out-{mode}"
    spec = build_spec(
        data=str(data),
        model=model,
        out=str(out),
        mode=mode,
        device="cpu",
        horizon=H,
        input_size=8,
        holdout=HOLDOUT,
        sets=SETS,
    )
    result = run_job(spec, log=lambda m: None)
    return result, pd.read_parquet(out / "forecast.parquet"), pd.read_parquet(out / "summary.parquet")


@pytest.mark.parametrize("mode,model", [("batch", "mlp"), ("per-strategy", "dlinear")])
def test_each_series_forecasts_from_its_own_last_period(tmp_path, mode, model):
    frame = ragged_frame()
    _, forecast, summary = run(tmp_path, frame, mode, model)
    last = frame.groupby("No.")["week"].max()
    for no, rows in forecast.groupby("strategy"):
        expected = [last[no] + pd.Timedelta(weeks=h) for h in range(1, H + 1)]
        assert rows.sort_values("step")["time"].tolist() == expected, no
    assert summary.set_index("strategy")["last_period"].to_dict() == last.to_dict()


def test_each_series_is_scored_on_its_own_last_holdout_periods(tmp_path):
    frame = ragged_frame()
    result, _, summary = run(tmp_path, frame)
    assert result.metrics["holdout"]["strategies"] == 6  # the early-ended series are scored too
    own = frame.sort_values("week").groupby("No.")["profit"].apply(lambda p: p.iloc[-HOLDOUT:].mean())
    realized = summary.set_index("strategy")["holdout_realized_mean"]
    np.testing.assert_allclose(realized.sort_index().to_numpy(), own.sort_index().to_numpy(), rtol=1e-5)


def test_strategies_that_stopped_before_the_panels_end_are_flagged(tmp_path):
    _, _, summary = run(tmp_path, ragged_frame())
    flagged = summary.set_index("strategy")["ended_early"]
    assert sorted(flagged[flagged].index) == [3, 4]
    assert summary.set_index("strategy").loc[[3, 4], "observed_periods"].tolist() == [44, 36]


def test_integer_positions_per_series_are_forecast_from_each_series_own_end(tmp_path):
    # the M4 layout: each series' own t counts from 0, the series are of different lengths
    lengths = {"a": 40, "b": 31, "c": 36}
    rng = np.random.default_rng(0)
    frame = pd.concat(
        pd.DataFrame({"unique_id": uid, "t": np.arange(n), "y": 100 + rng.normal(size=n).cumsum()})
        for uid, n in lengths.items()
    )
    _, forecast, summary = run(tmp_path, frame)
    times = forecast.sort_values(["strategy", "step"]).groupby("strategy")["time"].apply(list).to_dict()
    assert times == {uid: list(range(n, n + H)) for uid, n in lengths.items()}
    assert not summary["ended_early"].any()  # the series end together: at their own last observation
    assert summary.set_index("strategy")["last_period"].to_dict() == {uid: n - 1 for uid, n in lengths.items()}
