"""The run screen's backtest tab: shown for a backtest run only, with its chart, verdict and table."""

from __future__ import annotations

import pytest
from textual.widgets import Static, TabbedContent

from stratcast.daemon.engine.backtest.report import backtest_document
from stratcast.tui.app import StratcastApp
from stratcast.tui.widgets.chart import BrailleChart
from stratcast.tui.widgets.run_backtest import BacktestView, curves
from tests.daemon.engine.backtest_frames import synthetic_backtest
from tests.tui.fake_daemon import T0, FakeLink, demo_snapshot, frozen_clock, job, run, serve_runs
from tests.tui.screens.test_run import open_run
from tests.tui.screens.test_run_snapshots import after_reads

BACKTEST = {"cutoffs": 8, "every": 4, "refit_every": 4, "hold": None, "top": ["5", "10%"], "cost": 0.0, "draws": 50}


def backtest_table(skill: float = 3.0):
    picks, cutoffs, options = synthetic_backtest(cutoffs=8, skill=skill)
    return backtest_document(picks, cutoffs, options, {"model": "nhits"})


def backtest_link(table):
    """The demo daemon with run 7, a succeeded backtest whose ``read_results`` answers ``table``."""
    snapshot = demo_snapshot()
    snapshot["runs"].append(
        run(7, "succeeded", name="bt", job=job(backtest=BACKTEST), started=T0 - 900, finished=T0 - 60)
    )
    link = FakeLink(snapshot)
    serve_runs(link)
    plain = link.handlers["read_results"]
    link.handlers["read_results"] = lambda request: {"backtest": table} if request.run == 7 else plain(request)
    return link


def tab_shown(screen, tab: str) -> bool:
    return bool(screen.query_one(TabbedContent).get_tab(tab).display)


def test_a_backtest_run_shows_its_chart_verdict_and_table_in_the_backtest_tab():
    table = backtest_table()

    async def body(app, screen, pilot):
        assert tab_shown(screen, "backtest")
        await pilot.press("6")
        await pilot.pause()
        assert screen.query_one(TabbedContent).active == "backtest"
        chart = screen.query_one("#backtest-chart", BrailleChart)
        names = [s.name for s in chart.series]
        assert names == ["model", "trailing", "last", "random", "5%", "95%", "all", "best"]
        assert list(chart.series[0].values) == table["sizes"]["5"]["methods"]["model"]["curve"]
        assert "top 5 (5 strategies)" in chart.border_subtitle and "8 cutoffs" in chart.border_subtitle
        verdict = str(screen.query_one("#backtest-verdict", Static).content)
        assert "the model's picks are better than the trailing mean's at 95%" in verdict
        assert "Walk-forward backtest: nhits, 8 cutoffs" in str(screen.query_one("#backtest-table", Static).content)
        assert "a backtest" in str(screen.query_one("#summary", Static).content)
        await pilot.press("p")  # the next pick size
        await pilot.pause()
        assert screen.query_one(BacktestView).pick == "10%" and "top 10%" in chart.border_subtitle

    open_run(backtest_link(table), body, run=7)


def test_a_losing_model_is_said_to_lose_in_red():
    async def body(app, screen, pilot):
        verdict = screen.query_one("#backtest-verdict", Static).content
        assert "The model's top 5 LOSES to trailing mean" in str(verdict)
        assert "worse than the trailing mean's" in str(verdict)

    open_run(backtest_link(backtest_table(skill=-3.0)), body, run=7)


def test_a_plain_run_has_no_backtest_tab_and_key_6_does_nothing():
    async def body(app, screen, pilot):
        assert not tab_shown(screen, "backtest")
        await pilot.press("6")
        await pilot.pause()
        assert screen.query_one(TabbedContent).active == "curves"

    open_run(backtest_link(backtest_table()), body, run=3)


def test_the_random_band_is_two_dim_lines_around_the_random_mean():
    size = backtest_table()["sizes"]["5"]
    lines = curves(size)
    lo, hi, mean = lines["5%"][0], lines["95%"][0], lines["random"][0]
    for a, m, b in zip(lo, mean, hi, strict=True):
        assert a is not None and m is not None and b is not None and a <= m <= b
    assert lines["5%"][1] == "dim white"


@pytest.mark.usefixtures("utc")
def test_the_backtest_tab_looks_right(snap_compare):
    app = StratcastApp(backtest_link(backtest_table()), clock=frozen_clock, open_run=7)
    assert snap_compare(app, terminal_size=(120, 48), run_before=after_reads("6"))
