"""read_history, read_results, export_results and check_data through a real daemon, on one finished tiny run."""

from __future__ import annotations

import json
import shutil
import tempfile
from pathlib import Path

import pandas as pd
import pytest

from stratcast.daemon.engine.data.load import load_panel
from stratcast.daemon.engine.data.panel import DataError
from stratcast.daemon.engine.data.synthetic import make_strategy_panel
from stratcast.shared.client import Client, RequestFailed
from stratcast.shared.errors import ExitCode
from stratcast.shared.protocol import (
    CheckData,
    ExportResults,
    JobSpec,
    ListRuns,
    Placement,
    ReadHistory,
    ReadResults,
    RemoveRun,
    Submit,
)
from stratcast.tui.cli import main
from tests.daemon.engine.trading_exports import write_export
from tests.integration.daemon_process import DaemonProcess
from tests.integration.test_daemon import wait_for

pytestmark = pytest.mark.slow

STEPS = 40


@pytest.fixture(scope="module")
def panel(tmp_path_factory) -> str:
    """12 strategies x 40 weeks, strategy 12 only in the last 10 (too short for the job below)."""
    frame = make_strategy_panel(12, 40, seed=5)
    frame = frame[(frame["No."] != 12) | (frame["week"] >= frame["week"].unique()[30])]
    path = tmp_path_factory.mktemp("data") / "panel.parquet"
    frame.to_parquet(path, index=False)
    return str(path)


def job(panel: str) -> JobSpec:
    sets = [f"max_steps={STEPS}", "batch_size=32", "val_check_steps=10", "checkpoint_every_steps=15"]
    return JobSpec(data=panel, model="dlinear", horizon=4, input_size=8, holdout=4, device="cpu", sets=sets)


@pytest.fixture(scope="module")
def client():
    home = Path(tempfile.mkdtemp(prefix="sc-"))  # unix socket paths are capped near 100 bytes
    daemon = DaemonProcess(home).start()
    try:
        with Client(daemon.home) as c:
            yield c
    finally:
        daemon.stop()
        shutil.rmtree(home, ignore_errors=True)


@pytest.fixture(scope="module")
def finished(client, panel):
    run = client.call(Submit(job=job(panel)))["run"]
    info = wait_for(client, run["id"], ("succeeded", "failed"))
    assert info["state"] == "succeeded", info
    return info


def refusal(client, request) -> RequestFailed:
    with pytest.raises(RequestFailed) as failed:
        client.call(request)
    return failed.value


def test_read_results_gives_the_metrics_and_the_best_strategies_with_their_forecasts(client, finished):
    out = Path(finished["out"]) / "out"
    result = client.call(ReadResults(run=finished["id"], top=3))
    assert result["metrics"] == json.loads((out / "metrics.json").read_text())
    assert result["horizon"] == 4
    top = result["top"]
    assert [row["rank"] for row in top] == [1, 2, 3]
    assert top[0]["strategy"] == result["metrics"]["best_strategy"]["strategy"]
    forecast = pd.read_parquet(out / "forecast.parquet").sort_values("step")
    for row in top:
        expected = forecast[forecast["strategy"] == row["strategy"]]["forecast"].tolist()
        assert row["forecast"] == pytest.approx(expected)
        assert row["forecast_mean"] == pytest.approx(sum(expected) / 4)


def test_read_history_of_a_finished_run_holds_its_progress_and_checkpoints(client, finished):
    history = client.call(ReadHistory(run=finished["id"], points=10))
    progress = history["progress"]
    assert 1 <= len(progress) <= 10
    assert progress[-1]["step"] == STEPS
    assert any(p["val_loss"] is not None for p in progress)
    assert [c["step"] for c in history["checkpoints"]] == [15, 30]
    assert not any(c["stopped"] for c in history["checkpoints"])
    assert history["memory"] and all("time" in m for m in history["memory"])
    assert [(p["source"], p["micro_batch"]) for p in history["plans"]] == [("cpu", 32)]  # the whole batch


def test_export_writes_csv_or_parquet_as_the_name_says(client, finished, tmp_path):
    summary = pd.read_parquet(Path(finished["out"]) / "out" / "summary.parquet")
    csv = client.call(ExportResults(run=finished["id"], path=str(tmp_path / "summary.csv")))
    assert csv == {"path": str(tmp_path / "summary.csv"), "rows": 11, "format": "csv", "what": "summary"}
    exported = pd.read_csv(tmp_path / "summary.csv", parse_dates=["last_period"])
    pd.testing.assert_frame_equal(exported, summary, check_dtype=False)
    request = ExportResults(run=finished["id"], path=str(tmp_path / "fc.data"), what="forecast")
    assert client.call(request)["format"] == "parquet"
    assert len(pd.read_parquet(tmp_path / "fc.data")) == 11 * 4
    as_csv = ExportResults(run=finished["id"], path=str(tmp_path / "fc.txt"), what="forecast", format="csv")
    assert client.call(as_csv)["rows"] == 11 * 4
    assert (tmp_path / "fc.txt").read_text().startswith('"strategy","step","forecast","time"')
    assert sorted(p.name for p in tmp_path.iterdir()) == ["fc.data", "fc.txt", "summary.csv"]  # no temp files left


def test_export_refuses_an_existing_file_a_relative_path_and_a_missing_folder(client, finished, tmp_path):
    (tmp_path / "taken.csv").write_text("mine")
    taken = refusal(client, ExportResults(run=finished["id"], path=str(tmp_path / "taken.csv")))
    assert (taken.code, (tmp_path / "taken.csv").read_text()) == ("bad_request", "mine")
    assert "already exists" in taken.message and str(tmp_path / "taken-2.csv") in taken.message
    relative = refusal(client, ExportResults(run=finished["id"], path="results.csv"))
    assert "relative" in relative.message and "absolute" in relative.message
    nowhere = refusal(client, ExportResults(run=finished["id"], path=str(tmp_path / "no" / "such.csv")))
    assert f"{tmp_path / 'no'} is not a folder" in nowhere.message


def test_results_of_a_run_without_any_are_refused_and_its_history_is_empty(client, panel, tmp_path):
    held = client.call(Submit(job=job(panel), placement=Placement(hold=True)))["run"]["id"]
    try:
        refused = refusal(client, ReadResults(run=held))
        assert refused.code == "bad_state"
        assert f"run {held} has no results: it is held" in refused.message
        export = refusal(client, ExportResults(run=held, path=str(tmp_path / "s.parquet")))
        assert export.code == "bad_state"
        history = client.call(ReadHistory(run=held))
        assert history == {"progress": [], "memory": [], "ooms": [], "plans": [], "checkpoints": [], "thinned": False}
    finally:
        client.call(RemoveRun(run=held))
    for request in (ReadHistory(run=9999), ReadResults(run=9999), ExportResults(run=9999, path="/tmp/x.csv")):
        assert refusal(client, request).code == "not_found"


def test_check_data_describes_the_panel_and_queues_nothing(client, panel):
    before = len(client.call(ListRuns())["runs"])
    described = client.call(CheckData(job=job(panel)))
    assert len(client.call(ListRuns())["runs"]) == before
    notes = described.pop("notes")
    zero_share = described.pop("zero_share")
    assert described == {
        "data": panel,
        "columns": {"id": "No.", "time": "week", "target": "profit"},
        "strategies": 11,
        "dropped": 1,
        "periods": 40,
        "first": "2016-01-04",
        "last": "2016-10-03",
        "observations": 11 * 40,
        "filled": 0,
        "required_periods": 8 + 1 + 4 + 4,
    }
    frame = pd.read_parquet(panel)
    assert zero_share == pytest.approx((frame[frame["No."] != 12]["profit"] == 0).mean())
    assert len(notes) == 1 and "skipped 1 series" in notes[0] and ": 12" in notes[0]


def test_stratcast_check_accepts_a_semicolon_export_with_day_first_dates(client, panel, tmp_path, capsys):
    export = write_export(pd.read_parquet(panel), tmp_path / "export.csv")
    argv = ["check", "--data", str(export), "--model", "dlinear", "--horizon", "4", "--input-size", "8"]
    assert main([*argv, "--holdout", "4", "--dayfirst"], client=client) == ExitCode.OK
    out = capsys.readouterr().out.splitlines()
    assert out[0] == f"data        {export} (columns No., Week, Profit)"
    assert out[2] == "periods     40, 2016-01-04 to 2016-10-03 (a strategy needs 17)"
    assert out[-1] == "submit would accept this job"


def test_check_data_reports_a_bad_file_with_the_engines_message(client, tmp_path):
    bad = tmp_path / "bad.csv"
    bad.write_text("No.,week,profit\n1,2024-01-01,3.5\n1,2024-01-08,lots\n")
    with pytest.raises(DataError) as engine:
        load_panel(bad)
    refused = refusal(client, CheckData(job=JobSpec(data=str(bad), horizon=1, input_size=1)))
    assert refused.code == "invalid_spec"
    assert refused.message == str(engine.value)
