import pytest
import torch

from stratcast.daemon.engine.data.panel import DataError
from stratcast.daemon.engine.data.synthetic import make_strategy_panel
from stratcast.daemon.engine.run.build import prepare
from stratcast.daemon.engine.run.job import run_job
from stratcast.daemon.engine.spec.config import TrainConfig
from stratcast.daemon.engine.spec.runspec import RunSpec, build_spec


def test_periods_before_a_series_start_stay_zero_after_a_centring_scaler(tmp_path):
    frame = make_strategy_panel(4, 60, seed=0)
    late = frame["No."] == 2
    frame = frame[~late | (frame["week"] >= frame["week"].min() + (frame["week"].max() - frame["week"].min()) / 4)]
    path = tmp_path / "p.parquet"
    frame.to_parquet(path, index=False)
    train = TrainConfig(input_size=8, horizon=4, scaler="standard", pad_start=True)
    prep = prepare(RunSpec(data=str(path), model="dlinear", out="-", train=train), torch.device("cpu"), lambda m: None)
    row = list(prep.panel.ids).index(2)
    first = int(prep.start[row])
    assert first > 0 and float(prep.scaler.loc[row]) != 0.0
    scaled = prep.windows.padded[row, train.input_size : train.input_size + prep.panel.n_times]
    assert torch.all(scaled[:first] == 0) and torch.any(scaled[first:] != 0)


def write_panel_file(tmp_path, n_series: int, n_times: int):
    path = tmp_path / "p.parquet"
    make_strategy_panel(n_series, n_times, seed=0).to_parquet(path, index=False)
    return str(path)


def test_a_history_one_period_short_of_the_horizon_validates_on_one_period_less_and_says_why(tmp_path):
    lines: list[str] = []
    train = TrainConfig(input_size=8, horizon=4)
    spec = RunSpec(data=write_panel_file(tmp_path, 3, 16), model="dlinear", out="-", holdout=4, train=train)
    prep = prepare(spec, torch.device("cpu"), lines.append)
    assert (prep.split.train_end.tolist(), prep.split.val_end.tolist()) == ([9] * 3, [12] * 3)
    assert prep.panel.n_series == 3
    assert (
        "validation: last 3 periods (horizon 4 does not fit: 16 periods = 8 input + 1 + 3 validation + 4 holdout)"
        in lines
    )


def test_a_history_too_short_for_any_validation_names_every_lever_with_its_numbers(tmp_path):
    train = TrainConfig(input_size=8, horizon=8)
    spec = RunSpec(data=write_panel_file(tmp_path, 3, 16), model="dlinear", out="-", holdout=8, train=train)
    with pytest.raises(DataError) as info:
        prepare(spec, torch.device("cpu"), lambda m: None)
    message = str(info.value)
    for needle in (
        "needs 19 periods (input_size 8 + 1 + val_size 2 + holdout 8)",
        "has 16",
        "lower --input-size, --horizon or --holdout, or --set val_size=N",
    ):
        assert needle in message, message


def test_a_run_logs_the_training_defaults_its_model_brings(tmp_path):
    lines: list[str] = []
    sets = ["max_steps=2", "batch_size=8", *(f"{k}={v}" for k, v in TINY_PATCHTST.items())]
    spec = build_spec(
        data=write_panel_file(tmp_path, 3, 30), model="patchtst", out=str(tmp_path / "run"), device="cpu",
        horizon=4, input_size=8, sets=sets,
    )  # fmt: skip
    run_job(spec, log=lines.append)
    assert "training defaults for patchtst: learning_rate=0.0001" in lines


TINY_PATCHTST = {"patch_len": 4, "stride": 2, "d_model": 8, "n_heads": 2, "d_ff": 8, "n_layers": 1}
