import pytest

from stratcast.daemon.engine.spec.config import TrainConfig
from stratcast.daemon.engine.spec.runspec import RunSpec, build_spec, spec_from_job, split_sets, train_defaults_note
from stratcast.daemon.zoo.models.mlp import MLPConfig
from stratcast.daemon.zoo.models.nbeats import NBEATSIConfig
from stratcast.shared.protocol import JobSpec


def test_set_items_are_routed_to_training_or_model_and_typed():
    train, params = split_sets("dlinear", ["max_steps=12", "learning_rate=3e-4", "moving_avg=7", "pad_start=true"])
    assert train == {"max_steps": 12, "learning_rate": 3e-4, "pad_start": True}
    assert params == {"moving_avg": 7}
    train, _ = split_sets("dlinear", ["quantiles=0.2,0.5,0.8"])
    assert train["quantiles"] == (0.2, 0.5, 0.8)


@pytest.mark.parametrize(
    ("item", "needle"),
    [("nonsense", "expected key=value"), ("warp=3", "unknown option"), ("max_steps=abc", "max_steps=abc")],
)
def test_bad_set_items_are_rejected_with_a_clear_message(item, needle):
    with pytest.raises(ValueError, match=needle):
        split_sets("dlinear", [item])


def test_spec_rejects_bad_values_before_the_run_starts():
    with pytest.raises(ValueError, match="holdout"):
        RunSpec(data="x", model="dlinear", out="o", holdout=60, train=TrainConfig(horizon=52))
    with pytest.raises(ValueError, match="moving_avg"):
        RunSpec(data="x", model="dlinear", out="o", model_params={"moving_avg": 0})
    with pytest.raises(KeyError, match="known models"):
        RunSpec(data="x", model="prophet", out="o")
    with pytest.raises(ValueError, match="learning_rate"):
        TrainConfig(learning_rate=-1.0)
    with pytest.raises(ValueError, match="scaler"):
        TrainConfig(scaler="minmax")


@pytest.mark.parametrize(
    ("items", "model", "needle"),
    [
        (["max_steps=abc"], "dlinear", "max_steps=abc: expected a whole number, got abc"),
        (["learning_rate=fast"], "dlinear", "learning_rate=fast: expected a number, got fast"),
        (["loss=nope"], "dlinear", "loss='nope' is not one of mse, mae, huber, quantile, gaussian, student-t, hurdle"),
        ([], "prophet", "unknown model 'prophet'; known models: "),
    ],
)
def test_a_bad_option_is_named_in_plain_words(items, model, needle):
    with pytest.raises((ValueError, KeyError)) as info:
        train, params = split_sets(model, items)
        RunSpec(data="x", model=model, out="o", train=TrainConfig(**train), model_params=params)
    message = str(info.value)
    assert needle in message, message
    assert not message.startswith(("'", '"')) and "[" not in message and "TrainConfig" not in message


def test_the_default_validation_shrinks_to_fit_a_208_period_history():
    cfg = TrainConfig(input_size=104, horizon=52)
    assert cfg.effective_val_size(208, holdout=52) == 51  # 104 input + 1 + 51 validation + 52 holdout
    assert cfg.effective_val_size(209, holdout=52) == 52  # the horizon when it fits
    assert cfg.effective_val_size(400, holdout=0) == 52


def test_the_default_validation_never_shrinks_below_a_quarter_of_the_horizon():
    cfg = TrainConfig(input_size=104, horizon=52)
    assert cfg.effective_val_size(160, holdout=52) == 13


def test_an_explicit_val_size_is_never_changed():
    assert TrainConfig(input_size=104, horizon=52, val_size=52).effective_val_size(208, holdout=52) == 52
    assert TrainConfig(input_size=104, horizon=52, val_size=0).effective_val_size(300, holdout=52) == 0


def test_a_spec_builds_its_model_config_from_the_model_defaults_and_its_overrides():
    spec = build_spec(data="x", model="mlp", out="o", sets=["hidden_size=64", "dropout=0.1", "max_steps=5"])
    assert spec.model_config() == MLPConfig(hidden_size=64, dropout=0.1)
    assert build_spec(data="x", model="nbeats-i", out="o").model_config() == NBEATSIConfig()


def test_a_model_trains_with_its_catalog_training_defaults_and_says_so():
    spec = build_spec(data="x", model="patchtst", out="o")
    assert spec.train.learning_rate == 1e-4
    assert train_defaults_note(spec) == "training defaults for patchtst: learning_rate=0.0001"
    other = build_spec(data="x", model="dlinear", out="o")
    assert other.train.learning_rate == TrainConfig().learning_rate
    assert train_defaults_note(other) is None


@pytest.mark.parametrize("item", ["learning_rate=0.003", "train.learning_rate=0.003"])
def test_a_users_set_wins_over_the_models_training_defaults(item):
    spec = build_spec(data="x", model="itransformer", out="o", sets=[item])
    assert spec.train.learning_rate == 0.003
    assert train_defaults_note(spec) is None


def test_a_daemon_job_gets_the_models_training_defaults_too():
    job = JobSpec(data="/d.parquet", model="patchtst", sets=["max_steps=5"])
    assert spec_from_job(job, "o", "cpu").train.learning_rate == 1e-4
