import asyncio
from typing import cast

import pytest
from textual.widgets import Input, Select, Static

from stratcast.shared.protocol import AddSchedule, CheckData, JobSpec, ListModels, Placement, Submit
from stratcast.tui.app import StratcastApp
from stratcast.tui.link import Link
from stratcast.tui.screens.main import MainScreen
from stratcast.tui.screens.new_run import NewRunScreen
from stratcast.tui.screens.schedules import SchedulesScreen
from stratcast.tui.widgets.form import Field
from tests.tui.fake_daemon import FakeLink, demo_models, frozen_clock, serve_models

DATA = "/data/eurusd.parquet"


def run_form(body, *, keys=("n",), size=(120, 36), models=None):
    """Open the form with ``keys`` from the main screen on a fake daemon that knows three models (or the
    ``list_models`` result ``models``); run ``body``."""
    link = serve_models(FakeLink())
    if models is not None:
        link.handlers["list_models"] = lambda _request: models
    link.handlers["submit"] = lambda request: {"run": {"id": 7}}
    link.handlers["add_schedule"] = lambda request: {"schedule": {"id": 3}}

    async def go():
        app = StratcastApp(cast("Link", link), clock=frozen_clock)  # FakeLink.state is a plain str
        async with app.run_test(size=size) as pilot:
            await pilot.pause()
            await pilot.press(*keys)
            await pilot.pause()
            assert isinstance(app.screen, NewRunScreen)
            await body(app, pilot)

    asyncio.run(go())


def fill(screen, **texts):
    for key, text in texts.items():
        screen.query_one(f"#{key}").value = text


def sent(app, kind):
    return [c for c in app.link.calls if isinstance(c, kind)]


def problem(screen, key) -> str:
    return str(screen.query_one(f"#field-{key} .field-problem", Static).render())


def notices(app) -> list[str]:
    return [n.message for n in app._notifications]


def test_the_model_select_lists_the_daemons_models_starts_on_the_demos_and_shows_each_ones_parameter_defaults():
    async def body(app, pilot):
        screen = app.screen
        select = screen.query_one("#model", Select)
        assert [value for _, value in select._options if value is not Select.NULL] == [
            "dlinear",
            "nhits",
            "itransformer-x",
        ]
        assert select.value == "nhits"  # what `stratcastd demo` trains by default
        assert screen.query_one("#param-mlp_units", Input).value == "512,512"
        assert screen.query_one("#param-dropout", Input).value == "0.0"
        assert screen.query_one("#param-activation", Select).value == "relu"
        select.value = "dlinear"
        await pilot.pause()
        assert not screen.query("#param-mlp_units")
        assert screen.query_one("#param-moving_avg", Input).value == "25"
        assert not screen.query("#train-learning_rate")  # mounted when first shown
        screen.query_one("#train-box").collapsed = False
        await pilot.pause()
        assert screen.query_one("#train-learning_rate", Input).value == "0.001"
        assert screen.query_one("#horizon", Input).placeholder == "52 (default)"
        assert not screen.query("#train-horizon")  # a job field, not a --set item
        assert len(sent(app, ListModels)) == 1

    run_form(body)


def test_a_bad_data_check_shows_the_daemons_message_under_the_data_field_and_submit_is_not_sent():
    message = "/data/eurusd.parquet: column 'profit' has non-numbers in rows 17, 18 and 40 (e.g. 'n/a')"

    async def body(app, pilot):
        app.link.refuse("check_data", message, code="invalid_spec")
        screen = app.screen
        await pilot.press(*DATA, "ctrl+s")
        await pilot.pause()
        assert screen.query_one("#data", Input).value == DATA  # typed: the q of parquet is no quit key here
        assert "rows 17, 18 and 40" in problem(screen, "data")
        assert screen.query_one("#field-data", Field).has_class("-invalid")
        assert len(sent(app, CheckData)) == 1
        assert not sent(app, Submit)
        assert app.screen is screen
        await pilot.press("ctrl+s")  # still refused: the check is made again and fails again
        await pilot.pause()
        assert len(sent(app, CheckData)) == 2
        assert not sent(app, Submit)

    run_form(body)


def test_a_good_check_then_ctrl_s_submits_the_job_with_only_the_changed_parameters():
    async def body(app, pilot):
        screen = app.screen
        screen.query_one("#model", Select).value = "nhits"
        screen.query_one("#train-box").collapsed = False
        await pilot.pause()
        fill(screen, data=DATA, horizon="26", holdout="13", name="eu", priority="5", gpu="1")
        fill(screen, **{"param-n_blocks": "1", "param-mlp_units": "256, 256", "param-dropout": "0.2"})
        fill(screen, **{"train-learning_rate": "1e-3", "train-max_steps": "500"})
        await pilot.press("ctrl+t")
        await pilot.pause()
        assert "1,234 strategies" in str(screen.query_one("#check-result", Static).render())
        await pilot.press("ctrl+s")
        await pilot.pause()
        (submit,) = sent(app, Submit)
        assert submit.job == JobSpec(
            data=DATA,
            model="nhits",
            horizon=26,
            holdout=13,
            sets=["mlp_units=256,256", "dropout=0.2", "max_steps=500"],
        )
        assert submit.placement == Placement(name="eu", priority=5, gpu=1)
        assert len(sent(app, CheckData)) == 1  # the job checked is the job sent: no second check
        assert isinstance(app.screen, MainScreen)
        assert "queued run 7" in notices(app)

    run_form(body)


@pytest.mark.parametrize(
    ("texts", "cron", "every_s", "zone"),
    [
        ({"cron": "0 6 * * 1", "timezone": "Europe/Zurich"}, "0 6 * * 1", None, "Europe/Zurich"),
        ({"repeat": "every", "every": "12h"}, None, 43200, "UTC"),
    ],
)
def test_with_a_timetable_add_schedule_is_sent_instead_of_submit(texts, cron, every_s, zone):
    async def body(app, pilot):
        screen = app.screen
        assert screen.query_one("#repeat", Select).value == "cron"  # opened from the schedules screen
        if "repeat" in texts:
            screen.query_one("#repeat", Select).value = texts.pop("repeat")
            await pilot.pause()
        fill(screen, data=DATA, name="weekly", **texts)
        await pilot.press("ctrl+s")
        await pilot.pause()
        assert not sent(app, Submit)
        (added,) = sent(app, AddSchedule)
        assert added == AddSchedule(
            job=JobSpec(data=DATA, model="nhits"),
            name="weekly",
            cron=cron,
            every_s=every_s,
            timezone=zone,
            placement=Placement(),
        )
        assert isinstance(app.screen, SchedulesScreen)
        assert "added schedule 3" in notices(app)

    run_form(body, keys=("c", "a"))


def test_a_bad_cron_expression_is_refused_before_anything_is_sent():
    async def body(app, pilot):
        screen = app.screen
        screen.query_one("#repeat", Select).value = "cron"
        await pilot.pause()
        fill(screen, data=DATA, cron="0 25 * * *")
        await pilot.press("ctrl+s")
        await pilot.pause()
        assert "hour field '25': 25 is not between 0 and 23" in problem(screen, "cron")
        assert screen.focused is screen.query_one("#cron")
        assert [type(c) for c in app.link.calls] == [ListModels]

    run_form(body)


def test_every_field_is_checked_locally_and_all_problems_are_shown_at_once():
    async def body(app, pilot):
        screen = app.screen
        screen.query_one("#model", Select).value = "itransformer-x"
        screen.query_one("#mode", Select).value = "per-strategy"
        screen.query_one("#train-box").collapsed = False
        await pilot.pause()
        fill(screen, data="data/eurusd.parquet", priority="high", gpu="-1", after="3, x")
        fill(screen, **{"param-d_model": "0", "train-learning_rate": "fast"})
        await pilot.press("ctrl+s")
        await pilot.pause()
        assert "not absolute" in problem(screen, "data")
        assert "whole number" in problem(screen, "priority")
        assert "0 or more" in problem(screen, "gpu")
        assert "run ids" in problem(screen, "after")
        assert "batch mode only" in problem(screen, "mode")
        assert "expected 1 to 4096, got 0" in problem(screen, "param-d_model")
        assert "expected a number" in problem(screen, "train-learning_rate")
        assert [type(c) for c in app.link.calls] == [ListModels]

    run_form(body)


def test_escape_leaves_without_sending_and_the_form_fits_80_by_24():
    async def body(app, pilot):
        form = app.screen.query_one("#form")
        assert form.size.height <= 21 and form.max_scroll_y > 0  # a scrolling form between title, hint and footer
        await pilot.press("escape")
        await pilot.pause()
        assert isinstance(app.screen, MainScreen)
        assert [type(c) for c in app.link.calls] == [ListModels]

    run_form(body, size=(80, 24))


async def show_training_options(screen, pilot, model):
    screen.query_one("#model", Select).value = model
    screen.query_one("#train-box").collapsed = False
    await pilot.pause()


def test_the_training_options_show_the_chosen_models_own_defaults():
    async def body(app, pilot):
        screen = app.screen
        await show_training_options(screen, pilot, "itransformer-x")  # at 1e-4: its train_defaults
        assert screen.query_one("#train-learning_rate", Input).value == "0.0001"
        assert "(default 0.0001," in screen.query_one("#field-train-learning_rate", Field).help
        assert screen.query_one("#train-max_steps", Input).value == "1000"  # not in its train_defaults

    run_form(body)


def test_changing_the_model_updates_untouched_training_fields_and_keeps_the_ones_typed_in():
    async def body(app, pilot):
        screen = app.screen
        await show_training_options(screen, pilot, "nhits")
        fill(screen, **{"train-max_steps": "500"})
        screen.query_one("#model", Select).value = "itransformer-x"
        await pilot.pause()
        assert screen.query_one("#train-learning_rate", Input).value == "0.0001"
        assert screen.query_one("#train-max_steps", Input).value == "500"
        screen.query_one("#model", Select).value = "dlinear"
        await pilot.pause()
        assert screen.query_one("#train-learning_rate", Input).value == "0.001"
        assert "(default 0.001," in screen.query_one("#field-train-learning_rate", Field).help
        fill(screen, **{"train-learning_rate": "0.01"})
        screen.query_one("#model", Select).value = "itransformer-x"
        await pilot.pause()
        assert screen.query_one("#train-learning_rate", Input).value == "0.01"

    run_form(body)


@pytest.mark.parametrize(("text", "sets"), [("0.001", ["learning_rate=0.001"]), ("1e-4", [])])
def test_a_training_option_is_sent_when_it_differs_from_what_the_chosen_model_would_train_with(text, sets):
    async def body(app, pilot):
        screen = app.screen
        await show_training_options(screen, pilot, "itransformer-x")
        fill(screen, data=DATA, **{"train-learning_rate": text})  # 0.001: the trainer's default, not itransformer-x's
        await pilot.press("ctrl+s")
        await pilot.pause()
        (submit,) = sent(app, Submit)
        assert submit.job == JobSpec(data=DATA, model="itransformer-x", sets=sets)

    run_form(body)


def test_an_option_the_panel_chooses_for_the_model_shows_empty_and_is_sent_only_when_typed_in():
    models = demo_models()
    batch = {"name": "batch_size", "type": "int", "default": 1024, "lo": 1, "hi": 1_000_000, "choices": None}
    models["train_options"].append(batch | {"help": "windows a step"})
    softs = {**models["models"][1], "name": "softs", "params": [], "from_panel": ["batch_size"]}
    models["models"].append(softs)

    async def body(app, pilot):
        screen = app.screen
        await show_training_options(screen, pilot, "nhits")
        field = screen.query_one("#train-batch_size", Input)
        assert (field.value, field.placeholder) == ("1024", "")
        screen.query_one("#model", Select).value = "softs"
        await pilot.pause()
        assert (field.value, field.placeholder) == ("", "from the panel")
        assert "(default from the panel, 1..1e+06)" in screen.query_one("#field-train-batch_size", Field).help
        fill(screen, data=DATA)
        await pilot.press("ctrl+s")
        await pilot.pause()
        assert sent(app, Submit)[-1].job == JobSpec(data=DATA, model="softs")  # the daemon chooses
        await pilot.press("n")  # the form again, from the main screen
        await pilot.pause()
        screen = app.screen
        await show_training_options(screen, pilot, "softs")
        fill(screen, data=DATA, **{"train-batch_size": "1024"})  # the declared default, typed in: the job's choice
        await pilot.press("ctrl+s")
        await pilot.pause()
        assert sent(app, Submit)[-1].job == JobSpec(data=DATA, model="softs", sets=["batch_size=1024"])

    run_form(body, models=models)


def test_a_choice_the_panel_makes_for_the_model_shows_a_blank_select_that_follows_the_model():
    models = demo_models()
    for m in models["models"]:
        m["from_panel"] = ["loss"]
    tft = {**models["models"][1], "name": "tft", "params": [], "train_defaults": {"loss": "quantile"}, "from_panel": []}
    models["models"].append(tft)

    async def body(app, pilot):
        screen = app.screen
        await show_training_options(screen, pilot, "nhits")
        loss = screen.query_one("#train-loss", Select)
        assert loss.value is Select.NULL and loss.is_blank()
        assert "(default from the panel, mse|mae|huber|quantile)" in screen.query_one("#field-train-loss", Field).help
        screen.query_one("#model", Select).value = "tft"  # its catalog sets the loss: no blank
        await pilot.pause()
        loss = screen.query_one("#train-loss", Select)
        assert loss.value == "quantile"
        assert "(default quantile," in screen.query_one("#field-train-loss", Field).help
        screen.query_one("#model", Select).value = "nhits"
        await pilot.pause()
        assert screen.query_one("#train-loss", Select).value is Select.NULL
        fill(screen, data=DATA)
        await pilot.press("ctrl+s")
        await pilot.pause()
        assert sent(app, Submit)[-1].job == JobSpec(data=DATA, model="nhits")  # the daemon chooses
        await pilot.press("n")
        await pilot.pause()
        screen = app.screen
        await show_training_options(screen, pilot, "nhits")
        fill(screen, data=DATA, **{"train-loss": "mse"})  # the declared default, chosen: the job's choice
        screen.query_one("#model", Select).value = "tft"  # a choice made stays
        await pilot.pause()
        assert screen.query_one("#train-loss", Select).value == "mse"
        keys = [f.key for f in screen.query_one("#train").query(Field)]
        assert keys.index("train-loss") == [p["name"] for p in models["train_options"][2:]].index("loss")
        await pilot.press("ctrl+s")
        await pilot.pause()
        assert sent(app, Submit)[-1].job == JobSpec(data=DATA, model="tft", sets=["loss=mse"])

    run_form(body, models=models)
