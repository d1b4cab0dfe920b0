"""``stratcast backtest`` builds the request, and ``stratcast results`` prints a backtest's table."""

from __future__ import annotations

import json

import pytest

from stratcast.daemon.engine.backtest.report import write_backtest
from stratcast.shared.errors import ExitCode
from stratcast.shared.protocol import BacktestOptions, JobSpec, Placement, Submit
from stratcast.tui.cli import main
from stratcast.tui.command_line import build_parser, build_requests
from tests.daemon.engine.backtest_frames import synthetic_backtest
from tests.tui.test_cli import FakeClient


def request_for(*argv: str) -> Submit:
    (request,) = build_requests(build_parser().parse_args(["backtest", *argv]))
    assert isinstance(request, Submit)
    return request


def test_backtest_submits_the_job_with_its_backtest_options_and_placement():
    request = request_for(
        *["--data", "/srv/panel.parquet", "--model", "nhits", "--horizon", "8", "--input-size", "16"],
        *["--set", "max_steps=5", "--cutoffs", "6", "--every", "2", "--refit-every", "3", "--hold", "4"],
        *["--top", "5,2%", "--cost", "0.5", "--draws", "50", "--name", "bt", "--priority", "2", "--held"],
    )
    assert request.job == JobSpec(
        data="/srv/panel.parquet",
        model="nhits",
        horizon=8,
        input_size=16,
        sets=["max_steps=5"],
        backtest=BacktestOptions(cutoffs=6, every=2, refit_every=3, hold=4, top=["5", "2%"], cost=0.5, draws=50),
    )
    assert request.placement == Placement(name="bt", priority=2, hold=True)


def test_backtest_defaults_hold_for_every_period_and_queue_the_run_unheld():
    request = request_for("--data", "/d.parquet", "--model", "m")
    assert request.job.backtest == BacktestOptions()
    assert request.job.backtest.hold_periods == request.job.backtest.every
    assert request.placement.hold is False


def test_backtest_refuses_a_bad_pick_size_in_plain_words(capsys):
    with pytest.raises(SystemExit):
        build_parser().parse_args(["backtest", "--data", "d", "--model", "m", "--top", "0%"])
    assert "--top" in capsys.readouterr().err


def test_submit_still_takes_hold_as_queueing_held():
    (request,) = build_requests(build_parser().parse_args(["submit", "--data", "/d", "--model", "m", "--hold"]))
    assert isinstance(request, Submit) and request.placement.hold and request.job.backtest is None


@pytest.fixture
def backtest_dir(tmp_path):
    picks, cutoffs, options = synthetic_backtest(cutoffs=6, skill=3.0)
    table = write_backtest(tmp_path, picks, cutoffs, options, {"model": "nhits"}, log=lambda line: None)
    return tmp_path, table


def test_results_of_a_backtest_folder_prints_its_table_and_verdicts(backtest_dir, capsys):
    folder, table = backtest_dir
    assert main(["results", str(folder)]) == ExitCode.OK
    out = capsys.readouterr().out
    assert "Walk-forward backtest: nhits, 6 cutoffs" in out and "Top 5 (5 strategies per cutoff):" in out
    assert "- " + table["verdicts"][0] in out
    assert main(["results", str(folder), "--json"]) == ExitCode.OK
    assert json.loads(capsys.readouterr().out)["backtest"]["verdicts"] == table["verdicts"]


def test_results_of_a_backtest_run_id_prints_the_daemons_table(backtest_dir, capsys):
    _, table = backtest_dir
    assert main(["results", "7"], client=FakeClient({"read_results": {"backtest": table}})) == ExitCode.OK
    out = capsys.readouterr().out
    assert "best possible" in out and table["verdicts"][-1] in out
