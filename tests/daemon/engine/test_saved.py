"""Saved models: a run saved and scored again on its own data reproduces its outputs; new data is checked."""

import numpy as np
import pandas as pd
import pytest

from stratcast.daemon.engine.data.synthetic import make_strategy_panel
from stratcast.daemon.engine.run.job import run_job
from stratcast.daemon.engine.saved.score import score
from stratcast.daemon.engine.saved.store import SavedModelError
from stratcast.daemon.engine.saved.versions import load_saved, save_run
from stratcast.daemon.engine.spec.runspec import build_spec
from stratcast.shared.runfiles import Outputs

SETS = ["max_steps=12", "batch_size=32", "val_check_steps=4", "hidden_size=16", "num_layers=1"]


def quiet(line: str) -> None:
    pass


@pytest.fixture(scope="module")
def panel_file(tmp_path_factory):
    path = tmp_path_factory.mktemp("data") / "panel.parquet"
    make_strategy_panel(8, 50, seed=2).to_parquet(path, index=False)
    return path


def trained(panel_file, out, *sets, model="mlp", ensemble=(), mode="batch"):
    spec = build_spec(
        data=str(panel_file), model=model, out=str(out), device="cpu", horizon=4, input_size=8, holdout=4,
        sets=[*SETS, *sets], ensemble=ensemble, mode=mode,
    )  # fmt: skip
    run_job(spec, log=quiet)
    return out


def assert_same_outputs(run_out, scored_out):
    run_fc, fc = pd.read_parquet(Outputs(run_out).forecast), pd.read_parquet(Outputs(scored_out).forecast)
    assert list(fc.columns) == list(run_fc.columns)
    assert (fc["strategy"] == run_fc["strategy"]).all() and (fc["time"] == run_fc["time"]).all()
    numbers = [c for c in run_fc.columns if c not in ("strategy", "time", "step")]
    assert "forecast" in numbers and "lo80" in numbers
    for col in numbers:
        np.testing.assert_allclose(fc[col].to_numpy(), run_fc[col].to_numpy(), rtol=1e-6, atol=1e-9, err_msg=col)
    run_summary, summary = pd.read_parquet(Outputs(run_out).summary), pd.read_parquet(Outputs(scored_out).summary)
    assert summary[["strategy", "rank"]].equals(run_summary[["strategy", "rank"]])


@pytest.mark.parametrize(
    ("case", "options"),
    [
        ("mlp", {}),
        ("ensemble", {"ensemble": ("mlp", "mlp")}),
        ("gaussian", {"sets": ("loss=gaussian",)}),
        ("stacked", {"mode": "per-strategy"}),
    ],
)
def test_a_saved_run_scores_its_own_data_as_the_run_forecast_it(tmp_path, panel_file, case, options):
    run_out = trained(panel_file, tmp_path / "run", *options.get("sets", ()), ensemble=options.get("ensemble", ()),
                      mode=options.get("mode", "batch"))  # fmt: skip
    version = save_run(tmp_path / "home", run_out, "weekly")
    assert version.version == 1
    saved = load_saved(tmp_path / "home", "weekly")
    result = score(saved, panel_file, tmp_path / "scored", log=quiet)
    assert_same_outputs(run_out, tmp_path / "scored")
    assert result.new == [] and result.skipped == {}
    assert result.metrics["scored"]["signature"]["same_strategies"]
    if case == "gaussian":
        assert "q10" in pd.read_parquet(Outputs(tmp_path / "scored").forecast).columns


@pytest.fixture(scope="module")
def mlp_home(tmp_path_factory, panel_file):
    """A home with the small MLP run saved as ``weekly`` version 1."""
    root = tmp_path_factory.mktemp("mlp")
    save_run(root / "home", trained(panel_file, root / "run"), "weekly")
    return root / "home"


def later_panel(tmp_path, *, weeks=54, new=2):
    """The test panel with ``weeks - 50`` more weeks and ``new`` more strategies (ids 9, 10, ...)."""
    old = make_strategy_panel(8, 50, seed=2)
    more = make_strategy_panel(8 + new, weeks, seed=5)
    merged = more.merge(old, on=["No.", "week"], how="left", suffixes=("", "_old"))
    merged["profit"] = merged["profit_old"].fillna(merged["profit"])
    path = tmp_path / "later.parquet"
    merged.drop(columns="profit_old").to_parquet(path, index=False)
    return path


def test_new_weeks_and_new_strategies_are_forecast_and_listed(tmp_path, mlp_home):
    result = score(load_saved(mlp_home, "weekly"), later_panel(tmp_path), tmp_path / "scored", log=quiet)
    forecast = pd.read_parquet(Outputs(tmp_path / "scored").forecast)
    assert sorted(forecast["strategy"].unique()) == list(range(1, 11))
    assert result.new == ["9", "10"] and result.skipped == {}
    assert forecast["time"].min() == pd.Timestamp(make_strategy_panel(8, 55, seed=5)["week"].max())
    assert np.isfinite(forecast[["forecast", "lo80", "hi80"]].to_numpy()).all()  # 95%: too few scores at step 4
    assert (forecast["lo80"] <= forecast["hi80"]).all()
    scored = result.metrics["scored"]
    assert scored["new"] == ["9", "10"] and not scored["signature"]["same_strategies"]


def test_a_model_with_per_series_parameters_skips_new_strategies(tmp_path, panel_file):
    spec = build_spec(
        data=str(panel_file), model="esrnn", out=str(tmp_path / "run"), device="cpu", horizon=4, input_size=8,
        holdout=4, sets=["max_steps=6", "batch_size=32", "val_check_steps=3"],
    )  # fmt: skip
    run_job(spec, log=quiet)
    save_run(tmp_path / "home", tmp_path / "run", "smooth")
    saved = load_saved(tmp_path / "home", "smooth")
    result = score(saved, later_panel(tmp_path), tmp_path / "scored", log=quiet)
    assert result.new == [] and sorted(result.skipped) == ["10", "9"]
    assert "per-series parameters" in result.skipped["9"]
    forecast = pd.read_parquet(Outputs(tmp_path / "scored").forecast)
    assert sorted(forecast["strategy"].unique()) == list(range(1, 9))
    assert [s["strategy"] for s in result.metrics["scored"]["skipped"]] == ["9", "10"]


def test_data_that_does_not_fit_is_refused_with_the_problem_named(tmp_path, mlp_home):
    saved = load_saved(mlp_home, "weekly")
    frame = make_strategy_panel(8, 50, seed=2)
    frame.drop(columns="profit").assign(pnl=1.0).to_parquet(tmp_path / "nocol.parquet", index=False)
    with pytest.raises(SavedModelError, match="profit"):
        score(saved, tmp_path / "nocol.parquet", tmp_path / "a", log=quiet)
    weeks = sorted(frame["week"].unique())[::2]
    frame[frame["week"].isin(weeks)].to_parquet(tmp_path / "biweekly.parquet", index=False)
    with pytest.raises(SavedModelError, match="14 days"):
        score(saved, tmp_path / "biweekly.parquet", tmp_path / "b", log=quiet)
    frame[frame["week"] >= sorted(frame["week"].unique())[-5]].to_parquet(tmp_path / "short.parquet", index=False)
    with pytest.raises(SavedModelError, match="fewer than 8 periods"):
        score(saved, tmp_path / "short.parquet", tmp_path / "c", log=quiet)
    assert not (tmp_path / "a").exists() and not (tmp_path / "c").exists()
