"""A study's parameter importances (PED-ANOVA) and the name its kept best is saved under, without a daemon."""

from __future__ import annotations

from collections.abc import Callable

import optuna
import pytest

from stratcast.daemon.handlers.common import InvalidSpec
from stratcast.daemon.studies import importances, saved_name
from stratcast.shared.protocol import IMPORTANCE_MIN_TRIALS, JobSpec, StudySpec


def told(study: optuna.Study, values: list[float], draw: Callable[[optuna.Trial], object]) -> None:
    for value in values:
        trial = study.ask()
        draw(trial)
        study.tell(trial, value)


def complete(study: optuna.Study) -> list[optuna.trial.FrozenTrial]:
    return study.get_trials(states=(optuna.trial.TrialState.COMPLETE,))


def test_importances_cover_a_conditional_space_of_several_models_and_follow_the_direction():
    def draw(trial: optuna.Trial) -> None:  # as Space.sample draws two models: per-model params on some trials
        model = trial.suggest_categorical("model", ["mlp", "nhits"])
        trial.suggest_float("learning_rate", 1e-4, 1e-1, log=True)
        if model == "mlp":
            trial.suggest_float("mlp.dropout", 0.0, 0.5)
        else:
            trial.suggest_categorical("nhits.mlp_units", ["8,8", "16,16"])

    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=1))
    for n in range(40):
        if n == IMPORTANCE_MIN_TRIALS - 1:
            assert importances(study, complete(study)) == {}  # too few trials
        trial = study.ask()
        draw(trial)
        study.tell(trial, trial.params["learning_rate"] * 100)  # only the learning rate matters
    found = importances(study, complete(study))
    assert set(found) == {"model", "learning_rate", "mlp.dropout", "nhits.mlp_units"}
    assert sum(found.values()) == pytest.approx(1.0)
    assert max(found, key=found.__getitem__) == "learning_rate"
    flipped = optuna.create_study(direction="maximize")  # the best is the highest: same trials, same ranking
    for t in complete(study):
        flipped.add_trial(optuna.trial.create_trial(params=t.params, distributions=t.distributions, value=-t.values[0]))
    found = importances(flipped, complete(flipped))
    assert max(found, key=found.__getitem__) == "learning_rate"


def test_importances_are_empty_when_no_parameter_varied_and_use_the_first_objective():
    same = optuna.create_study()
    told(same, [1.0, 2.0, 3.0, 4.0, 5.0, 6.0], lambda t: t.suggest_categorical("loss", ["mse"]))
    assert importances(same, complete(same)) == {}
    two = optuna.create_study(directions=["minimize", "minimize"], sampler=optuna.samplers.RandomSampler(seed=2))
    for _ in range(12):
        trial = two.ask()
        a, b = trial.suggest_float("a", 0, 1), trial.suggest_float("b", 0, 1)
        two.tell(trial, [a, b])
    found = importances(two, complete(two))
    assert found["a"] > found["b"]


def test_the_kept_best_is_saved_under_a_valid_name():
    spec = StudySpec(models=["mlp"], job=JobSpec(data="/d.parquet", model="mlp"))
    assert saved_name(spec, "stratcast-study-3") == "stratcast-study-3"
    assert saved_name(spec, "my study", "given") == "given"
    with pytest.raises(InvalidSpec, match="save_as: the study's name 'my study'"):
        saved_name(spec, "my study")
