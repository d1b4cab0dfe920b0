"""SVG snapshots of the studies, study and saved models screens on the fake daemon (``--snapshot-update``)."""

import pytest

from stratcast.tui.app import StratcastApp
from tests.tui.fake_daemon import FakeLink, frozen_clock, serve_saved, serve_studies

pytestmark = pytest.mark.usefixtures("utc")


def app():
    link = FakeLink()
    serve_studies(link)
    serve_saved(link)
    return StratcastApp(link, clock=frozen_clock)


def keys(*pressed):
    async def run_before(pilot):
        for key in pressed:
            await pilot.press(key)
            await pilot.pause(0.3)

    return run_before


def test_studies_screen(snap_compare):
    assert snap_compare(app(), terminal_size=(120, 36), run_before=keys("t"))


def test_study_screen_with_one_objective(snap_compare):
    assert snap_compare(app(), terminal_size=(120, 36), run_before=keys("t", "down", "enter"))


def test_study_screen_with_a_pareto_front(snap_compare):
    assert snap_compare(app(), terminal_size=(120, 36), run_before=keys("t", "enter"))


def test_saved_models_screen(snap_compare):
    assert snap_compare(app(), terminal_size=(140, 36), run_before=keys("m"))
