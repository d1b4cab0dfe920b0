"""Search spaces: declared beside validity ranges, always inside them, and described as plain data."""

from __future__ import annotations

import dataclasses
import json

import pytest

from stratcast.daemon.engine.spec.config import TrainConfig, describe_train_config
from stratcast.daemon.zoo.catalog import CATALOG, describe_models
from stratcast.daemon.zoo.contract import param, value_problem
from stratcast.daemon.zoo.search import Search, among, floats, ints

CONFIGS = [TrainConfig, *(entry.config_cls for entry in CATALOG.values())]


@pytest.mark.parametrize(
    ("search", "needle"),
    [
        (ints(0, 8), "below its minimum 1"),
        (ints(1, 64), "above its maximum 32"),
        (among(2, 4, 40), "above its maximum 32"),
        (floats(1.0, 8.0), "does not fit"),
    ],
)
def test_a_search_space_outside_the_valid_range_is_refused_where_it_is_declared(search, needle):
    with pytest.raises(ValueError, match=needle):
        param(4, lo=1, hi=32, help="blocks", search=search)


def test_a_categorical_search_space_must_pick_among_the_valid_choices():
    with pytest.raises(ValueError, match="not one of relu, gelu"):
        param("relu", choices=("relu", "gelu"), help="nonlinearity", search=among("relu", "swish"))


@pytest.mark.parametrize(
    "make",
    [
        lambda: floats(0.0, 1.0, log=True),
        lambda: floats(1e-4, 1e-2, log=True, step=1e-4),
        lambda: ints(8, 1),
        lambda: ints(1, 8, step=3),
        lambda: Search(kind="float", low=0.0, high=1.0, choices=(0.5,)),
        lambda: Search(kind="categorical", choices=()),
        lambda: Search(kind="uniform", low=0.0, high=1.0),
    ],
)
def test_an_inconsistent_search_space_is_refused(make):
    with pytest.raises(ValueError):
        make()


@pytest.mark.parametrize("config_cls", CONFIGS, ids=lambda c: c.__name__)
def test_every_declared_search_space_lies_within_its_field_and_matches_its_type(config_cls):
    for field in dataclasses.fields(config_cls):
        search = field.metadata.get("search")
        if search is None:
            continue
        meta = field.metadata
        for value in search.values():
            assert value_problem(field.name, value, meta["lo"], meta["hi"], meta["choices"]) is None
            assert search.kind != "categorical" or type(value) is type(field.default), field.name


@pytest.mark.parametrize("name", list(CATALOG))
def test_every_model_offers_a_search_space_for_its_architecture(name):
    fields = dataclasses.fields(CATALOG[name].config_cls)
    searched = [f.name for f in fields if f.metadata.get("search") is not None]
    assert 2 * len(searched) >= len(fields), searched  # stack layouts and unused options may be left out


def test_the_training_options_that_shape_learning_have_search_spaces():
    described = {p["name"]: p["search"] for p in describe_train_config()}
    assert described["learning_rate"] == {
        "kind": "float",
        "low": 1e-4,
        "high": 1e-2,
        "log": True,
        "step": None,
        "choices": None,
    }
    assert described["batch_size"]["kind"] == "categorical"
    assert described["weight_decay"] is not None
    assert described["seed"] is None and described["horizon"] is None  # what the user decides, not a tuner


def test_describe_models_gives_each_parameter_its_search_space_and_each_model_its_training_defaults():
    described = {m["name"]: m for m in json.loads(json.dumps(describe_models()))}
    nhits = {p["name"]: p["search"] for p in described["nhits"]["params"]}
    assert nhits["activation"] == {
        "kind": "categorical",
        "low": None,
        "high": None,
        "log": False,
        "step": None,
        "choices": ["relu", "gelu", "silu", "tanh"],
    }
    assert [512, 512] in nhits["mlp_units"]["choices"]  # tuple choices as lists
    assert described["patchtst"]["train_defaults"] == {"learning_rate": 1e-4}
    assert described["itransformer"]["train_defaults"] == {"learning_rate": 1e-4}
    assert described["dlinear"]["train_defaults"] == {}
    # what the panel chooses when a job leaves it unset: what the catalog sets is not the panel's
    assert described["dlinear"]["from_panel"] == ["scaler", "loss"]
    assert described["tft"]["from_panel"] == ["scaler"]  # its quantile loss is its own
    assert described["softs"]["from_panel"] == ["scaler", "loss", "batch_size"]
    assert described["mtgnn"]["from_panel"] == ["scaler", "loss"]  # its 8 windows of 500 series are its own


@pytest.mark.parametrize("name", list(CATALOG))
def test_training_defaults_name_training_options_with_valid_values(name):
    defaults = dict(CATALOG[name].train_defaults)
    TrainConfig(**defaults)  # an unknown name or a bad value raises
