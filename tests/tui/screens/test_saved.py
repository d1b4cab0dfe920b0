import asyncio
from typing import cast

from textual.widgets import DataTable, Input, Static

from stratcast.shared.protocol import JobSpec, Placement, RemoveSaved, SetAlias, ShowSaved, Submit
from stratcast.shared.report import metrics_text
from stratcast.shared.report import saved_evidence as evidence
from stratcast.tui.app import StratcastApp
from stratcast.tui.link import Link
from stratcast.tui.screens.dialogs import ConfirmDialog, PromptDialog
from stratcast.tui.screens.saved import SavedScreen, ScoreDialog
from tests.tui.fake_daemon import FakeLink, demo_metrics, frozen_clock, serve_saved


def run_saved(body):
    """Open the saved models screen (``m``) on a fake daemon with two models; run ``body``."""
    link = FakeLink()
    models = serve_saved(link)

    async def go():
        app = StratcastApp(cast("Link", link), clock=frozen_clock)
        async with app.run_test(size=(140, 40)) as pilot:
            await pilot.pause()
            await pilot.press("m")
            await pilot.pause(0.3)
            assert isinstance(app.screen, SavedScreen)
            await body(app, pilot, link, models)

    asyncio.run(go())


def rows(app):
    table = app.screen.query_one("#saved", DataTable)
    return [" | ".join(str(c) for c in table.get_row_at(i)) for i in range(table.row_count)]


async def answer(pilot, text):
    """Type ``text`` over the prompt's value and press enter."""
    assert isinstance(pilot.app.screen, PromptDialog)
    pilot.app.screen.query_one(Input).value = text
    await pilot.press("enter")
    await pilot.pause(0.2)


def test_the_list_shows_versions_aliases_and_the_latest_versions_summary():
    async def body(app, pilot, link, models):
        audjpy, eurusd = rows(app)
        assert audjpy.startswith(
            "audjpy | 1 | - | 2025-11-21 10:00 | 1.31 vs 1.41 trailing_mean (-7.1%) beats | 300 × "
        )
        assert eurusd.startswith("eurusd | 1,2,3 | champion=2 | 2025-11-23 10:00")
        assert eurusd.endswith("300 × 7 days · 104→52 · 3f2a9c1e")
        assert sorted(c.ref for c in link.calls if isinstance(c, ShowSaved)) == ["audjpy:1", "eurusd:3"]
        assert "Saved models · 2, 4 versions" in str(app.screen.query_one("#saved-title", Static).render())
        detail = str(app.screen.query_one("#saved-detail", Static).render())
        assert "audjpy:1: dlinear (batch)" in detail and "300 strategies" in detail

    run_saved(body)


def test_a_sets_an_alias_on_the_version_asked():
    async def body(app, pilot, link, models):
        app.screen.query_one("#saved", DataTable).move_cursor(row=1)  # eurusd
        await pilot.press("a")
        await pilot.pause(0.2)
        await answer(pilot, "7")  # no such version: asked again
        assert "no version 7" in str(app.screen.query_one("#error").render())
        await answer(pilot, "3")
        await answer(pilot, "challenger")
        await pilot.pause(0.3)
        (sent,) = [c for c in link.calls if isinstance(c, SetAlias)]
        assert (sent.ref, sent.alias, sent.remove) == ("eurusd:3", "challenger", False)
        assert "challenger=3, champion=2" in rows(app)[1]

    run_saved(body)


def test_x_removes_a_version_after_confirmation_forcing_only_an_aliased_one():
    async def body(app, pilot, link, models):
        app.screen.query_one("#saved", DataTable).move_cursor(row=1)
        await pilot.press("x")
        await pilot.pause(0.2)
        await answer(pilot, "2")
        assert isinstance(app.screen, ConfirmDialog)
        assert "eurusd@champion" in app.screen.question
        await pilot.press("n")
        await pilot.pause(0.2)
        assert not [c for c in link.calls if isinstance(c, RemoveSaved)]
        await pilot.press("x")
        await pilot.pause(0.2)
        await answer(pilot, "1")
        await pilot.press("y")
        await pilot.pause(0.3)
        (sent,) = [c for c in link.calls if isinstance(c, RemoveSaved)]
        assert (sent.ref, sent.force) == ("eurusd:1", False)
        assert rows(app)[1].startswith("eurusd | 2,3 | champion=2")

    run_saved(body)


def test_f_queues_a_scoring_job_as_stratcast_forecast_does():
    async def body(app, pilot, link, models):
        app.screen.query_one("#saved", DataTable).move_cursor(row=1)
        await pilot.press("f")
        await pilot.pause(0.2)
        dialog = app.screen
        assert isinstance(dialog, ScoreDialog)
        assert dialog.query_one("#score-ref", Input).value == "eurusd@champion"
        dialog.query_one("#score-data", Input).value = "relative.parquet"
        await pilot.press("enter")
        await pilot.pause()
        assert "not absolute" in str(dialog.query_one("#error").render())
        dialog.query_one("#score-data", Input).value = "/data/new.parquet"
        dialog.query_one("#score-name", Input).value = "monday"
        await pilot.press("enter")
        await pilot.pause(0.3)
        (sent,) = [c for c in link.calls if isinstance(c, Submit)]
        assert sent == Submit(
            job=JobSpec(data="/data/new.parquet", saved="eurusd@champion"), placement=Placement(name="monday")
        )
        assert isinstance(app.screen, SavedScreen)

    run_saved(body)


def test_a_refused_request_is_shown_and_the_screen_goes_on():
    async def body(app, pilot, link, models):
        link.refuse("set_alias", "saved model 'audjpy' has no version 1", "bad_saved_model")
        await pilot.press("a")
        await pilot.pause(0.2)
        await answer(pilot, "1")
        await answer(pilot, "champion")
        await pilot.pause(0.3)
        assert isinstance(app.screen, SavedScreen)
        assert any("has no version 1" in str(n.message) for n in app._notifications)
        assert len(rows(app)) == 2

    run_saved(body)


def test_metrics_text_compares_with_the_better_baseline():
    assert metrics_text(demo_metrics()) == "1.31 vs 1.41 trailing_mean (-7.1%) beats"
    assert metrics_text({}) == "no holdout"


def test_v_shows_another_version_under_the_table():
    async def body(app, pilot, link, models):
        app.screen.query_one("#saved", DataTable).move_cursor(row=1)
        await pilot.pause()
        assert "eurusd:3: dlinear" in str(app.screen.query_one("#saved-detail", Static).render())
        await pilot.press("v")
        await pilot.pause(0.2)
        await answer(pilot, "1")
        await pilot.pause(0.3)
        assert "eurusd:1" in [c.ref for c in link.calls if isinstance(c, ShowSaved)]
        detail = str(app.screen.query_one("#saved-detail", Static).render())
        assert "eurusd:1: dlinear" in detail and "saved 2025-11-21T10:00" in detail

    run_saved(body)


def test_a_bad_alias_name_is_asked_again_without_sending():
    async def body(app, pilot, link, models):
        await pilot.press("a")
        await pilot.pause(0.2)
        await answer(pilot, "1")
        await answer(pilot, "-champion")
        assert isinstance(app.screen, PromptDialog)
        assert "is not a valid name" in str(app.screen.query_one("#error").render())
        assert not [c for c in link.calls if isinstance(c, SetAlias)]

    run_saved(body)


def test_a_version_without_a_holdout_shows_its_studys_trial_as_evidence():
    study = {
        "study": "s",
        "trial": 3,
        "objectives": ["holdout-rmse"],
        "values": [1.0021],
        "keep": "all-data",
        "complete": 9,
    }
    assert evidence({"metrics": {}, "study": study}) == "trial 3: holdout-rmse 1.002 loses"
    assert evidence({"metrics": demo_metrics(), "study": study}) == "1.31 vs 1.41 trailing_mean (-7.1%) beats"
    assert evidence({"metrics": {}}) == "no holdout"
