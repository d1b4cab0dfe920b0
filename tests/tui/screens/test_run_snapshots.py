"""SVG snapshots of the run screen on the fake daemon (``pytest --snapshot-update`` accepts new looks).

Times are shown in UTC from the fake's fixed data; each snapshot is taken once the screen's reads are done.
"""

import pytest

from stratcast.tui.app import StratcastApp
from tests.tui.fake_daemon import frozen_clock
from tests.tui.screens.test_run import served, settle

pytestmark = pytest.mark.usefixtures("utc")


def app(run):
    link, _ = served()
    return StratcastApp(link, clock=frozen_clock, open_run=run)


def after_reads(*keys):
    async def run_before(pilot):
        await settle(pilot.app, pilot)
        await pilot.press(*keys)
        await settle(pilot.app, pilot)

    return run_before


def test_run_curves_fit_80x24(snap_compare):
    assert snap_compare(app(1), terminal_size=(80, 24), run_before=after_reads())


def test_run_curves_side_by_side_over_the_log_at_160x48(snap_compare):
    assert snap_compare(app(1), terminal_size=(160, 48), run_before=after_reads())


def test_run_memory_tab(snap_compare):
    assert snap_compare(app(1), terminal_size=(120, 36), run_before=after_reads("2"))


def test_run_results_tab(snap_compare):
    assert snap_compare(app(3), terminal_size=(120, 36), run_before=after_reads("4"))
