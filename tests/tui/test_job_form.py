import dataclasses

import pytest

from stratcast.shared.protocol import JobSpec, Placement
from stratcast.tui.job_form import FormProblems, ModelInfo, Param, Timetable, read_form, read_models
from tests.tui.fake_daemon import demo_models

MODELS, TRAIN = read_models(demo_models())
BASE = {"data": "/d.parquet", "priority": "0", "holdout": "0", "repeat": "none"}


def param(name, kind, default, **fields):
    return Param.from_wire({"name": name, "type": kind, "default": default, **fields})


def test_the_daemons_list_reads_as_models_with_typed_parameters():
    assert list(MODELS) == ["dlinear", "nhits", "itransformer-x"]
    assert not MODELS["itransformer-x"].stackable
    assert MODELS["itransformer-x"].good_for == "what itransformer-x does best"
    mlp = next(p for p in MODELS["nhits"].params if p.name == "mlp_units")
    assert (mlp.default_text, mlp.parse("(256, 128)")) == ("512,512", (256, 128))
    assert next(p for p in TRAIN if p.name == "pad_start").choices == (False, True)


@pytest.mark.parametrize(
    ("p", "text", "changed"),
    [
        (param("lr", "float", 0.001), "1e-3", False),
        (param("lr", "float", 0.001), "0.002", True),
        (param("units", "tuple[int, ...]", [512, 512]), "512, 512", False),
        (param("units", "tuple[int, ...]", [512, 512]), "512", True),
        (param("pad", "bool", False), "no", False),
        (param("pad", "bool", False), "true", True),
        (param("act", "str", "relu", choices=["relu", "gelu"]), "relu", False),
    ],
)
def test_a_parameter_is_changed_only_when_its_value_differs_from_the_default(p, text, changed):
    assert p.changed(text) is changed


@pytest.mark.parametrize(
    ("p", "text", "words"),
    [
        (param("n", "int", 1, lo=1, hi=16), "17", "expected 1 to 16, got 17"),
        (param("n", "int", 1), "1.5", "whole number"),
        (param("q", "tuple[float, ...]", [0.5], lo=0.0, hi=1.0), "0.1, 1.5", "expected 0 to 1, got 1.5"),
        (param("act", "str", "relu", choices=["relu", "gelu"]), "swish", "one of relu|gelu"),
        (param("pad", "bool", False), "maybe", "true or false"),
        (param("lr", "float", 0.1), "nan", "finite"),
    ],
)
def test_bad_parameter_values_are_refused_with_the_reason(p, text, words):
    with pytest.raises(ValueError, match=words):
        p.parse(text)


def test_only_changed_parameters_are_sent_and_a_name_in_both_lists_is_qualified():
    model = ModelInfo("m", params=(param("dropout", "float", 0.0), param("seed", "int", 1)))
    train = [param("seed", "int", 0), param("max_steps", "int", 1000)]
    texts = {**BASE, "param-dropout": "0.0", "param-seed": "2", "train-seed": "3", "train-max_steps": "1000"}
    job, placement, timetable = read_form(texts, model, train)
    assert job == JobSpec(data="/d.parquet", model="m", sets=["model.seed=2", "train.seed=3"])
    assert (placement, timetable) == (Placement(), None)


def test_problems_of_the_job_the_placement_and_the_timetable_come_together():
    texts = {**BASE, "data": "d.parquet", "priority": "2000000", "repeat": "every", "every": "soon"}
    with pytest.raises(FormProblems) as caught:
        read_form(texts, None, TRAIN)
    assert set(caught.value.problems) == {"data", "model", "priority", "every"}


def test_a_cron_timetable_carries_its_time_zone():
    texts = {**BASE, "repeat": "cron", "cron": " 0  6 * * 1 ", "timezone": "Asia/Tokyo"}
    assert read_form(texts, MODELS["dlinear"], TRAIN)[2] == Timetable(cron="0 6 * * 1", timezone="Asia/Tokyo")


def test_a_models_own_training_defaults_replace_the_options_and_decide_what_is_sent():
    itx = MODELS["itransformer-x"]
    assert {p.name: p.default for p in itx.train_options(TRAIN)}["learning_rate"] == 0.0001
    assert {p.name: p.default for p in MODELS["dlinear"].train_options(TRAIN)}["learning_rate"] == 0.001
    texts = {**BASE, "train-learning_rate": "0.001", "train-max_steps": "1000"}
    assert read_form(texts, itx, TRAIN)[0].sets == ["learning_rate=0.001"]
    assert read_form(texts, MODELS["dlinear"], TRAIN)[0].sets == []


def test_an_option_the_panel_chooses_is_empty_by_default_and_typed_text_is_checked():
    softs = dataclasses.replace(MODELS["nhits"], name="softs", from_panel=("max_steps",))
    steps = next(p for p in softs.train_options(TRAIN) if p.name == "max_steps")
    assert (steps.default_text, steps.changed(""), steps.changed(" 1000 ")) == ("", False, True)
    with pytest.raises(ValueError):
        steps.changed("many")
    assert read_form({**BASE, "train-max_steps": ""}, softs, TRAIN)[0].sets == []
    assert read_form({**BASE, "train-max_steps": "1000"}, softs, TRAIN)[0].sets == ["max_steps=1000"]


def test_gpus_per_run_in_the_form_asks_for_a_data_parallel_run():
    assert read_form({**BASE, "gpus": "4"}, MODELS["dlinear"], TRAIN)[1] == Placement(gpus=4)
    assert read_form({**BASE, "gpus": ""}, MODELS["dlinear"], TRAIN)[1] == Placement()
    with pytest.raises(FormProblems) as caught:
        read_form({**BASE, "gpus": "0"}, MODELS["dlinear"], TRAIN)
    assert set(caught.value.problems) == {"gpus"}
