"""A backtest's prediction intervals: online calibration on the earlier cutoffs' realized residuals, the bands in
``backtest.parquet``, their coverage in ``backtest.json`` and the printed table (no look-ahead: test_backtest)."""

import json

import numpy as np
import pandas as pd
import pytest
import torch

from stratcast.daemon.engine.backtest.bands import OnlineWalk, backtest_bands, residuals
from stratcast.daemon.engine.backtest.job import run_backtest
from stratcast.daemon.engine.backtest.walk import CutoffForecasts
from stratcast.daemon.engine.data.panel import Panel
from stratcast.daemon.engine.data.synthetic import make_strategy_panel
from stratcast.daemon.engine.spec.runspec import build_spec
from stratcast.shared.backtest_report import backtest_text
from stratcast.shared.protocol import BacktestOptions
from stratcast.shared.runfiles import Outputs

SETS = ["max_steps=10", "batch_size=32", "val_check_steps=5", "early_stop_patience=-1", "hidden_size=16"]


def test_a_backtest_writes_bands_for_the_model_rows_and_their_coverage(tmp_path):
    data = tmp_path / "p.parquet"
    make_strategy_panel(20, 60, seed=1).to_parquet(data, index=False)
    spec = build_spec(
        data=str(data), model="mlp", out=str(tmp_path / "out"), device="cpu", horizon=4, input_size=8, sets=SETS
    )
    options = BacktestOptions(cutoffs=4, every=3, refit_every=2, hold=3, top=["5"])
    result = run_backtest(spec, options, log=lambda line: None)
    table = pd.read_parquet(Outputs(result.out_dir).backtest)
    model = table[table["method"] == "model"]
    assert model[model["cutoff"] == 48]["lo80"].isna().all()  # the first cutoff has no realized residuals before it
    later = model[model["cutoff"] > 48]
    assert later[["lo80", "hi80", "lo95", "hi95"]].notna().all().all()
    assert (later["lo95"] <= later["lo80"]).all() and (later["lo80"] <= later["forecast"]).all()
    assert (later["forecast"] <= later["hi80"]).all() and (later["hi80"] <= later["hi95"]).all()
    assert table[table["method"] != "model"]["lo80"].isna().all()
    intervals = json.loads(Outputs(result.out_dir).backtest_table.read_text())["intervals"]
    eighty = intervals["levels"]["80"]
    assert eighty["cells"] == 3 * 20 * 3 and len(eighty["per_step"]) == 3  # cutoffs 51, 54, 57; 3 steps
    inside = ((later["realized"] >= later["lo80"]) & (later["realized"] <= later["hi80"])).mean()
    assert eighty["hold_mean"] == pytest.approx(inside)
    assert [r["cells"] for r in eighty["ranges"]] == [60, 60, 60] and eighty["msis"] > 0
    assert "no bands at 1 cutoffs" in intervals["notes"][0]
    text = backtest_text(result.metrics["backtest"])
    assert "Prediction intervals over the cutoffs" in text and "80%: hold mean" in text


def residual_cutoffs(n_series, cutoffs, scale_at):
    """Forecast 0 of noise whose size at each cutoff is ``scale_at(c)``; the panel's history has the same size."""
    g = torch.Generator().manual_seed(0)
    t = 10 + max(cutoffs) + 1
    values = np.zeros((n_series, t), dtype=np.float32)
    for p in range(t):
        values[:, p] = torch.randn(n_series, generator=g).numpy() * scale_at(p)
    ids = np.array([str(i) for i in range(n_series)], dtype=object)
    panel = Panel(ids, np.arange(t), values, np.zeros(n_series, dtype=np.int64), np.full(n_series, t))
    forecasts = [
        CutoffForecasts(c, str(c), ids, torch.zeros(n_series, 1), {}, torch.from_numpy(values[:, c : c + 1]))
        for c in cutoffs
    ]
    return panel, forecasts


def spec_with(tmp_path, **train):
    data = tmp_path / "p.parquet"
    make_strategy_panel(3, 30, seed=1).to_parquet(data, index=False)
    sets = [f"{k}={v}" for k, v in train.items()]
    return build_spec(data=str(data), model="mlp", out="-", device="cpu", horizon=1, input_size=5, sets=sets)


def test_bands_follow_the_market_and_cover_near_nominal(tmp_path):
    # volatility doubles half way: the local scale carries the change into the bands at once
    panel, forecasts = residual_cutoffs(400, list(range(10, 50)), lambda p: 1.0 if p < 30 else 2.0)
    got = backtest_bands(forecasts, panel, 1, spec_with(tmp_path, interval_window=5))
    eighty = got.intervals["levels"]["80"]
    assert abs(eighty["coverage"] - 0.8) < 0.03, eighty["coverage"]
    assert all(abs(r["coverage"] - 0.8) < 0.05 for r in eighty["ranges"]), eighty["ranges"]
    width = (got.frame["hi80"] - got.frame["lo80"]).groupby(got.frame["cutoff"]).mean()
    assert width[45] > 1.6 * width[25]


def test_aci_widens_the_next_bands_after_a_cutoff_that_missed(tmp_path):
    walk = OnlineWalk((80.0,), 0.1, 1)
    panel, forecasts = residual_cutoffs(50, [10], lambda p: 1.0)
    got = backtest_bands(forecasts, panel, 1, spec_with(tmp_path))
    assert got.intervals["calibrated"] is False  # one cutoff: nothing realized before it
    two_panel, two = residual_cutoffs(50, [10, 11], lambda p: 1.0)
    assert backtest_bands(two, two_panel, 1, spec_with(tmp_path)).intervals["calibrated"] is True
    r = residuals(forecasts[0], panel, 1, 5)
    r.bands = {"lo80": torch.full_like(r.forecast, 10.0), "hi80": torch.full_like(r.forecast, 11.0)}  # all missed
    walk.learn(r)
    assert walk.alphas[0] == pytest.approx(0.2 + 0.1 * (0.2 - 1.0))
