import asyncio
from typing import cast

from textual.widgets import Select, Static

from stratcast.shared.protocol import BacktestOptions, JobSpec, Placement, SubmitStudy
from stratcast.tui.app import StratcastApp
from stratcast.tui.link import Link
from stratcast.tui.screens.new_study import NewStudyScreen
from stratcast.tui.screens.studies import StudiesScreen
from stratcast.tui.study_form import field_of
from tests.tui.fake_daemon import FakeLink, frozen_clock, serve_models, serve_studies

DATA = "/data/eurusd.parquet"
SPACE = "[nhits]\nlearning_rate = { low = 1e-4, high = 1e-2, log = true }\n"


def run_form(body):
    """Open the new-study form from the studies screen (``t`` then ``n``) on a fake daemon; run ``body``."""
    link = serve_models(FakeLink())
    serve_studies(link)

    async def go():
        app = StratcastApp(cast("Link", link), clock=frozen_clock)
        async with app.run_test(size=(120, 50)) as pilot:
            await pilot.pause()
            await pilot.press("t")
            await pilot.pause(0.2)
            await pilot.press("n")
            await pilot.pause(0.3)
            assert isinstance(app.screen, NewStudyScreen)
            await body(app, pilot, link)

    asyncio.run(go())


def fill(screen, **texts):
    for key, text in texts.items():
        screen.query_one(f"#{key}").value = text


def problem(screen, key) -> str:
    return str(screen.query_one(f"#field-{key} .field-problem", Static).render())


def sent(link):
    return [c for c in link.calls if isinstance(c, SubmitStudy)]


def test_the_form_sends_a_study_whose_spec_matches_its_fields(tmp_path):
    space = tmp_path / "space.toml"
    space.write_text(SPACE)

    async def body(app, pilot, link):
        screen = app.screen
        assert "New study" in str(screen.query_one("#form-title", Static).render())
        fill(screen, data=DATA, holdout="13", priority="3", models="dlinear, nhits", trials="8", timeout="2h")
        fill(screen, objectives="backtest-top-k,backtest-diff", space=str(space), storage="sqlite:///s.db")
        fill(screen, study="eu-search", parallel="2", seed="7", save_as="eu-best")
        fill(screen, **{"bt-cutoffs": "6", "bt-top": "5, 2%", "bt-cost": "0.5"})
        screen.query_one("#sampler", Select).value = "random"
        screen.query_one("#pruner", Select).value = "none"
        screen.query_one("#keep", Select).value = "holdout"
        await pilot.press("ctrl+s")
        await pilot.pause(0.3)
        (request,) = sent(link)
        spec = request.spec
        assert spec.models == ["dlinear", "nhits"]
        assert (spec.trials, spec.timeout_s, spec.objectives) == (8, 7200.0, ["backtest-top-k", "backtest-diff"])
        assert (spec.sampler, spec.pruner, spec.space, spec.space_format) == ("random", "none", SPACE, "toml")
        assert (spec.storage, spec.name, spec.parallel, spec.seed) == ("sqlite:///s.db", "eu-search", 2, 7)
        assert (spec.keep, spec.save_as) == ("holdout", "eu-best")
        backtest = BacktestOptions(cutoffs=6, top=["5", "2%"], cost=0.5)  # for the backtest objectives
        assert spec.job == JobSpec(data=DATA, model="dlinear", holdout=13, backtest=backtest)  # the first model
        assert spec.placement == Placement(priority=3)
        assert isinstance(app.screen, StudiesScreen)  # the form closed
        assert any("started study 3" in str(n.message) for n in app._notifications)

    run_form(body)


def test_defaults_search_the_model_chosen_above_and_leave_the_choices_to_the_daemon():
    async def body(app, pilot, link):
        fill(app.screen, data=DATA)
        await pilot.press("ctrl+s")
        await pilot.pause(0.3)
        (request,) = sent(link)
        spec = request.spec
        assert (spec.models, spec.job.model, spec.objectives, spec.trials) == (["nhits"], "nhits", ["holdout-rmse"], 20)
        assert (spec.sampler, spec.pruner, spec.space, spec.storage, spec.keep) == (None, None, None, None, "all-data")
        assert spec.job.backtest is None  # a holdout objective: no backtest

    run_form(body)


def test_bad_backtest_options_are_named_only_for_a_backtest_objective():
    async def body(app, pilot, link):
        screen = app.screen
        fill(screen, data=DATA, **{"bt-top": "0%", "bt-every": "x"})
        await pilot.press("ctrl+s")  # holdout-rmse: the backtest's options are not read
        await pilot.pause(0.3)
        assert len(sent(link)) == 1
        app.push_screen(NewStudyScreen())
        await pilot.pause(0.3)
        screen = app.screen
        fill(screen, data=DATA, objectives="backtest-top-k", **{"bt-top": "0%", "bt-every": "x"})
        await pilot.press("ctrl+s")
        await pilot.pause(0.3)
        assert len(sent(link)) == 1
        assert "got '0%'" in problem(screen, "bt-top") and "got x" in problem(screen, "bt-every")
        assert not screen.query_one("#backtest-box").collapsed  # opened to show them

    run_form(body)


def test_a_space_file_that_cannot_be_read_is_reported_without_sending(tmp_path):
    async def body(app, pilot, link):
        screen = app.screen
        fill(screen, data=DATA, space=str(tmp_path / "missing.toml"), models="nhits,nosuchmodel", parallel="0")
        await pilot.press("ctrl+s")
        await pilot.pause(0.3)
        assert not sent(link)
        assert "missing.toml" in problem(screen, "space") and "No such file" in problem(screen, "space")
        assert "unknown model nosuchmodel" in problem(screen, "models")
        assert "expected 1 to 256" in problem(screen, "parallel")
        assert app.screen is screen

    run_form(body)


def test_the_daemons_refusal_is_shown_under_the_field_it_names():
    message = "objectives: unknown objective 'sharpe'; choose among holdout-rmse, holdout-rmse-raw, backtest-top-k"

    async def body(app, pilot, link):
        link.refuse("submit_study", message, code="invalid_spec")
        screen = app.screen
        fill(screen, data=DATA, objectives="sharpe")
        await pilot.press("ctrl+s")
        await pilot.pause(0.3)
        assert len(sent(link)) == 1
        assert "unknown objective 'sharpe'" in problem(screen, "objectives")
        assert app.screen is screen  # the form stays, filled
        assert screen.query_one("#objectives").value == "sharpe"

    run_form(body)


def test_daemon_messages_map_to_the_fields_they_name():
    assert field_of("space: search space file: line 3: bad key") == "space"
    assert field_of("name: study 2 already runs the Optuna study 'x'") == "study"
    assert field_of("job: a study tunes single models; drop --ensemble") == "models"
    assert field_of("/data/x.parquet: no column 'profit'") == "data"


def test_with_a_timetable_the_form_adds_a_schedule_that_re_tunes():
    async def body(app, pilot, link):
        added = []

        def add(request):
            added.append(request)
            return {"schedule": {"id": 4, "name": "eu-tune"}}

        link.handlers["add_schedule"] = add
        screen = app.screen
        fill(screen, data=DATA, models="nhits", trials="6", save_as="eu")
        screen.query_one("#repeat", Select).value = "every"
        await pilot.pause(0.2)
        assert "New re-tuning schedule" in str(screen.query_one("#form-title", Static).render())
        assert screen.query_one("#field-every").display and not screen.query_one("#field-cron").display
        fill(screen, every="7d")
        await pilot.press("ctrl+s")
        await pilot.pause(0.3)
        (request,) = added
        assert (request.every_s, request.cron, request.job) == (7 * 86400, None, None) and not sent(link)
        assert (request.study.models, request.study.trials, request.study.save_as) == (["nhits"], 6, "eu")
        assert any("re-tuning schedule 4 (eu-tune)" in str(n.message) for n in app._notifications)

    run_form(body)


def test_a_re_tuning_schedule_refused_for_its_saved_name_marks_that_field():
    async def body(app, pilot, link):
        message = "study.save_as: a re-tuning schedule saves each firing's best as a new version of a saved model"
        link.refuse("add_schedule", message, code="invalid_spec")
        screen = app.screen
        fill(screen, data=DATA)
        screen.query_one("#repeat", Select).value = "cron"
        await pilot.pause(0.2)
        fill(screen, cron="0 6 * * 1")
        await pilot.press("ctrl+s")
        await pilot.pause(0.3)
        assert "saves each firing's best" in problem(screen, "save_as") and app.screen is screen

    run_form(body)
