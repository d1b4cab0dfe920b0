"""An ensemble of seeds or models (``--ensemble``): members trained in turn, their mean forecast, stop and resume."""

import argparse

import numpy as np
import pandas as pd
import pytest

from stratcast.daemon.cli import main
from stratcast.daemon.engine.run.job import run_job
from stratcast.daemon.engine.spec.runspec import build_spec, spec_from_job
from stratcast.daemon.engine.training.checkpoint import load_checkpoint
from stratcast.daemon.handlers.common import InvalidSpec
from stratcast.daemon.handlers.submit import check_job
from stratcast.shared.events import ProgressReported
from stratcast.shared.jobargs import add_job_options, job_from_args
from stratcast.shared.protocol import BacktestOptions, JobSpec
from tests.daemon.engine.small_jobs import write_small_panel

SEEDS = ("mlp", "mlp")


@pytest.fixture(scope="module")
def panel_file(tmp_path_factory):
    return write_small_panel(tmp_path_factory.mktemp("data") / "panel.parquet")


MLP = ["hidden_size=16", "num_layers=2", "dropout=0.2"]
"""The members' architecture (seeds of one model); dropout on: a resume must restore the RNG of the member."""


def spec(panel_file, out, ensemble=SEEDS, extra=(), params=MLP):
    sets = ["max_steps=30", "batch_size=32", "val_check_steps=5", *params, *extra]
    return build_spec(
        data=str(panel_file), model=ensemble[0] if ensemble else "mlp", out=str(out), device="cpu", horizon=4,
        input_size=8, holdout=4, sets=sets, ensemble=ensemble,
    )  # fmt: skip


class StopAfter:
    """A ``should_stop`` that asks for a stop at its ``k + 1``-th call (calls run across the members)."""

    def __init__(self, k):
        self.k, self.calls = k, 0

    def __call__(self):
        self.calls += 1
        return self.calls > self.k


def forecasts(out):
    return pd.read_parquet(out / "forecast.parquet")


def quiet(_):
    pass


def test_an_ensemble_of_two_seeds_forecasts_the_mean_of_the_two_runs_alone(tmp_path, panel_file):
    both = run_job(spec(panel_file, tmp_path / "both", extra=["combine=none"]), log=quiet)
    alone = [
        run_job(spec(panel_file, tmp_path / f"seed{s}", ensemble=(), extra=["combine=none", f"seed={s}"]), log=quiet)
        for s in (0, 1)
    ]
    assert [m["seed"] for m in both.metrics["ensemble"]["members"]] == [0, 1]
    assert [m["steps"] for m in both.metrics["ensemble"]["members"]] == [a.fit.steps for a in alone]
    value = ["forecast"]
    mean = (forecasts(tmp_path / "seed0")[value].to_numpy() + forecasts(tmp_path / "seed1")[value].to_numpy()) / 2
    np.testing.assert_allclose(forecasts(tmp_path / "both")[value].to_numpy(), mean, rtol=1e-5, atol=1e-6)
    errors = both.metrics["errors"]
    for label, run in zip(("member mlp#0", "member mlp#1"), alone, strict=True):
        assert errors[label]["rmse"] == pytest.approx(run.metrics["errors"]["model"]["rmse"], rel=1e-5)
    assert errors["model"]["rmse"] not in (errors["member mlp#0"]["rmse"], errors["member mlp#1"]["rmse"])


def test_progress_runs_once_from_0_to_the_whole_job_over_the_members(tmp_path, panel_file):
    seen: list[ProgressReported] = []
    run_job(spec(panel_file, tmp_path / "out", extra=["max_steps=20"]), log=quiet, on_progress=seen.append)
    steps = [p.step for p in seen]
    assert steps == sorted(steps) and {p.max_steps for p in seen} == {40}
    assert steps[-1] == 40 and any(s <= 20 for s in steps) and any(s > 20 for s in steps)


@pytest.fixture(scope="module")
def straight(panel_file, tmp_path_factory):
    out = tmp_path_factory.mktemp("straight")
    return out, run_job(spec(panel_file, out), log=quiet)


@pytest.mark.parametrize("stop_at", [13, 30, 41])
def test_resume_after_a_stop_mid_member_gives_the_identical_forecast(tmp_path, panel_file, straight, stop_at):
    stopped_spec = spec(panel_file, tmp_path / "stopped")
    stopped = run_job(stopped_spec, log=quiet, should_stop=StopAfter(stop_at))
    assert stopped.fit.interrupted and stopped.checkpoint is not None
    state = load_checkpoint(stopped.checkpoint)
    member = state["ensemble"]["member"]
    assert member == (0 if stop_at < 30 else 1) and len(state["ensemble"]["done"]) == member
    assert stopped.checkpoint.name == f"step-{31 * member + stopped.fit.steps:08d}.pt"  # max_steps + 1 per member
    lines: list[str] = []
    resumed = run_job(stopped_spec, log=lines.append, resume_from=stopped.checkpoint)
    assert sum("member" in line and "seed" in line for line in lines) == 2 - member  # finished members not retrained
    pd.testing.assert_frame_equal(forecasts(straight[0]), forecasts(tmp_path / "stopped"))
    assert resumed.metrics["errors"] == straight[1].metrics["errors"]


def test_an_ensemble_of_models_scores_each_member_on_the_holdout(tmp_path, panel_file):
    result = run_job(spec(panel_file, tmp_path / "out", ensemble=("mlp", "dlinear"), params=()), log=quiet)
    errors = result.metrics["errors"]
    assert {"model", "member mlp", "member dlinear"} <= set(errors)
    assert [m["model"] for m in result.metrics["ensemble"]["members"]] == ["mlp", "dlinear"]
    assert "ensemble" in load_checkpoint(tmp_path / "out" / "model.pt")


def test_a_member_whose_windows_hold_every_series_trains_at_the_batch_the_panel_chose(tmp_path, panel_file):
    out = tmp_path / "out"
    job = build_spec(
        data=str(panel_file), model="mlp", out=str(out), device="cpu", horizon=4, input_size=8, holdout=4,
        sets=["max_steps=2", "val_check_steps=2"], ensemble=("mlp", "neuralvar"),
    )  # fmt: skip
    lines: list[str] = []
    result = run_job(job, log=lines.append)
    # the small panel's few series: neural VAR windows of every series, 32 a step; the MLP's 1,024 windows
    assert [m["batch_size"] for m in result.metrics["ensemble"]["members"]] == [1024, 32]
    assert "member 2/2: neuralvar (seed 1, batch_size=32)" in lines
    assert "batch_size: 32 for neuralvar (" in result.metrics["spec"]["chosen_from_data"]


def parse(argv):
    parser = argparse.ArgumentParser(exit_on_error=False)
    add_job_options(parser, program="stratcastd")
    return job_from_args(parser.parse_args(["--data", "p.parquet", *argv]))


def test_the_option_takes_a_count_of_seeds_or_model_names():
    assert parse(["--model", "nhits", "--ensemble", "3"]).ensemble == ["nhits"] * 3
    job = parse(["--model", "dlinear", "--ensemble", "NHITS,dlinear"])
    assert job.ensemble == ["nhits", "dlinear"] and job.model == "nhits"
    assert parse(["--model", "nhits"]).ensemble == []


@pytest.mark.parametrize("value", ["1", "0", "nhits", "nhits,", "99"])
def test_the_option_refuses_fewer_than_two_members_or_a_malformed_list(value):
    with pytest.raises((argparse.ArgumentError, SystemExit)):
        parse(["--model", "nhits", "--ensemble", value])


@pytest.mark.parametrize(
    ("ensemble", "sets", "mode", "message"),
    [
        (("mlp", "nosuch"), [], "batch", "unknown model nosuch"),
        (("dlinear", "nhits"), [], "batch", "first member"),
        (("mlp", "dlinear"), ["hidden_size=8"], "batch", "default architecture"),
        (("mlp", "timesnet"), [], "per-strategy", "'timesnet' cannot be stacked"),
    ],
)
def test_a_bad_ensemble_is_refused_before_anything_runs(tmp_path, ensemble, sets, mode, message):
    with pytest.raises(ValueError, match=message):
        build_spec(data="p", model="mlp", out=str(tmp_path), mode=mode, sets=sets, ensemble=ensemble)


def test_a_backtest_refuses_an_ensemble_up_front():
    job = JobSpec(data="/p.parquet", model="nhits", ensemble=["nhits", "nhits"], backtest=BacktestOptions())
    with pytest.raises(ValueError, match="backtest"):
        spec_from_job(job, out="-", device="cpu")


def test_a_resume_refuses_a_new_ensemble(tmp_path, capsys):
    with pytest.raises(SystemExit):
        main(["run", "--resume", str(tmp_path), "--ensemble", "3"])
    assert "drop --ensemble" in capsys.readouterr().err


def test_run_needs_its_output_folder_with_an_ensemble_and_takes_a_list_of_models_for_model(tmp_path, capsys):
    with pytest.raises(SystemExit):
        main(["run", "--data", str(tmp_path / "p.parquet"), "--model", "mlp", "--ensemble", "2"])
    assert "needs --data, --model and --out" in capsys.readouterr().err
    code = main(["run", "--data", str(tmp_path / "none.parquet"), "--ensemble", "mlp,dlinear", "--out", str(tmp_path)])
    assert code != 0 and "needs --data, --model" not in capsys.readouterr().err  # past the check: no such file


@pytest.mark.parametrize(
    ("ensemble", "backtest", "message"),
    [(["nhits", "nosuch"], None, "unknown model"), (["nhits"] * 2, True, "backtest")],
)
def test_the_daemon_refuses_a_bad_ensemble_before_queueing(ensemble, backtest, message):
    job = JobSpec(
        data="/nowhere/p.parquet", model="nhits", ensemble=ensemble, backtest=BacktestOptions() if backtest else None
    )
    with pytest.raises(InvalidSpec, match=message):
        check_job(job)


def test_an_ensemble_trains_in_per_strategy_mode_with_a_stacked_model_per_member(tmp_path, panel_file):
    spec = build_spec(
        data=str(panel_file), model="mlp", out=str(tmp_path), mode="per-strategy", device="cpu", horizon=4,
        input_size=8, holdout=4, sets=["max_steps=10", "val_check_steps=5", "hidden_size=8"], ensemble=SEEDS,
    )  # fmt: skip
    result = run_job(spec, log=quiet)
    errors = result.metrics["errors"]
    assert errors["member mlp#0"]["rmse"] != errors["member mlp#1"]["rmse"]  # two seeds, two stacked models
    assert [m["steps"] for m in result.metrics["ensemble"]["members"]] == [10, 10]
