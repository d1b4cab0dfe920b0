from __future__ import annotations

import time

import numpy as np
import pandas as pd
import pytest

from stratcast.daemon.engine.data.synthetic import make_strategy_panel

SEEDS = [0, 1, 2]


def grid(seed: int = 0, n: int = 500, weeks: int = 208) -> np.ndarray:
    """[N, T] profits of a demo panel."""
    return make_strategy_panel(n, weeks, seed=seed)["profit"].to_numpy().reshape(n, weeks)


def test_the_same_seed_gives_the_same_frame_and_another_seed_another():
    pd.testing.assert_frame_equal(make_strategy_panel(50, 30, seed=7), make_strategy_panel(50, 30, seed=7))
    assert not make_strategy_panel(50, 30, seed=7).equals(make_strategy_panel(50, 30, seed=8))


def test_the_frame_is_a_long_report_sorted_by_strategy_then_week():
    frame = make_strategy_panel(4, 6)
    assert list(frame.columns) == ["No.", "week", "profit"]
    assert frame["No."].tolist() == [1] * 6 + [2] * 6 + [3] * 6 + [4] * 6
    assert frame["profit"].dtype == np.float64
    weeks = pd.DatetimeIndex(frame["week"][:6])
    assert weeks[0] == pd.Timestamp("2016-01-04") and (weeks.day_of_week == 0).all()
    assert ((weeks[1:] - weeks[:-1]) == pd.Timedelta(weeks=1)).all()


def test_a_start_that_is_not_a_monday_moves_to_the_next_monday():
    assert make_strategy_panel(1, 2, start="2020-01-01")["week"].iloc[0] == pd.Timestamp("2020-01-06")


@pytest.mark.parametrize("seed", SEEDS)
def test_between_a_quarter_and_two_fifths_of_the_weeks_are_exactly_zero(seed):
    assert 0.25 <= (grid(seed) == 0.0).mean() <= 0.40


def test_activity_ranges_from_rare_traders_to_always_in_the_market():
    active = (grid() != 0.0).mean(axis=1)
    assert active.min() < 0.15
    assert (active == 1.0).mean() > 0.03


def test_open_weeks_cluster_in_runs():
    active = grid() != 0.0
    stay = (active[:, 1:] & active[:, :-1]).sum() / active[:, :-1].sum()
    assert stay > active.mean() + 0.1


def test_profits_are_whole_tenths_of_a_pip():
    profit = grid()
    np.testing.assert_allclose(profit * 10.0, np.round(profit * 10.0), atol=1e-6)


def test_scales_span_more_than_two_orders_of_magnitude():
    profit = grid()
    typical = np.nanmedian(np.where(profit != 0.0, np.abs(profit), np.nan), axis=1)
    assert np.nanquantile(typical, 0.95) / np.nanquantile(typical, 0.05) > 100.0


def test_profits_have_heavier_tails_than_a_normal():
    def kurtosis(row: np.ndarray) -> float:
        x = row[row != 0.0]
        return float(((x - x.mean()) ** 4).mean() / x.var() ** 2) if len(x) > 30 else np.nan

    assert np.nanmedian([kurtosis(row) for row in grid()]) > 3.5


@pytest.mark.parametrize("seed", SEEDS)
def test_some_strategies_have_a_lasting_edge_that_a_model_can_rank(seed):
    profit = grid(seed)
    scale = profit.std(axis=1)
    first, second = (half.mean(axis=1) / scale for half in np.split(profit, 2, axis=1))
    assert np.corrcoef(first, second)[0, 1] > 0.1
    best = np.argsort(first)[-50:]
    assert second[best].mean() > np.median(second) + 0.03
    assert np.median(profit.mean(axis=1) / scale) < 0.01  # most have no edge after costs


def test_strategies_share_common_factors():
    profit = grid()
    z = (profit - profit.mean(axis=1, keepdims=True)) / profit.std(axis=1, keepdims=True)
    top_share = np.linalg.eigvalsh(np.corrcoef(z))[-1] / len(z)
    assert top_share > 0.03  # about 0.012 for independent strategies of this length


def test_the_default_panel_takes_milliseconds():
    began = time.perf_counter()
    make_strategy_panel()
    assert time.perf_counter() - began < 0.5


def test_an_empty_panel_is_refused():
    with pytest.raises(ValueError, match="at least one strategy"):
        make_strategy_panel(0, 10)
