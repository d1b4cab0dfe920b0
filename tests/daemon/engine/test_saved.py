"""Saved models: a run saved and scored again on its own data reproduces its outputs; new data is checked."""

import numpy as np
import pandas as pd
import pytest

from stratcast.daemon.engine.data.synthetic import make_strategy_panel
from stratcast.daemon.engine.run.job import run_job
from stratcast.daemon.engine.saved.score import score
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
