"""The backtest's statistics: hand-checked figures on tiny frames, the bootstrap's coverage, the verdicts."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from stratcast.daemon.engine.backtest import stats
from stratcast.shared.backtest_report import backtest_text
from stratcast.shared.protocol import BacktestOptions
from tests.daemon.engine.backtest_frames import cutoff_records, picks_frame, synthetic_backtest

REALIZED = np.array([[4.0, 2.0, 0.0, -2.0], [1.0, 3.0, -1.0, 5.0]])
"""Two cutoffs of four strategies; the model picks s0, s1 then s2, s3; the trailing mean the others."""
FORECASTS = {
    "model": np.array([[9.0, 8.0, 0.0, 0.0], [0.0, 0.0, 9.0, 8.0]]),
    "trailing_mean": np.array([[0.0, 0.0, 9.0, 8.0], [9.0, 8.0, 0.0, 0.0]]),
}


def tiny(**options):
    picks = picks_frame(REALIZED, FORECASTS)
    return stats.backtest_table(picks, cutoff_records(picks), BacktestOptions(top=["2"], every=4, draws=50, **options))


def test_the_model_row_is_the_hand_computed_mean_spread_hit_rate_and_cumulative_profit():
    model = tiny()["sizes"]["2"]["methods"]["model"]
    # picks earn 3 then (-1 + 5) / 2 = 2 per period; the average strategy 1 then 2; a holding is 4 periods
    assert model["mean"] == pytest.approx(2.5)
    assert model["std"] == pytest.approx(np.std([3.0, 2.0], ddof=1))
    assert model["hit_rate"] == pytest.approx(0.5)  # 3 > 1 beats, 2 = 2 does not
    assert model["curve"] == pytest.approx([12.0, 20.0])
    assert model["cumulative"] == pytest.approx(20.0)


def test_a_cost_per_pick_is_spread_over_the_holding_and_paid_by_every_method_alike():
    table = tiny(cost=2.0, hold=8)["sizes"]["2"]["methods"]
    assert table["model"]["mean"] == pytest.approx(2.5 - 2.0 / 8)
    assert table["all"]["mean"] == pytest.approx(1.5 - 2.0 / 8)
    assert table["best"]["mean"] == pytest.approx((4 + 2 + 5 + 3) / 4 - 2.0 / 8)
    assert table["model"]["hit_rate"] == pytest.approx(0.5)  # the cost cancels against the average strategy's
    assert table["model"]["curve"] == pytest.approx([(3 - 0.25) * 8, (3 - 0.25 + 2 - 0.25) * 8])


def test_the_paired_difference_is_the_mean_of_the_per_cutoff_differences():
    diff = tiny()["sizes"]["2"]["difference"]
    assert diff["mean"] == pytest.approx(((3 - -1) + (2 - 2)) / 2)
    assert diff["block"] == 1  # two cutoffs: blocks of one, so a resample can differ from the sample
    assert diff["lo"] < 0 < 2 < diff["hi"]  # two cutoffs: one degree of freedom, a wide interval
    assert diff["verdict"] == "not distinguishable"


def test_random_picks_average_the_universe_and_their_band_holds_it():
    picks, cutoffs, options = synthetic_backtest(cutoffs=6, strategies=30, draws=4000)
    size = stats.backtest_table(picks, cutoffs, options)["sizes"]["5"]["methods"]
    assert size["random"]["mean"] == pytest.approx(size["all"]["mean"], abs=0.05)
    lo, hi = size["random"]["band"]
    assert lo < size["all"]["mean"] < hi
    lo_curve, hi_curve = size["random"]["curve_band"]
    assert all(a <= b for a, b in zip(lo_curve, hi_curve, strict=True))
    assert 0.3 < size["random"]["hit_rate"] < 0.7


def test_the_same_backtest_gives_the_same_table():
    picks, cutoffs, options = synthetic_backtest(cutoffs=5)
    assert stats.backtest_table(picks, cutoffs, options) == stats.backtest_table(picks, cutoffs, options)


def test_pick_sizes_follow_each_cutoffs_own_strategies():
    picks, cutoffs, options = synthetic_backtest(cutoffs=3, strategies=40)
    picks = picks[~((picks["cutoff"] == picks["cutoff"].max()) & (picks["strategy"] >= "s030"))]
    table = stats.backtest_table(picks, cutoffs, options)
    assert table["sizes"]["10%"]["k"] == "3-4"
    assert table["sizes"]["5"]["k"] == "5"


@pytest.mark.parametrize(
    ("skill", "word"), [(3.0, "better"), (-3.0, "worse")], ids=["informed model", "inverted model"]
)
def test_the_verdict_follows_the_models_skill(skill, word):
    picks, cutoffs, options = synthetic_backtest(cutoffs=24, skill=skill)
    table = stats.backtest_table(picks, cutoffs, options)
    assert table["sizes"]["5"]["difference"]["verdict"] == word
    phrase = {"better": "better than", "worse": "worse than"}[word]
    assert f"the model's picks are {phrase} the trailing mean's at 95%" in table["verdicts"][0]


def test_a_model_that_ranks_as_the_trailing_mean_is_not_distinguishable_from_it():
    picks, cutoffs, options = synthetic_backtest(cutoffs=24)
    trailing = picks[picks["method"] == "trailing_mean"]
    picks = pd.concat([picks[picks["method"] != "model"], trailing.assign(method="model")], ignore_index=True)
    table = stats.backtest_table(picks, cutoffs, options)
    assert table["sizes"]["5"]["difference"]["mean"] == 0.0
    assert "not distinguishable from the trailing mean's" in table["verdicts"][0]


@pytest.mark.parametrize(("df", "table"), [(1, 12.706), (2, 4.303), (3, 3.182), (5, 2.571), (10, 2.228), (30, 2.042)])
def test_the_t_quantile_matches_the_table(df, table):
    assert stats.t_quantile(0.975, df) == pytest.approx(table, abs=0.005)


@pytest.mark.parametrize("n", [12, 48])
def test_the_block_bootstrap_interval_covers_a_known_mean_difference_at_few_cutoffs_too(n):
    rng = np.random.default_rng(n)
    mu, phi, trials, covered = 0.7, 0.4, 200, 0
    for _ in range(trials):
        noise = rng.normal(0, 1, n)
        for t in range(1, n):
            noise[t] += phi * noise[t - 1]
        diff = stats.difference(mu + noise, np.zeros(n), hold=8, every=4)
        covered += diff["lo"] <= mu <= diff["hi"]
    assert 0.85 <= covered / trials <= 0.995


def test_the_block_spans_the_overlapping_holdings():
    assert stats.block_length(n=100, hold=20, every=2) == 10
    assert stats.block_length(n=27, hold=4, every=4) == 3
    assert stats.block_length(n=4, hold=40, every=4) == 2
    assert stats.block_length(n=1000, hold=4, every=4) == 10  # a cube root without float rounding


def test_errors_average_over_cutoffs_with_the_models_ratio_to_each_baseline():
    errors = tiny()["errors"]["rmse"]
    assert errors["mean"] == {"model": 1.0, "zero": 1.25, "trailing_mean": 0.8}
    assert errors["model_ratio"] == pytest.approx({"zero": 0.8, "trailing_mean": 1.25})


def test_picks_without_a_column_are_refused_by_name():
    picks = picks_frame(REALIZED, FORECASTS).drop(columns="realized")
    with pytest.raises(ValueError, match=r"lack the columns \['realized'\]"):
        stats.backtest_table(picks, [], BacktestOptions())


def test_without_the_trailing_means_picks_there_is_no_verdict_and_the_text_still_reads():
    picks = picks_frame(REALIZED, {"model": FORECASTS["model"]})
    table = stats.backtest_table(picks, cutoff_records(picks), BacktestOptions(top=["2"], draws=20))
    assert "difference" not in table["sizes"]["2"] and table["verdicts"] == []
    assert set(table["sizes"]["2"]["methods"]) == {"model", "random", "all", "best"}
    text = backtest_text({**table, "cutoffs": []})
    assert "LOSES" not in text and "model" in text
