"""The study's search space: from the catalog, conditional over several models, with overrides checked."""

import json

import optuna
import pytest

from stratcast.daemon.engine.study.space import MODEL_PARAM, SpaceError, build_space, load_overrides
from stratcast.daemon.zoo.models.nhits import NHITSConfig


def keys(space, model):
    return {f.key for f in (*space.train, *space.per_model[model]) if f.search is not None}


def sampled(space, seed, trials):
    """Each trial of a random-sampler study with what ``space`` drew for it; told 0.0 once the caller has it."""
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=seed))
    for _ in range(trials):
        trial = study.ask()
        yield trial, *space.sample(trial)
        study.tell(trial, 0.0)


def test_nhits_space_holds_its_searched_fields_and_the_training_options():
    space = build_space(["nhits"])
    found = keys(space, "nhits")
    assert {"nhits.mlp_units", "nhits.n_blocks", "nhits.dropout", "learning_rate", "batch_size"} <= found
    assert "input_size" not in found and "nhits.n_stacks" not in {f.key for f in space.per_model["nhits"]}


def test_fixed_set_items_are_not_searched():
    space = build_space(["nhits"], fixed=["learning_rate=0.01", "nhits.dropout=0.1", "model.n_blocks=2"])
    found = keys(space, "nhits")
    assert not {"learning_rate", "nhits.dropout", "nhits.n_blocks"} & found


def test_two_models_draw_only_the_chosen_models_prefixed_fields():
    seen = set()
    for trial, model, _, sets in sampled(build_space(["nhits", "dlinear"]), seed=1, trials=12):
        seen.add(model)
        assert trial.params[MODEL_PARAM] == model
        other = "dlinear" if model == "nhits" else "nhits"
        assert not any(k.startswith(f"{other}.") for k in trial.params)
        assert any(k.startswith(f"{model}.") for k in trial.params)
        assert all(s.startswith(("train.", "model.")) for s in sets)
    assert seen == {"nhits", "dlinear"}


def test_tuple_choices_are_drawn_as_text_and_decoded_for_the_run():
    space = build_space(["nhits"])
    trial = optuna.create_study().ask()
    _, values, sets = space.sample(trial)
    units = values["nhits.mlp_units"]
    assert isinstance(units, tuple) and isinstance(trial.params["nhits.mlp_units"], str)
    assert f"model.mlp_units={','.join(map(str, units))}" in sets


def test_overrides_replace_fix_and_remove(tmp_path):
    path = tmp_path / "space.toml"
    path.write_text(
        "[train]\n"
        "learning_rate = { low = 0.0005, high = 0.002, log = true }\n"
        "batch_size = 64\n"
        "input_size = { choices = [8, 12] }\n"
        "[nhits]\n"
        "mlp_units = { choices = [[32, 32], [64, 64]] }\n"
        "dropout = { search = false }\n"
    )
    space = build_space(["nhits"], overrides=load_overrides(path))
    by_key = {f.key: f for f in (*space.train, *space.per_model["nhits"])}
    searched = {k: f.search for k, f in by_key.items() if f.search is not None}
    assert (searched["learning_rate"].low, searched["learning_rate"].high) == (0.0005, 0.002)
    assert by_key["batch_size"].search is None and by_key["batch_size"].fixed == 64
    assert searched["nhits.mlp_units"].choices == ((32, 32), (64, 64))
    assert "nhits.dropout" not in by_key
    assert searched["input_size"].choices == (8, 12)  # a field the catalog does not search
    trial = optuna.create_study().ask()
    _, values, sets = space.sample(trial)
    assert "train.batch_size=64" in sets and values["nhits.mlp_units"] in ((32, 32), (64, 64))
    assert 0.0005 <= values["learning_rate"] <= 0.002


@pytest.mark.parametrize(
    ("overrides", "named"),
    [
        ({"nhits": {"dropout": {"low": 0.0, "high": 0.95}}}, ["nhits.dropout", "0.95", "0.9"]),
        ({"nhits": {"activation": {"choices": ["relu", "swish"]}}}, ["nhits.activation", "swish", "gelu"]),
        ({"train": {"batch_size": 0}}, ["train.batch_size", "0", "1"]),
        ({"train": {"learning_rate": {"low": 0.1, "high": 0.01}}}, ["train.learning_rate", "low < high"]),
        ({"nhits": {"n_blocks": {"low": 1.0, "high": 2.5}}}, ["nhits.n_blocks", "whole numbers"]),
        ({"nhits": {"no_such": 1}}, ["no_such", "mlp_units"]),
        ({"tft": {"dropout": 0.1}}, ["tft", "nhits"]),
    ],
)
def test_an_invalid_override_is_refused_naming_the_field_and_value(overrides, named):
    with pytest.raises(SpaceError) as caught:
        build_space(["nhits"], overrides=overrides)
    for text in named:
        assert text in str(caught.value)


def test_json_overrides_read_like_toml(tmp_path):
    path = tmp_path / "space.json"
    path.write_text(json.dumps({"nhits": {"mlp_units": [64, 64]}}))
    space = build_space(["nhits"], overrides=load_overrides(path))
    fixed = next(f for f in space.per_model["nhits"] if f.name == "mlp_units")
    assert fixed.fixed == (64, 64) and NHITSConfig(mlp_units=fixed.fixed).mlp_units == (64, 64)


def test_options_that_only_matter_for_another_options_value_are_drawn_only_then():
    losses = set()
    for trial, _, values, _ in sampled(build_space(["mlp"]), seed=3, trials=16):
        losses.add(values["loss"])
        assert ("huber_delta" in trial.params) == (values["loss"] == "huber")
        assert ("warmup_steps" in trial.params) == (values["lr_schedule"] != "onecycle")
    assert losses == {"mse", "huber"}


def test_a_multivariate_model_keeps_its_batch_default_unless_an_override_gives_a_space(tmp_path):
    # its windows hold every series: the declared 256-2,048 windows of one series would be 1.5M-12M series-windows
    assert "batch_size" not in keys(build_space(["softs", "mtgnn"]), "softs")
    seen = set()
    for trial, model, _, sets in sampled(build_space(["nhits", "softs"]), seed=5, trials=12):
        seen.add(model)
        assert ("batch_size" in trial.params) == (model == "nhits")
        assert any(s.startswith("train.batch_size=") for s in sets) == (model == "nhits")
    assert seen == {"nhits", "softs"}
    path = tmp_path / "space.json"
    path.write_text(json.dumps({"train": {"batch_size": {"choices": [2, 4, 8]}}}))
    trial = optuna.create_study().ask()
    _, values, _ = build_space(["softs"], overrides=load_overrides(path)).sample(trial)
    assert values["batch_size"] in {2, 4, 8}
