"""Scaler and loss chosen from the panel when the user leaves them at their defaults."""

import dataclasses
import json

import numpy as np
import pandas as pd
import pytest
import torch

from stratcast.daemon.engine.data.load import load_panel
from stratcast.daemon.engine.data.synthetic import make_strategy_panel
from stratcast.daemon.engine.run.build import prepare
from stratcast.daemon.engine.run.job import run_job
from stratcast.daemon.engine.spec.runspec import build_spec, choose_from_data
from stratcast.daemon.engine.spec.specfile import read_spec, write_spec
from stratcast.daemon.zoo.catalog import CATALOG
from tests.daemon.zoo.toys import OWN_LOSS


def level_frame(n_series: int = 4, n_times: int = 40) -> pd.DataFrame:
    """An M4-like long frame: positive levels around 1,000 that move by about 1% a period, series of own lengths."""
    rng = np.random.default_rng(0)
    rows = []
    for i in range(n_series):
        length = n_times - 3 * i
        y = 1000 * (1 + i) * np.exp(np.cumsum(rng.normal(0, 0.01, length)))
        rows.append(pd.DataFrame({"unique_id": f"W{i + 1}", "t": np.arange(length), "y": y}))
    return pd.concat(rows, ignore_index=True)


def level_gaps(out) -> pd.Series:
    """Each strategy's mean forecast in the run folder ``out``, relative to the last value of :func:`level_frame`."""
    forecast = pd.read_parquet(out / "forecast.parquet").groupby("strategy")["forecast"].mean()
    last = level_frame().groupby("unique_id")["y"].last()
    return (forecast / last.reindex(forecast.index) - 1).abs()


def write(tmp_path, frame: pd.DataFrame) -> str:
    path = tmp_path / "panel.parquet"
    frame.to_parquet(path, index=False)
    return str(path)


def spec_for(path: str, *sets: str, out: str = "-"):
    return build_spec(data=path, model="dlinear", out=out, horizon=4, input_size=8, device="cpu", sets=sets)


def test_a_zero_heavy_signed_panel_keeps_robust_scaling_and_mse(tmp_path):
    path = write(tmp_path, make_strategy_panel(6, 60, seed=0))
    chosen, note = choose_from_data(spec_for(path), load_panel(path))
    assert (chosen.train.scaler, chosen.train.loss) == ("robust", "mse")
    assert note is not None and note.startswith("scaler: robust, loss: mse (") and "both signs" in note


def test_a_level_series_panel_gets_per_window_scaling_and_mae(tmp_path):
    path = write(tmp_path, level_frame())
    chosen, note = choose_from_data(spec_for(path), load_panel(path))
    assert (chosen.train.scaler, chosen.train.loss) == ("revin", "mae")
    assert note is not None and note.startswith("scaler: revin, loss: mae (level series: 0.0% zeros, all positive")


def test_a_set_scaler_wins_over_the_data_and_only_the_loss_is_chosen(tmp_path):
    path = write(tmp_path, level_frame())
    chosen, note = choose_from_data(spec_for(path, "scaler=robust"), load_panel(path))
    assert (chosen.train.scaler, chosen.train.loss) == ("robust", "mae")
    assert note is not None and note.startswith("loss: mae (level series")


def test_a_spec_with_both_options_set_chooses_nothing(tmp_path):
    path = write(tmp_path, level_frame())
    spec = spec_for(path, "train.scaler=standard", "loss=huber")
    assert choose_from_data(spec, load_panel(path)) == (spec, None)


def test_prepare_fits_the_chosen_scaler_and_logs_why(tmp_path):
    lines: list[str] = []
    prep = prepare(spec_for(write(tmp_path, level_frame())), torch.device("cpu"), lines.append)
    assert (prep.spec.train.scaler, prep.scaler.kind, prep.spec.train.loss) == ("revin", "revin", "mae")
    assert any(line.startswith("scaler: revin, loss: mae (level series") for line in lines)


def test_a_run_records_the_choice_in_its_metrics(tmp_path):
    out = tmp_path / "run"
    spec = spec_for(write(tmp_path, level_frame()), "max_steps=2", "batch_size=8", out=str(out))
    run_job(spec, log=lambda line: None)
    metrics = json.loads((out / "metrics.json").read_text())
    assert (metrics["spec"]["train"]["scaler"], metrics["spec"]["train"]["loss"]) == ("revin", "mae")
    assert metrics["spec"]["chosen_from_data"].startswith("scaler: revin, loss: mae (level series")


def test_a_resumed_spec_still_leaves_the_same_options_to_the_data(tmp_path):
    spec = spec_for(write(tmp_path, level_frame()), "loss=huber", out=str(tmp_path / "run"))
    write_spec(tmp_path / "run", spec)
    assert read_spec(tmp_path / "run").from_data == ("scaler",) == spec.from_data


def test_a_model_with_its_own_loss_gets_revin_on_level_series_too(tmp_path):
    # SampledWindowNorm normalises its windows and targets and maps its draws back
    path = write(tmp_path, level_frame())
    for members in ((), ("dlinear", "diffusion")):
        model = members[0] if members else "diffusion"
        spec = build_spec(data=path, model=model, out="-", horizon=4, input_size=8, device="cpu", ensemble=members)
        chosen, note = choose_from_data(spec, load_panel(path))
        assert chosen.train.scaler == "revin", members
        assert note is not None and note.startswith("scaler: revin, loss: mae (level series")
    # a member with a distribution head cannot take revin: the whole ensemble keeps robust
    spec = build_spec(
        data=path, model="mlp", out="-", horizon=4, input_size=8, device="cpu", ensemble=("mlp", "deepar"),
        sets=["loss=student-t"],
    )  # fmt: skip
    assert choose_from_data(spec, load_panel(path))[0].train.scaler == "robust"


def test_an_own_loss_model_refuses_per_strategy_mode_by_name(tmp_path):
    path = write(tmp_path, level_frame())
    with pytest.raises(ValueError, match="per-strategy mode: it trains with its own loss"):
        build_spec(data=path, model="diffusion", out="-", mode="per-strategy")


def test_an_own_loss_job_on_level_series_trains_by_its_loss_with_the_scaler_chosen_for_it(monkeypatch, tmp_path):
    # the toy's forward pass raises: the job must train through training_loss and forecast through sample
    monkeypatch.setitem(CATALOG, OWN_LOSS.name, OWN_LOSS)
    out = tmp_path / "run"
    spec = build_spec(
        data=write(tmp_path, level_frame()),
        model=OWN_LOSS.name,
        out=str(out),
        horizon=4,
        input_size=8,
        device="cpu",
        sets=["max_steps=2", "batch_size=8"],
    )
    run_job(spec, log=lambda line: None)
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["spec"]["train"]["scaler"] == "revin"
    # its draws are mapped back to each window's level (1,000 to 4,000 here), moving about 1% a period
    assert (level_gaps(out) < 0.2).all()


@pytest.mark.parametrize("model", sorted(name for name, entry in CATALOG.items() if entry.capabilities.own_loss))
def test_every_own_loss_model_trains_and_draws_under_revin_on_level_series(tmp_path, model):
    tiny = CATALOG[model].config_cls.tiny()
    sets = [f"model.{f.name}={getattr(tiny, f.name)}" for f in dataclasses.fields(tiny)]
    out = tmp_path / "run"
    spec = build_spec(
        data=write(tmp_path, level_frame()), model=model, out=str(out), horizon=4, input_size=8, device="cpu",
        sets=[*sets, "max_steps=3", "batch_size=8", "scaler=revin"],
    )  # fmt: skip
    run_job(spec, log=lambda line: None)
    assert spec.train.scaler == "revin"
    assert (level_gaps(out) < 0.5).all()  # mapped back to the level
