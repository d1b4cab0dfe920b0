import asyncio
from typing import cast

from rich.text import Text
from textual.widgets import DataTable, Input, Select, Static

from stratcast.shared.client import RequestFailed
from stratcast.shared.protocol import ResumeStudy, RetrainStudy, ShowStudy, StopStudy
from stratcast.tui.app import StratcastApp
from stratcast.tui.link import Link
from stratcast.tui.screens.run import RunScreen
from stratcast.tui.screens.studies import StudiesScreen
from stratcast.tui.screens.study import RetrainDialog, StudyScreen
from stratcast.tui.study_view import best_so_far, importance_bars, pareto
from stratcast.tui.widgets.chart import BrailleChart
from tests.tui.fake_daemon import FakeLink, demo_studies, frozen_clock, serve_runs, serve_studies


def run_app(body, *, keys=("t",), size=(120, 36), link=None):
    """Open the studies screen (``t``) on a fake daemon with two studies, press ``keys`` after, run ``body``."""
    link = link or FakeLink()
    studies = serve_studies(link)
    serve_runs(link)

    async def go():
        app = StratcastApp(cast("Link", link), clock=frozen_clock)
        async with app.run_test(size=size) as pilot:
            await pilot.pause()
            for key in keys:
                await pilot.press(key)
                await pilot.pause(0.2)
            await body(app, pilot, link, studies)

    asyncio.run(go())


def rows(app, table_id):
    table = app.screen.query_one(table_id, DataTable)
    return [" | ".join(str(c) for c in table.get_row_at(i)) for i in range(table.row_count)]


def test_the_list_shows_each_study_with_trials_done_asked_and_planned_and_its_best():
    async def body(app, pilot, link, studies):
        assert isinstance(app.screen, StudiesScreen)
        second, first = rows(app, "#studies")
        assert second == "2 | stratcast-study-2 | finished | nhits,tide | backtest-top-k ↑, backtest-diff ↑ | " + (
            "4/4/20 | 0.5 | 20m 34s"
        )
        # three complete and one pruned of five asked; the lowest RMSE; 1000 s running by the fake's clock
        assert first == "1 | stratcast-study-1 | running | nhits,tide | holdout-rmse ↓ | 4/5/20 | 0.91 beats | 16m 40s"
        assert "Studies · 2, 1 running" in str(app.screen.query_one("#studies-title", Static).render())

    run_app(body)


def test_stop_and_resume_act_on_the_selected_study():
    async def body(app, pilot, link, studies):
        table = app.screen.query_one("#studies", DataTable)
        table.move_cursor(row=1)  # study 1
        await pilot.press("s")
        await pilot.pause(0.3)
        assert [c.study for c in link.calls if isinstance(c, StopStudy)] == [1]
        assert "stopped" in rows(app, "#studies")[1]
        await pilot.press("r")
        await pilot.pause(0.3)
        assert [c.study for c in link.calls if isinstance(c, ResumeStudy)] == [1]

    run_app(body)


def test_a_daemon_that_cannot_list_studies_is_reported_in_the_title():
    link = FakeLink()

    async def body(app, pilot, link, studies):
        link.refuse("list_studies", "the state database is locked")
        app.screen.poll()
        await pilot.pause(0.3)
        assert "the state database is locked" in str(app.screen.query_one("#studies-title", Static).render())

    run_app(body, link=link)


def test_the_study_screen_shows_trials_the_best_so_far_and_the_importances():
    async def body(app, pilot, link, studies):
        assert isinstance(app.screen, StudyScreen)
        table = rows(app, "#trials")
        assert table[1] == "1 | COMPLETE | 0.91 beats | 2 | 1m 30s | model=tide learning_rate=0.002 | "
        assert table[2].startswith("2 | PRUNED") and "pruned at step 200" in table[2]
        chart = app.screen.query_one("#best-chart", BrailleChart)
        (series,) = chart.series
        assert series.values == (0.95, 0.95, 0.91, 0.91)  # minimized: steps down, never up
        assert series.x == (0.0, 100 / 60, 100 / 60, 300 / 60)
        bars = str(app.screen.query_one("#importances", Static).render())
        assert "learning_rate" in bars and "70.0%" in bars and "30.0%" in bars
        assert not app.screen.query_one("#pareto-chart").display

    run_app(body, keys=("t", "down", "enter"))  # the newest study is first: down to study 1


def test_selecting_a_trial_opens_its_run():
    async def body(app, pilot, link, studies):
        app.screen.query_one("#trials", DataTable).move_cursor(row=2)  # trial 2, run 3
        await pilot.press("enter")
        await pilot.pause(0.3)
        assert isinstance(app.screen, RunScreen) and app.screen.run_id == 3

    run_app(body, keys=("t", "down", "enter"))


def test_several_objectives_draw_the_pareto_front_and_say_why_no_importances():
    async def body(app, pilot, link, studies):
        assert app.screen.study_id == 2
        chart = app.screen.query_one("#pareto-chart", BrailleChart)
        assert chart.display
        dots, front = chart.series
        assert [v for v in dots.values if v is not None] == [0.1, 0.05, 0.3]
        assert list(zip(front.x, front.values, strict=True)) == [(0.2, 0.3), (0.5, 0.1)]
        assert "final run 3" in str(app.screen.query_one("#study-title", Static).render())
        bars = str(app.screen.query_one("#importances", Static).render())
        assert "need 2 more complete trials" in bars  # 3 of 5

    run_app(body, keys=("t", "enter"))


def test_b_sends_retrain_study_with_the_chosen_keep_and_name():
    async def body(app, pilot, link, studies):
        await pilot.press("b")
        await pilot.pause(0.2)
        assert isinstance(app.screen, RetrainDialog)
        app.screen.query_one("#keep", Select).value = "holdout"
        box = app.screen.query_one("#save-as", Input)
        box.value = "bad name!"
        await pilot.press("enter")
        await pilot.pause()
        assert isinstance(app.screen, RetrainDialog)  # refused locally, nothing sent
        assert "is not a valid name" in str(app.screen.query_one("#error").render())
        box.value = "eurusd-best"
        await pilot.press("enter")
        await pilot.pause(0.3)
        (sent,) = [c for c in link.calls if isinstance(c, RetrainStudy)]
        assert (sent.study, sent.keep, sent.save_as, sent.trial) == (1, "holdout", "eurusd-best", None)
        assert isinstance(app.screen, StudyScreen)
        assert any("final run 7 queued, training the best (holdout)" in str(n.message) for n in app._notifications)
        await pilot.press("b")
        await pilot.pause(0.2)
        trial = app.screen.query_one("#trial", Input)
        trial.value = "2"  # pruned: no configuration worth keeping
        await pilot.press("enter")
        await pilot.pause()
        assert "give a complete trial's number (0, 1, 3)" in str(app.screen.query_one("#error").render())
        trial.value = "3"
        await pilot.press("enter")
        await pilot.pause(0.3)
        last = [c for c in link.calls if isinstance(c, RetrainStudy)][-1]
        assert (last.keep, last.save_as, last.trial) == ("all-data", None, 3)

    run_app(body, keys=("t", "down", "enter"))


def test_a_refused_retrain_and_a_failed_read_leave_the_screen_working():
    async def body(app, pilot, link, studies):
        link.refuse("retrain_study", "study 1 has no complete trial yet", "bad_state")
        await pilot.press("b")
        await pilot.pause(0.2)
        await pilot.press("enter")
        await pilot.pause(0.3)
        assert isinstance(app.screen, StudyScreen)
        assert any("no complete trial" in str(n.message) for n in app._notifications)
        link.handlers["show_study"] = lambda r: RequestFailed("not_found", "no study 1")
        app.screen.read()
        await pilot.pause(0.3)
        assert "no study 1" in str(app.screen.query_one("#study-title", Static).render())
        assert len(rows(app, "#trials")) == 5  # the last trials stay

    run_app(body, keys=("t", "down", "enter"))


def test_best_so_far_follows_each_objectives_direction_and_completion_order():
    trials = demo_studies()[1]["trials"]
    xs, ys, what = best_so_far(trials, "holdout-rmse")
    assert (xs, ys, what) == ([0.0, 100 / 60, 300 / 60], [0.95, 0.91, 0.91], "minutes")
    _, up, _ = best_so_far(trials, "backtest-top-k")
    assert up == [0.95, 0.95, 0.97]
    trials[3]["completed"] = None  # without times: by trial number
    assert best_so_far(trials, "holdout-rmse")[2] == "trial number"


def test_pareto_points_and_importance_bars():
    two = demo_studies()[2]
    everyone, front = pareto(two["trials"], two["best"])
    assert everyone == [(0.5, 0.1), (0.3, 0.05), (0.2, 0.3)]
    assert front == [(0.2, 0.3), (0.5, 0.1)]
    assert "need 5 more complete trials" in importance_bars({}, 40).plain
    assert "need a parameter that varies" in importance_bars({}, 40, complete_trials=9).plain
    bars = importance_bars({"a": 0.8, "bb": 0.2}, 20)
    assert isinstance(bars, Text)
    lines = bars.plain.splitlines()[1:]
    assert lines[0].startswith("a  ") and lines[0].count("█") == 4 * lines[1].count("█") == 8


def test_the_study_screen_asks_again_while_the_study_runs():
    async def body(app, pilot, link, studies):
        asked = sum(isinstance(c, ShowStudy) for c in link.calls)
        app.screen._poll()
        await pilot.pause(0.2)
        assert sum(isinstance(c, ShowStudy) for c in link.calls) == asked + 1

    run_app(body, keys=("t", "down", "enter"))


def test_s_and_r_on_the_study_screen_stop_and_resume_it_and_f_opens_the_final_run():
    async def body(app, pilot, link, studies):
        await pilot.press("s")
        await pilot.pause(0.3)
        assert [c.study for c in link.calls if isinstance(c, StopStudy)] == [1]
        assert "stopped" in str(app.screen.query_one("#study-title", Static).render())  # read again
        await pilot.press("r")
        await pilot.pause(0.3)
        assert [c.study for c in link.calls if isinstance(c, ResumeStudy)] == [1]
        await pilot.press("f")  # study 1 has no final run yet
        await pilot.pause()
        assert isinstance(app.screen, StudyScreen)
        studies[1]["study"]["final_run"] = 3
        app.screen.read()
        await pilot.pause(0.3)
        await pilot.press("f")
        await pilot.pause(0.3)
        assert isinstance(app.screen, RunScreen) and app.screen.run_id == 3

    run_app(body, keys=("t", "down", "enter"))


def test_a_study_that_does_not_run_is_read_only_now_and_then():
    async def body(app, pilot, link, studies):
        screen = app.screen
        reads = lambda: sum(isinstance(c, ShowStudy) and c.study == 2 for c in link.calls)  # noqa: E731
        before = reads()
        for _ in range(screen.IDLE_POLLS - 1):
            screen._poll()
        await pilot.pause(0.2)
        assert reads() == before
        screen._poll()
        await pilot.pause(0.2)
        assert reads() == before + 1

    run_app(body, keys=("t", "enter"))  # study 2 finished
