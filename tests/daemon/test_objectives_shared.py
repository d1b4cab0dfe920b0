"""Objectives as the clients see them: directions, and a value that loses to the naive forecast shown losing."""

from stratcast.daemon.engine.study.objectives import MAXIMIZE, MINIMIZE
from stratcast.daemon.engine.study.objectives import OBJECTIVES as DAEMON_OBJECTIVES
from stratcast.shared.objectives import OBJECTIVES, maximizes, values_text


def test_the_daemon_knows_exactly_the_clients_objectives_in_the_same_directions():
    assert set(DAEMON_OBJECTIVES) == set(OBJECTIVES)
    for name, o in DAEMON_OBJECTIVES.items():
        assert o.direction == (MAXIMIZE if maximizes(name) else MINIMIZE)
        assert o.backtest == OBJECTIVES[name].backtest


def test_a_relative_rmse_above_one_or_a_negative_difference_loses_and_raw_figures_have_no_verdict():
    assert values_text(["holdout-rmse"], [1.0059]) == "1.0059 loses"
    assert values_text(["holdout-rmse"], [0.97]) == "0.97 beats"
    assert values_text(["holdout-rmse"], [1.0]) == "1 ties"
    assert values_text(["holdout-rmse", "backtest-diff"], [0.98, -0.5]) == "0.98 beats -0.5 loses"
    assert values_text(["backtest-diff"], [2.5]) == "2.5 beats"
    assert values_text(["holdout-rmse-raw", "backtest-top-k"], [38.4, 1.2]) == "38.4 1.2"
