"""The walk-forward backtest engine: the cutoff plan and its refusals, the trainings and batched predictions per
block, no look-ahead (batch, per-strategy, ragged), and a stopped backtest resumed to the same table."""

import math

import numpy as np
import pandas as pd
import pytest
import torch

from stratcast.daemon.engine.backtest import job as backtest_job
from stratcast.daemon.engine.backtest import walk
from stratcast.daemon.engine.backtest.cutoffs import plan_cutoffs, truncate
from stratcast.daemon.engine.backtest.job import run_backtest
from stratcast.daemon.engine.backtest.picks import COLUMNS, METHODS, ranks
from stratcast.daemon.engine.data.synthetic import make_strategy_panel
from stratcast.daemon.engine.run import build
from stratcast.daemon.engine.run.build import load_spec_panel
from stratcast.daemon.engine.spec.runspec import build_spec
from stratcast.daemon.engine.training.checkpoint import latest_checkpoint
from stratcast.shared.events import ProgressReported
from stratcast.shared.protocol import BacktestOptions

N, T = 20, 60
SETS = ["max_steps=10", "batch_size=32", "val_check_steps=5", "early_stop_patience=-1", "hidden_size=16"]
OPTIONS = BacktestOptions(cutoffs=4, every=3, refit_every=2, hold=3, top=["5"])
OPTIONS_CUTOFFS = (48, 51, 54, 57)


def week_index(frame):
    return (frame["week"] - frame["week"].min()).dt.days // 7


def ragged(frame):
    """No. 3 ends at week 52 (before the last cutoffs' holdings end), No. 5 at 56, No. 7 starts at week 20."""
    k, no = week_index(frame), frame["No."]
    drop = ((no == 3) & (k >= 52)) | ((no == 5) & (k >= 56)) | ((no == 7) & (k < 20))
    return frame[~drop].reset_index(drop=True)


def with_noise(frame, cutoff):
    """Every value at or after grid period ``cutoff`` replaced by noise (the series' periods unchanged)."""
    noisy = frame.copy()
    later = week_index(noisy) >= cutoff
    rng = np.random.default_rng(7)
    noisy.loc[later, "profit"] = np.round(rng.normal(0, 80, int(later.sum())), 1)
    return noisy


def spec_for(tmp_path, frame, name, *, model="mlp", mode="batch", sets=()):
    data = tmp_path / f"{name}.parquet"
    frame.to_parquet(data, index=False)
    model_sets = SETS if model == "mlp" else [s for s in SETS if not s.startswith("hidden")]
    return build_spec(
        data=str(data),
        model=model,
        out=str(tmp_path / name),
        mode=mode,
        device="cpu",
        horizon=4,
        input_size=8,
        sets=[*model_sets, *sets],
    )


def backtest(spec, options=OPTIONS, **kwargs):
    return run_backtest(spec, options, log=lambda line: None, **kwargs)


@pytest.fixture(scope="module")
def frame():
    return make_strategy_panel(N, T, seed=1)


def test_cutoffs_end_a_holding_before_the_panels_end_and_fall_in_refit_blocks(tmp_path, frame):
    spec = spec_for(tmp_path, frame, "plan")
    options = BacktestOptions(cutoffs=5, every=3, refit_every=2, hold=2, top=["5"])
    plan = plan_cutoffs(load_spec_panel(spec), spec, options)
    assert plan.cutoffs == (46, 49, 52, 55, 58)
    assert plan.blocks == [[0, 1], [2, 3], [4]]
    assert plan.dates[-1] == str(np.datetime64("2016-01-04") + np.timedelta64(7 * 58, "D"))


@pytest.mark.parametrize(
    "options,horizon,expected",
    [
        (BacktestOptions(cutoffs=2, hold=6), 4, ["--hold 6 is longer than the horizon 4", "raise --horizon to 6"]),
        (BacktestOptions(cutoffs=1, hold=60), 60, ["--hold 60 runs past the panel's end", "60 periods"]),
        (
            BacktestOptions(cutoffs=30, every=2, hold=2),
            4,
            ["put the first cutoff at period", "0 periods of history", "input_size 8 + 1", "lower --cutoffs"],
        ),
        (BacktestOptions(cutoffs=2, hold=2, top=["21"]), 4, ["--top 21", "only 20 strategies", "20 of 20"]),
    ],
)
def test_options_the_panel_cannot_backtest_are_refused_with_the_numbers(tmp_path, frame, options, horizon, expected):
    spec = spec_for(tmp_path, frame, "refused")
    spec = build_spec(data=spec.data, model="mlp", out=spec.out, device="cpu", horizon=horizon, input_size=8)
    with pytest.raises(ValueError) as exc:
        plan_cutoffs(load_spec_panel(spec), spec, options)
    for words in expected:
        assert words in str(exc.value)


def test_a_pick_size_counts_the_strategies_a_cutoff_can_rank_not_the_file(tmp_path, frame):
    spec = spec_for(tmp_path, ragged(frame), "ragged-plan")
    with pytest.raises(ValueError, match="18 of 20 strategies"):  # No. 3 and No. 5 ended before the last holding
        plan_cutoffs(load_spec_panel(spec), spec, BacktestOptions(cutoffs=4, every=3, hold=3, top=["20"]))


def test_truncated_panel_holds_nothing_from_the_cutoff_on(tmp_path, frame):
    panel = load_spec_panel(spec_for(tmp_path, ragged(frame), "trunc"))
    cut = truncate(panel, 30)
    assert cut.values.shape == (N, 30) and cut.times.shape == (30,)
    assert cut.end.max() == 30 and cut.values.base is None  # a copy, not a view of the later periods


def test_ranks_give_1_to_the_highest_and_keep_the_order_of_ties():
    assert ranks(np.array([0.5, 2.0, 0.5, -1.0])).tolist() == [2, 1, 3, 4]


def test_one_training_per_refit_block_and_one_prediction_pass_per_block(tmp_path, frame, monkeypatch):
    models, passes = [], []
    make_model, scaled = build.make_model, build.scaled_forecaster

    def counted_model(*args, **kwargs):
        models.append(1)
        return make_model(*args, **kwargs)

    def counted_forecaster(*args, **kwargs):
        fn = scaled(*args, **kwargs)

        def run(x, rows, origin=None):
            passes.append(int(x.shape[0]))
            return fn(x, rows, origin)

        return run

    monkeypatch.setattr(backtest_job, "make_model", counted_model)
    monkeypatch.setattr(walk, "scaled_forecaster", counted_forecaster)
    options = BacktestOptions(cutoffs=5, every=3, refit_every=2, hold=2, top=["5"])
    result = backtest(spec_for(tmp_path, frame, "count"), options)
    assert len(models) == math.ceil(5 / 2) == result.metrics["run"]["trainings"]
    assert len(passes) == 3 and passes[0] == 2 * N  # the block's two cutoffs in one pass
    assert [c["refit"] for c in result.metrics["backtest"]["cutoffs"]] == [True, False, True, False, True]


def test_the_table_has_every_method_and_strategy_per_cutoff(tmp_path, frame):
    result = backtest(spec_for(tmp_path, frame, "table"))
    table = pd.read_parquet(result.out_dir / "backtest.parquet")
    assert tuple(table.columns) == (*COLUMNS, "lo80", "hi80", "lo95", "hi95")
    assert len(table) == 4 * len(METHODS) * N
    one = table[(table["cutoff"] == 48) & (table["method"] == "best")].sort_values("rank")
    assert one["forecast"].is_monotonic_decreasing and one["forecast"].equals(one["realized"])
    week = frame[week_index(frame).between(48, 50)].groupby("No.")["profit"].mean()  # the holding [48, 51)
    assert np.allclose(one.set_index("strategy")["realized"].sort_index(), week.rename(str).sort_index())
    assert {"model", "model_raw", "zero", "trailing_mean"} == set(result.metrics["backtest"]["cutoffs"][0]["errors"])
    assert result.forecasts[0].model.shape == (N, 3) == result.forecasts[0].realized.shape


def forecast_rows(result, cutoffs):
    table = result.picks
    kept = table[table["cutoff"].isin(cutoffs) & (table["method"] != "best")]
    return kept[["cutoff", "method", "strategy", "rank", "forecast"]].reset_index(drop=True)


@pytest.mark.parametrize(
    "name,model,mode,shape",
    [
        ("batch", "mlp", "batch", None),
        ("per-strategy", "dlinear", "per-strategy", None),
        ("ragged", "mlp", "batch", ragged),
    ],
)
def test_forecasts_and_picks_at_a_cutoff_ignore_every_value_from_it_on(tmp_path, frame, name, model, mode, shape):
    data = frame if shape is None else shape(frame)
    clean = backtest(spec_for(tmp_path, data, f"{name}-clean", model=model, mode=mode))
    # 51 predicts with the model of 48; 54 is the second block's refit cutoff
    for cutoff in (51, 54):
        noisy = backtest(spec_for(tmp_path, with_noise(data, cutoff), f"{name}-{cutoff}", model=model, mode=mode))
        seen = [c for c in OPTIONS_CUTOFFS if c <= cutoff]
        pd.testing.assert_frame_equal(forecast_rows(clean, seen), forecast_rows(noisy, seen))
        pd.testing.assert_frame_equal(band_rows(clean, seen), band_rows(noisy, seen))  # the bands too
        assert not band_rows(clean, [57]).equals(band_rows(noisy, [57]))
        later = [c for c in OPTIONS_CUTOFFS if c > cutoff]
        assert not forecast_rows(clean, later).equals(forecast_rows(noisy, later))  # the noise reached them
        assert not realized(clean, cutoff).equals(realized(noisy, cutoff))
    if shape is not None:  # No. 3 ends at 52: ranked at 48, not at 51 (its holding would end at 54) nor later
        assert "3" in set(clean.picks[clean.picks["cutoff"] == 48]["strategy"])
        assert "3" not in set(clean.picks[clean.picks["cutoff"] == 51]["strategy"])


def band_rows(result, cutoffs):
    table = pd.read_parquet(result.out_dir / "backtest.parquet")
    kept = table[table["cutoff"].isin(cutoffs) & (table["method"] == "model")]
    return kept[["cutoff", "strategy", "lo80", "hi80", "lo95", "hi95"]].reset_index(drop=True)


def realized(result, cutoff):
    table = result.picks
    return table[(table["cutoff"] == cutoff) & (table["method"] == "best")]["realized"].reset_index(drop=True)


def test_a_stopped_backtest_resumed_gives_the_same_table(tmp_path, frame):
    whole = backtest(spec_for(tmp_path, frame, "whole"))
    spec = spec_for(tmp_path, frame, "stopped")
    calls = []

    def stop_in_second_block():
        calls.append(1)
        return len(calls) == 14  # the first block asks 10 times, then the second block's step 3

    stopped = backtest(spec, should_stop=stop_in_second_block)
    assert stopped.fit.interrupted and stopped.checkpoint is not None and stopped.picks.empty
    assert not (stopped.out_dir / "backtest.parquet").exists()
    folder = stopped.out_dir / "checkpoints"
    lines: list[str] = []
    resumed = run_backtest(spec, OPTIONS, log=lines.append, resume_from=latest_checkpoint(folder))
    assert any("resumed from" in line and "step 3/10" in line for line in lines)
    assert not any("cutoff 1/4" in line for line in lines)  # the first block was not redone
    pd.testing.assert_frame_equal(
        pd.read_parquet(resumed.out_dir / "backtest.parquet"), pd.read_parquet(whole.out_dir / "backtest.parquet")
    )


def test_progress_spans_every_block(tmp_path, frame):
    reports: list[ProgressReported] = []
    backtest(spec_for(tmp_path, frame, "progress"), on_progress=reports.append)
    assert {p.max_steps for p in reports} == {20}
    assert reports[-1].step == 20 and any(p.step == 10 for p in reports)
    assert torch.tensor([p.step for p in reports]).diff().min() > 0


def test_each_block_fits_a_combination_and_ranks_both_the_combined_and_the_raw_model(tmp_path, frame):
    result = backtest(spec_for(tmp_path, frame, "combined"))
    assert set(result.picks["method"]) == {"model", "model_raw", "trailing_mean", "last_value", "best"}
    records = result.metrics["backtest"]["cutoffs"]
    assert ["combination" in r for r in records] == [True, False, True, False]  # one fit per refit block
    methods = result.metrics["backtest"]["sizes"]["5"]["methods"]
    assert {"model", "model_raw"} <= set(methods)
    for k, fc in enumerate(result.forecasts):  # every cutoff applies its block's weights to its own trailing mean
        weights = records[k - k % 2]["combination"]["weights"]
        wm, wt = (torch.tensor(weights[name][:3], dtype=torch.float32) for name in ("model", "trailing_mean"))
        assert fc.raw is not None and fc.rank is not None
        assert torch.allclose(fc.model, wm * fc.raw + wt * fc.baselines["trailing_mean"], atol=1e-4)


def test_combine_none_backtests_the_raw_model_alone(tmp_path, frame):
    result = backtest(spec_for(tmp_path, frame, "raw", sets=["combine=none"]))
    assert "model_raw" not in set(result.picks["method"])
    assert not any("combination" in r for r in result.metrics["backtest"]["cutoffs"])
    assert result.forecasts[0].raw is None
