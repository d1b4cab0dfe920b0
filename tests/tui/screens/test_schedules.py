import asyncio
from typing import cast

from textual.widgets import DataTable

from stratcast.shared.events import ScheduleRemoved
from stratcast.shared.protocol import PauseSchedule, RemoveSchedule, ResumeSchedule, RunScheduleNow
from stratcast.tui.app import StratcastApp
from stratcast.tui.link import Link
from stratcast.tui.screens.main import MainScreen
from stratcast.tui.screens.schedules import SchedulesScreen
from tests.tui.fake_daemon import T0, FakeLink, frozen_clock, schedule, schedule_updated

WEEKLY = schedule(1, "weekly-dlinear", cron="0 6 * * 1", timezone="Europe/Zurich", last_run=T0 - 7500, last_run_id=3)
NIGHTLY = schedule(2, "nightly-nhits", model="nhits", every_s=86400, paused=True, next_run=None)


def run_schedules(body, *schedules):
    """Feed ``schedules`` to a fake daemon, open the schedules screen from the main screen (``c``), run ``body``."""
    link = FakeLink()
    for s in schedules:
        link.feed(schedule_updated(s))

    async def go():
        app = StratcastApp(cast("Link", link), clock=frozen_clock)  # FakeLink.state is a plain str
        async with app.run_test(size=(120, 36)) as pilot:
            await pilot.pause()
            await pilot.press("c")
            await pilot.pause()
            assert isinstance(app.screen, SchedulesScreen)
            await body(app, pilot)

    asyncio.run(go())


def rows(app) -> list[str]:
    table = app.screen.query_one("#schedules", DataTable)
    return [" | ".join(str(c) for c in table.get_row_at(i)) for i in range(table.row_count)]


def sent(app, kind):
    return [c.schedule for c in app.link.calls if isinstance(c, kind)]


def test_the_table_lists_the_schedules_with_their_timetables_and_times_relative_to_the_clock():
    async def body(app, pilot):
        weekly, nightly = rows(app)
        assert weekly == "1 | weekly-dlinear | active | in 3h 10m | run 3, 2h 05m ago | 0 6 * * 1 Europe/Zurich | " + (
            "dlinear | eurusd.parquet"
        )
        assert nightly.startswith("2 | nightly-nhits | paused | - | - | every 1d | nhits")
        assert "Schedules · 2, 1 paused" in str(app.screen.query_one("#schedules-title").render())

    run_schedules(body, WEEKLY, NIGHTLY)


def test_events_update_rows_in_place_and_the_cursor_stays_on_its_schedule():
    async def body(app, pilot):
        table = app.screen.query_one("#schedules", DataTable)
        table.move_cursor(row=1)
        app.link.feed(schedule_updated({**WEEKLY, "paused": True, "next_run": None}))
        app.link.feed(schedule_updated(schedule(3, "hourly", every_s=3600)))
        await pilot.pause(0.5)  # the app repaints at its own rate
        assert [r.split(" | ")[:3] for r in rows(app)] == [
            ["1", "weekly-dlinear", "paused"],
            ["2", "nightly-nhits", "paused"],
            ["3", "hourly", "active"],
        ]
        assert table.cursor_row == 1
        app.link.feed(ScheduleRemoved(schedule=1))
        await pilot.pause(0.5)
        assert [r.split(" | ")[0] for r in rows(app)] == ["2", "3"]
        assert table.cursor_row == 0  # still schedule 2
        assert "schedule 2 nightly-nhits" in str(app.screen.query_one("#detail").render())

    run_schedules(body, WEEKLY, NIGHTLY)


def test_pause_key_pauses_an_active_schedule_and_resumes_a_paused_one():
    async def body(app, pilot):
        await pilot.press("p")
        await pilot.pause()
        assert sent(app, PauseSchedule) == [1]
        await pilot.press("down", "p")
        await pilot.pause()
        assert sent(app, ResumeSchedule) == [2]
        assert sent(app, PauseSchedule) == [1]

    run_schedules(body, WEEKLY, NIGHTLY)


def test_remove_asks_for_confirmation_first():
    async def body(app, pilot):
        await pilot.press("x")
        await pilot.pause()
        await pilot.press("n")
        await pilot.pause()
        assert sent(app, RemoveSchedule) == []
        await pilot.press("delete")
        await pilot.pause()
        await pilot.press("y")
        await pilot.pause()
        assert sent(app, RemoveSchedule) == [1]

    run_schedules(body, WEEKLY, NIGHTLY)


def test_run_now_sends_run_schedule_now_and_says_which_run_it_queued():
    async def body(app, pilot):
        app.link.handlers["run_schedule_now"] = lambda request: {"run": {"id": 9}}
        await pilot.press("down", "g")
        await pilot.pause()
        assert sent(app, RunScheduleNow) == [2]
        assert "schedule 2 queued run 9" in [n.message for n in app._notifications]

    run_schedules(body, WEEKLY, NIGHTLY)


def test_with_no_schedules_keys_say_so_and_escape_goes_back():
    async def body(app, pilot):
        assert "a adds one" in str(app.screen.query_one("#detail").render())
        await pilot.press("p", "g")
        await pilot.pause()
        assert [type(c) for c in app.link.calls] == []
        await pilot.press("escape")
        await pilot.pause()
        assert isinstance(app.screen, MainScreen)

    run_schedules(body)


def test_a_repaint_before_a_pushed_screen_is_mounted_waits_for_it():
    link = FakeLink()
    link.feed(schedule_updated(WEEKLY))

    async def go():
        app = StratcastApp(cast("Link", link), clock=frozen_clock)
        async with app.run_test(size=(120, 36)) as pilot:
            await pilot.pause()
            app.push_screen(SchedulesScreen())
            assert isinstance(app.screen, SchedulesScreen) and not app.screen.is_mounted
            paints = app.paints
            app.repaint(force=True)  # the timer's tick before the screen has its widgets
            assert app.paints == paints
            await pilot.pause()
            assert rows(app)[0].startswith("1 | weekly-dlinear")

    asyncio.run(go())


RETUNE = schedule(
    3,
    "weekly-retune",
    model="nhits",
    every_s=7 * 86400,
    last_run=T0 - 3600,
    last_study_id=5,
    study={"models": ["nhits", "tft"], "trials": 8, "save_as": "weekly", "job": {"data": "/data/eurusd.parquet"}},
)


def test_a_retuning_schedule_is_listed_as_such_and_run_now_says_which_study_it_started():
    async def body(app, pilot):
        (row,) = rows(app)
        assert row == "3 | weekly-retune | active | in 3h 10m | study 5, 1h 00m ago | every 1w | " + (
            "tune nhits,tft x8 -> weekly | eurusd.parquet"
        )
        assert "re-tuning: tune nhits,tft x8 -> weekly" in str(app.screen.query_one("#detail").render())
        app.link.handlers["run_schedule_now"] = lambda request: {"study": {"id": 6}}
        await pilot.press("g")
        await pilot.pause()
        assert sent(app, RunScheduleNow) == [3]
        assert "schedule 3 started study 6" in [n.message for n in app._notifications]

    run_schedules(body, RETUNE)
