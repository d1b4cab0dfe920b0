"""Scaler, loss and (for SOFTS and the neural VAR) batch size chosen from the panel when the user leaves them unset."""

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
from stratcast.daemon.engine.spec.ensemble import member_specs
from stratcast.daemon.engine.spec.runspec import build_spec, choose_from_data, panel_batch, spec_from_dict
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


def tiny_sets(model: str) -> list[str]:
    """``--set`` items for ``model``'s tiny architecture."""
    return [f"model.{k}={v}" for k, v in dataclasses.asdict(CATALOG[model].config_cls.tiny()).items()]


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
    sets = tiny_sets(model)
    out = tmp_path / "run"
    spec = build_spec(
        data=write(tmp_path, level_frame()), model=model, out=str(out), horizon=4, input_size=8, device="cpu",
        sets=[*sets, "max_steps=3", "batch_size=8", "scaler=revin"],
    )  # fmt: skip
    run_job(spec, log=lambda line: None)
    assert spec.train.scaler == "revin"
    assert (level_gaps(out) < 0.5).all()  # mapped back to the level


def test_the_panel_batch_holds_about_24000_series_windows_in_1_to_32_windows():
    assert [panel_batch(s) for s in (6_000, 2_000, 862, 359, 20_000, 50_000, 1)] == [4, 12, 28, 32, 1, 1, 32]


def test_a_multivariate_model_of_whole_panel_windows_takes_its_batch_from_the_panel(tmp_path):
    small = write(tmp_path, make_strategy_panel(6, 60, seed=0))
    large = str(tmp_path / "large.parquet")
    make_strategy_panel(1_200, 30, seed=1).to_parquet(large, index=False)

    def chosen(model: str, *sets: str, path: str = small) -> tuple[int, str]:
        spec = build_spec(data=path, model=model, out="-", horizon=4, input_size=8, device="cpu", sets=sets)
        done, note = choose_from_data(spec, load_panel(path))
        return done.train.batch_size, note or ""

    for model in ("softs", "neuralvar"):
        batch, note = chosen(model)
        assert batch == 32  # 6 series a window: the most windows a step
        assert "; batch_size: 32 (a window holds 6 series: 32 windows a step are 192 series-windows, the count" in note
        assert chosen(model, path=large)[0] == 20  # 24,000 / 1,200
    assert chosen("softs", "series_per_window=1000", path=large)[0] == 24
    # what a job sets wins, and only the scaler and loss are left to the data
    batch, note = chosen("softs", "batch_size=2")
    assert batch == 2 and note.startswith("scaler: robust, loss: mse (") and "batch_size" not in note
    # a univariate model keeps the declared default; a graph model its catalog's 8 windows of 500 series
    batch, note = chosen("nhits", path=large)
    assert batch == 1024 and "batch_size" not in note
    assert chosen("mtgnn", path=large)[0] == 8


def test_a_softs_run_over_many_series_records_the_batch_the_panel_chose(tmp_path):
    out = tmp_path / "run"
    path = str(tmp_path / "large.parquet")
    make_strategy_panel(1_200, 30, seed=1).to_parquet(path, index=False)
    spec = build_spec(
        data=path, model="softs", out=str(out), horizon=4, input_size=8, device="cpu",
        sets=[*tiny_sets("softs"), "max_steps=1", "val_size=0"],
    )  # fmt: skip
    assert spec.from_data == ("scaler", "loss", "batch_size")
    run_job(spec, log=lambda line: None)
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["spec"]["train"]["batch_size"] == 20  # 24,000 / 1,200 series
    assert "batch_size: 20 (a window holds 1,200 series" in metrics["spec"]["chosen_from_data"]


def test_an_ensemble_trains_each_member_at_its_own_batch_unless_the_job_sets_one(tmp_path):
    path = str(tmp_path / "large.parquet")
    make_strategy_panel(1_200, 30, seed=1).to_parquet(path, index=False)

    def batches(members: tuple[str, ...], *sets: str) -> tuple[list[int], str]:
        spec = build_spec(
            data=path, model=members[0], out="-", horizon=4, input_size=8, device="cpu", ensemble=members, sets=sets
        )
        chosen, note = choose_from_data(spec, load_panel(path))
        return [m.train.batch_size for m in member_specs(chosen)], note or ""

    # SOFTS at 1,024 windows of 1,200 series would be 1.2M series-windows a step: it takes the panel's 20
    for members in (("nhits", "softs"), ("softs", "nhits")):
        got, note = batches(members)
        assert got == [20 if m == "softs" else 1024 for m in members]
        assert "batch_size: 20 for softs (a window holds 1,200 series" in note
    assert batches(("softs", "softs"))[0] == [20, 20]
    # MTGNN keeps its catalog's 8 windows of 500 series, first or not; SOFTS's windows hold all 1,200 series
    assert batches(("mtgnn", "softs"))[0] == [8, 20]
    assert batches(("nhits", "mtgnn"))[0] == [1024, 8]
    assert batches(("nhits", "dlinear"))[0] == [1024, 1024]
    assert batches(("nhits", "softs"), "batch_size=64")[0] == [64, 64]  # what a job sets, every member takes
    # the windows' series a job sets count for the panel's batch: 24,000 / 600
    assert batches(("nhits", "softs"), "series_per_window=600")[0] == [1024, 32]


def test_each_member_trains_with_its_own_catalog_defaults_and_the_panels_choices_unless_the_job_sets_them(tmp_path):
    path = str(tmp_path / "panel.parquet")
    make_strategy_panel(40, 30, seed=1).to_parquet(path, index=False)

    def members(names: tuple[str, ...], *sets: str) -> dict[str, dict[str, object]]:
        spec = build_spec(
            data=path, model=names[0], out="-", horizon=4, input_size=8, device="cpu", ensemble=names, sets=sets
        )
        keys = ("learning_rate", "loss", "batch_size", "series_per_window", "scaler", "horizon", "seed")
        trained = member_specs(choose_from_data(spec, load_panel(path))[0])
        return {m.model: {k: getattr(m.train, k) for k in keys} for m in trained}

    got = members(("transformer", "nhits", "mtgnn", "tft"))
    # the Transformer's lower learning rate stays its own, TFT's quantile loss TFT's; N-HiTS takes the default rate
    # and the panel's loss, MTGNN its catalog's 8 windows of 500 series
    assert (got["transformer"]["learning_rate"], got["transformer"]["loss"]) == (1e-4, "mse")
    assert (got["nhits"]["learning_rate"], got["nhits"]["loss"], got["nhits"]["batch_size"]) == (1e-3, "mse", 1024)
    assert (got["mtgnn"]["batch_size"], got["mtgnn"]["series_per_window"], got["mtgnn"]["loss"]) == (8, 500, "mse")
    assert (got["tft"]["learning_rate"], got["tft"]["loss"], got["tft"]["series_per_window"]) == (1e-3, "quantile", 0)
    assert {m["scaler"] for m in got.values()} == {"robust"} and {m["horizon"] for m in got.values()} == {4}
    assert [m["seed"] for m in got.values()] == [0, 1, 2, 3]
    # a later member keeps the likelihood its catalog names
    assert members(("nhits", "deepar"))["deepar"]["loss"] == "student-t"
    # what the job sets, every member takes
    got = members(("transformer", "nhits", "mtgnn"), "learning_rate=0.01", "loss=huber", "series_per_window=20")
    assert {m["learning_rate"] for m in got.values()} == {0.01} and {m["loss"] for m in got.values()} == {"huber"}
    assert {m["series_per_window"] for m in got.values()} == {20}


def test_a_spec_reads_back_whole_and_one_written_before_members_took_their_own_options_reads_as_it_trained():
    spec = build_spec(data="p.parquet", model="nhits", out="-", horizon=4, ensemble=("nhits", "mtgnn"), sets=["seed=3"])
    assert spec.set_train == ("horizon", "seed")
    assert spec_from_dict(json.loads(json.dumps(dataclasses.asdict(spec)))) == spec
    # before set_train: every member shared the job's options but the batch the panel chose for SOFTS
    old = dataclasses.asdict(dataclasses.replace(spec, ensemble=("nhits", "softs"), from_data=()))
    del old["set_train"], old["panel_chose"]
    read = spec_from_dict({**old, "member_batch": 4})
    assert read.panel_chose == {"batch_size": 4}
    assert [m.train for m in member_specs(read)] == [
        spec.train,
        dataclasses.replace(spec.train, batch_size=4, seed=4),
    ]
    assert [m.train.batch_size for m in member_specs(spec_from_dict({**old, "member_batch": 0}))] == [1024, 1024]
