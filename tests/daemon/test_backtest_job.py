"""A backtest through the daemon's paths: refused before queueing, run by a worker process, and in the foreground."""

import json
import os
import subprocess
import sys

import msgspec
import pandas as pd
import pytest

from stratcast.daemon import cli
from stratcast.daemon.engine.data.synthetic import make_strategy_panel
from stratcast.daemon.handlers.common import InvalidSpec
from stratcast.daemon.handlers.submit import check_job
from stratcast.shared.errors import ExitCode
from stratcast.shared.protocol import BacktestOptions, JobSpec

SETS = ["max_steps=8", "batch_size=32", "val_check_steps=4", "hidden_size=16"]


@pytest.fixture(scope="module")
def panel_file(tmp_path_factory):
    path = tmp_path_factory.mktemp("data") / "panel.parquet"
    make_strategy_panel(12, 50, seed=5).to_parquet(path, index=False)
    return path


def job(panel_file, **options):
    backtest = BacktestOptions(**{"cutoffs": 3, "every": 2, "refit_every": 2, "hold": 2, "top": ["3"], **options})
    return JobSpec(data=str(panel_file), model="mlp", horizon=4, input_size=8, sets=SETS, backtest=backtest)


@pytest.mark.parametrize(
    "options,words",
    [
        ({"cutoffs": 40}, "put the first cutoff at period"),
        ({"hold": 5}, "--hold 5 is longer than the horizon 4"),
        ({"top": ["13"]}, "only 12 strategies can be picked"),
    ],
)
def test_a_backtest_the_panel_cannot_hold_is_refused_before_queueing(panel_file, options, words):
    with pytest.raises(InvalidSpec, match=words):
        check_job(job(panel_file, **options))


def test_a_backtest_job_passes_the_checks(panel_file):
    assert check_job(job(panel_file)).panel.n_series == 12


def test_the_worker_runs_a_backtest_job_to_its_outputs(tmp_path, panel_file):
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    (run_dir / "job.json").write_bytes(msgspec.json.encode(job(panel_file)))
    proc = subprocess.run(
        [sys.executable, "-m", "stratcast.daemon.worker", str(run_dir), "--device", "cpu"],
        capture_output=True,
        timeout=300,
        env={**os.environ, "CUDA_VISIBLE_DEVICES": "", "STRATCAST_PLAN_CACHE": ""},
    )
    assert proc.returncode == 0, proc.stderr.decode()[-2000:]
    events = [json.loads(line) for line in proc.stdout.splitlines()]
    finished = events[-1]
    assert finished["event"] == "finished" and finished["metrics"]["run"]["trainings"] == 2
    progress = [e for e in events if e["event"] == "progress"]
    assert progress[-1]["step"] == progress[-1]["max_steps"] == 16  # 2 blocks x 8 steps
    table = pd.read_parquet(run_dir / "out" / "backtest.parquet")
    assert sorted(table["cutoff"].unique()) == [44, 46, 48]
    assert "predicted with the model of cutoff 1" in proc.stderr.decode()


def test_stratcastd_backtest_prints_each_methods_picks(tmp_path, panel_file, capsys):
    out = tmp_path / "bt"
    argv = ["backtest", "--data", str(panel_file), "--model", "mlp", "--out", str(out), "--horizon", "4"]
    argv += ["--input-size", "8", "--cutoffs", "3", "--every", "2", "--hold", "2", "--top", "3", "--device", "cpu"]
    argv += [x for s in SETS for x in ("--set", s)]
    assert cli.main(argv) == ExitCode.OK
    printed = capsys.readouterr().out
    for method in ("model", "trailing mean", "last value", "random", "all strategies", "best possible"):
        assert f"\n{method} " in printed
    assert "the model's picks are" in printed and "trailing mean's at 95%" in printed
    assert (out / "backtest.parquet").exists() and (out / "metrics.json").exists()


def test_stratcastd_backtest_refuses_a_hold_past_the_horizon_with_exit_3(tmp_path, panel_file, capsys):
    argv = ["backtest", "--data", str(panel_file), "--model", "mlp", "--out", str(tmp_path / "bad")]
    argv += ["--horizon", "4", "--input-size", "8", "--hold", "6", "--device", "cpu"]
    assert cli.main(argv) == ExitCode.BAD_INPUT
    assert "--hold 6 is longer than the horizon 4" in capsys.readouterr().err
    assert not (tmp_path / "bad").exists()
