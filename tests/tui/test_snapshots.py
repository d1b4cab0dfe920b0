"""SVG snapshots of each screen on the fake daemon (``pytest --snapshot-update`` accepts new looks).

Times come from the fake's fixed clock and are shown in UTC; the repaint timer and the link never change the
fake's state on their own, so every screenshot is the same on every run.
"""

import pytest
from textual.widgets import Input

from stratcast.tui.app import StratcastApp
from tests.tui.fake_daemon import FakeLink, demo_snapshot, frozen_clock, schedule, schedule_updated, serve_models

pytestmark = pytest.mark.usefixtures("utc")


def app(link=None, **kwargs):
    return StratcastApp(link or FakeLink(), clock=frozen_clock, **kwargs)


def test_main_screen_on_a_two_gpu_server(snap_compare):
    assert snap_compare(app(), terminal_size=(120, 36))


def test_main_screen_fits_80x24(snap_compare):
    assert snap_compare(app(), terminal_size=(80, 24))


def test_main_screen_without_gpus_shows_the_host(snap_compare):
    assert snap_compare(app(FakeLink(demo_snapshot(gpus=False))), terminal_size=(120, 36))


def test_main_screen_while_reconnecting(snap_compare):
    link = FakeLink()
    link.state = "reconnecting"
    link.detail = "no stratcast daemon answers at ipc:///run/user/1000/stratcast/control (no event for 3 s)."
    assert snap_compare(app(link), terminal_size=(120, 36))


def test_kill_confirmation(snap_compare):
    assert snap_compare(app(), terminal_size=(120, 36), press=["k"])


def test_new_run_form(snap_compare):
    async def open_form(pilot):
        await pilot.press("n")
        await pilot.pause(0.5)  # the model list arrives from the daemon
        for box in pilot.app.screen.query(Input):
            box.cursor_blink = False  # a blinking cursor would make the picture depend on the moment
        await pilot.pause()

    assert snap_compare(app(serve_models(FakeLink())), terminal_size=(120, 36), run_before=open_form)


def test_schedules_screen(snap_compare):
    link = FakeLink()
    link.feed(schedule_updated(schedule(1, "weekly-eurusd", cron="0 22 * * 0", timezone="Europe/London")))
    link.feed(schedule_updated(schedule(2, "daily-audjpy", model="nhits", every_s=86400, paused=True)))

    async def open_schedules(pilot):
        await pilot.press("c")
        await pilot.pause(0.3)

    assert snap_compare(app(link), terminal_size=(120, 36), run_before=open_schedules)
