import asyncio
import math
import time

from textual.widgets.data_table import ColumnKey

from stratcast.shared.events import ProgressReported
from stratcast.shared.protocol import RUN_STATES, SetPriority, StopRun
from stratcast.tui.app import StratcastApp
from stratcast.tui.widgets.runs import RunsTable
from tests.tui.fake_daemon import (
    FakeLink,
    demo_snapshot,
    frozen_clock,
    kill_declined_then_confirmed,
    progress,
    run,
)


def run_app(link, body, size=(120, 36)):
    async def go():
        app = StratcastApp(link, clock=frozen_clock)
        async with app.run_test(size=size) as pilot:
            await pilot.pause()
            # on a loaded machine the first repaint can come late: wait (up to 20 s) for the snapshot's runs
            for _ in range(400):
                tables = app.screen.query(RunsTable)
                if app.screen.query("#status") and tables and (tables.first().row_count or not link.mirror.runs):
                    break
                await pilot.pause(0.05)
            await body(app, pilot)

    asyncio.run(go())


def select(app, run_id):
    table = app.screen.query_one(RunsTable)
    table.move_cursor(row=table._order.index(run_id))


def table_text(app) -> str:
    table = app.screen.query_one(RunsTable)
    return "\n".join(" ".join(str(c) for c in table.get_row_at(i)) for i in range(table.row_count))


def test_main_screen_lists_every_run_with_its_wait_reason():
    async def body(app, pilot):
        text = table_text(app)
        assert "queued GPU 0 busy" in text
        assert app.screen.query_one(RunsTable).row_count == 6
        assert "eurusd-nhits" in text and "oom-failed" in text
        select(app, 2)
        await pilot.pause()
        assert "queued: GPU 0 busy with run 1" in str(app.screen.query_one("#detail").render())

    run_app(FakeLink(), body, size=(160, 36))  # the reasons get the width the other columns leave


def test_progress_figures_wait_for_the_tables_interval_but_a_state_change_shows_at_once():
    async def body(app, pilot):
        table = app.screen.query_one(RunsTable)
        table.values_every_s = 3600.0  # the clock decides nothing below: the test sets when figures are due
        table._values_at = time.monotonic()
        app.link.feed(ProgressReported(**progress(777)), 1)
        await pilot.pause(0.6)  # a repaint and the table's own check both ran
        assert "777" not in table_text(app), "progress figures alone wait for the table's interval"
        table._values_at = -math.inf  # the interval has passed
        await pilot.pause(0.6)
        assert "777" in table_text(app)
        table._values_at = time.monotonic()
        app.link.feed(ProgressReported(**progress(888)), 1)
        app.link.set_run(2, state="running", reason="", device="cuda:1")
        await pilot.pause(0.4)
        text = table_text(app)
        assert "eurusd-tide tide running" in text
        assert "888" in text, "a state change brings the other rows' figures along"

    run_app(FakeLink(), body)


def test_stop_key_sends_stop_for_the_selected_run():
    async def body(app, pilot):
        select(app, 1)
        await pilot.press("s")
        await pilot.pause()
        assert [c.run for c in app.link.calls if isinstance(c, StopRun)] == [1]

    run_app(FakeLink(), body)


def test_kill_needs_confirmation():
    async def body(app, pilot):
        select(app, 1)
        assert await kill_declined_then_confirmed(app.link, pilot) == [1]

    run_app(FakeLink(), body)


def test_priority_prompt_refuses_a_non_number_then_sends_the_number():
    async def body(app, pilot):
        select(app, 2)
        await pilot.press("p")
        await pilot.pause()
        await pilot.press("ctrl+a", "ctrl+k", *"high", "enter")
        await pilot.pause()
        assert not any(isinstance(c, SetPriority) for c in app.link.calls)
        await pilot.press("ctrl+a", "ctrl+k", "5", "enter")
        await pilot.pause()
        assert [(c.run, c.priority) for c in app.link.calls if isinstance(c, SetPriority)] == [(2, 5)]

    run_app(FakeLink(), body)


def test_cpu_only_daemon_shows_the_host_panel():
    async def body(app, pilot):
        await pilot.pause(0.3)
        text = " ".join(str(s.render()) for s in app.screen.query("DeviceCard Static"))
        assert "CPU" in text and "RAM" in text

    run_app(FakeLink(demo_snapshot(gpus=False)), body)


def visible_width(table):
    return sum(column.get_render_width(table) for column in table.ordered_columns)


def test_at_80x24_the_runs_table_keeps_state_progress_loss_and_eta_within_the_screen():
    async def body(app, pilot):
        table = app.screen.query_one(RunsTable)
        keys = [column.key.value for column in table.ordered_columns]
        assert {"id", "state", "pct", "loss", "eta"} <= set(keys)
        assert visible_width(table) <= table.scrollable_content_region.width
        assert "1m 09s" in table_text(app)  # run 1's ETA

    run_app(FakeLink(), body, size=(80, 24))


def test_the_state_column_narrows_to_the_width_left_after_a_resize():
    async def body(app, pilot):
        table = app.screen.query_one(RunsTable)
        assert "queued GPU 0 busy with run 1" in table_text(app)
        wide = table.columns[ColumnKey("state")].get_render_width(table)
        await pilot.resize_terminal(100, 36)
        await pilot.pause(0.3)
        state = table.columns[ColumnKey("state")].get_render_width(table)
        assert state < wide
        assert visible_width(table) <= table.scrollable_content_region.width

    run_app(FakeLink(), body, size=(160, 36))


def test_the_header_counts_runs_in_every_state_the_protocol_defines():
    snapshot = demo_snapshot()
    taken = {r["state"] for r in snapshot["runs"]}
    snapshot["runs"] += [run(10 + i, state) for i, state in enumerate(s for s in RUN_STATES if s not in taken)]

    async def body(app, pilot):
        for _ in range(400):  # the header is recomposed with the runs: wait until it is there (loaded machines)
            if app.screen.query("#status"):
                break
            await pilot.pause(0.05)
        header = str(app.screen.query_one("#status").render())
        for state in RUN_STATES:
            assert f"1 {state}" in header, state

    run_app(FakeLink(snapshot), body, size=(200, 36))


def test_a_figure_that_outgrows_its_column_rebuilds_the_table_instead_of_pushing_columns_off_screen():
    async def body(app, pilot):
        table = app.screen.query_one(RunsTable)
        table._values_at = -math.inf
        app.link.feed(ProgressReported(**(progress(421) | {"train_loss": 123456.7})), 1)
        await pilot.pause(0.6)
        assert "1.235e+05" in table_text(app)
        assert table.columns[ColumnKey("loss")].width >= len("1.235e+05")  # shown whole, not cut to "1.235e"
        assert "ETA" in [str(column.label) for column in table.ordered_columns]
        assert visible_width(table) <= table.scrollable_content_region.width

    run_app(FakeLink(), body, size=(80, 24))
