"""Saved models through a real daemon: save a finished run, manage its versions, score new data as queued work.

One daemon and one tiny trained run for the module (``--save-as`` saves it as ``weekly:1``); the scoring jobs run
in workers like any run and must forecast what the source run forecast on the same data.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pandas as pd
import pytest

from stratcast.daemon.engine.data.synthetic import make_strategy_panel
from stratcast.shared.client import RequestFailed
from stratcast.shared.errors import ExitCode
from stratcast.shared.protocol import (
    AddSchedule,
    ExportSaved,
    ImportSaved,
    JobSpec,
    ListRuns,
    ListSaved,
    Placement,
    ReadResults,
    RemoveSaved,
    RemoveSchedule,
    RunScheduleNow,
    SaveRun,
    SetAlias,
    ShowSaved,
    Status,
    Submit,
)
from stratcast.shared.runfiles import Outputs, RunFolder
from stratcast.tui.cli import main
from tests.integration.test_daemon import wait_for

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def panel(tmp_path_factory) -> str:
    path = tmp_path_factory.mktemp("data") / "panel.parquet"
    make_strategy_panel(6, 40, seed=4).to_parquet(path, index=False)
    return str(path)


def train_job(panel: str, **kw) -> JobSpec:
    sets = ["max_steps=6", "batch_size=32", "val_check_steps=3", "hidden_size=8", "num_layers=1"]
    return JobSpec(data=panel, model="mlp", horizon=4, input_size=8, holdout=4, device="cpu", sets=sets, **kw)


@pytest.fixture(scope="module")
def trained(client, panel):
    """A run submitted with ``--save-as weekly``: it succeeds and is saved as weekly:1 by its worker."""
    run = client.call(Submit(job=train_job(panel, save_as="weekly")))["run"]
    info = wait_for(client, run["id"], ("succeeded", "failed"))
    assert info["state"] == "succeeded", info
    return info


def refusal(client, request) -> RequestFailed:
    with pytest.raises(RequestFailed) as failed:
        client.call(request)
    return failed.value


def succeeded(client, run: dict[str, Any]) -> dict[str, Any]:
    """``run`` once it ended; it must have succeeded (else its log is shown)."""
    done: dict[str, Any] = wait_for(client, run["id"], ("succeeded", "failed"))
    assert done["state"] == "succeeded", (Path(done["out"]) / "log.txt").read_text()
    return done


def outputs(run: dict[str, Any]) -> Outputs:
    return RunFolder(Path(run["out"])).out


def test_save_as_saves_the_succeeded_run_and_its_log_names_the_version(client, daemon, trained):
    (listed,) = client.call(ListSaved())
    assert {k: listed[k] for k in ("name", "versions", "latest", "aliases")} == {
        "name": "weekly", "versions": [1], "latest": 1, "aliases": {}
    }  # fmt: skip
    assert listed["summary"]["model"] == trained["job"]["model"]
    log = (Path(trained["out"]) / "log.txt").read_text()
    assert "saved as weekly:1" in log
    shown = client.call(ShowSaved(ref="weekly"))
    assert shown["ref"] == "weekly:1" and shown["path"] == str(daemon.home.state / "models" / "weekly" / "1")
    manifest = shown["manifest"]
    assert (manifest["model"], manifest["source_run"], manifest["strategies"]) == ("mlp", f"run {trained['id']}", 6)
    assert (manifest["data"]["input_size"], manifest["data"]["horizon"]) == (8, 4)


def test_save_alias_export_import_and_remove_through_the_daemon(client, trained, tmp_path):
    saved = client.call(SaveRun(run=trained["id"], name="nightly"))
    assert (saved["ref"], saved["run"]) == ("nightly:1", trained["id"])
    assert client.call(SetAlias(ref="nightly:1", alias="champion"))["ref"] == "nightly:1"
    exported = client.call(ExportSaved(ref="nightly@champion", path=str(tmp_path / "n.tar")))
    assert exported["bytes"] == (tmp_path / "n.tar").stat().st_size > 0
    assert client.call(ImportSaved(path=str(tmp_path / "n.tar")))["ref"] == "nightly:2"
    models = {m.pop("name"): m for m in client.call(ListSaved())}
    assert models["nightly"].pop("summary")["model"] == trained["job"]["model"]  # the imported version's manifest
    assert models["nightly"] == {"versions": [1, 2], "latest": 2, "aliases": {"champion": 1}}
    aliased = refusal(client, RemoveSaved(ref="nightly:1"))
    assert aliased.code == "bad_saved_model" and "champion" in aliased.message
    assert client.call(RemoveSaved(ref="nightly:1", force=True))["removed"]
    assert client.call(SetAlias(ref="nightly", alias="champion"))["ref"] == "nightly:2"
    assert client.call(SetAlias(ref="nightly", alias="champion", remove=True))["removed"]
    models = {m.pop("name"): m for m in client.call(ListSaved())}
    assert models["nightly"] | {"summary": None} == {"versions": [2], "latest": 2, "aliases": {}, "summary": None}


def test_a_scoring_job_runs_in_a_worker_and_forecasts_what_its_source_run_did(client, trained, panel):
    client.call(SetAlias(ref="weekly:1", alias="champion"))
    run = client.call(Submit(job=JobSpec(data=panel, saved="weekly@champion", device="cpu")))["run"]
    done = succeeded(client, run)
    pd.testing.assert_frame_equal(
        pd.read_parquet(outputs(done).forecast), pd.read_parquet(outputs(trained).forecast), rtol=1e-6
    )
    results = client.call(ReadResults(run=done["id"], top=3))
    assert results["metrics"]["scored"]["saved_model"] == "weekly:1"
    assert [row["rank"] for row in results["top"]] == [1, 2, 3]
    listed = {r["id"]: r for r in client.call(ListRuns())["runs"]}
    assert listed[done["id"]]["job"]["saved"] == "weekly@champion"
    assert not RunFolder(Path(done["out"])).checkpoint_files()  # nothing trained, nothing to checkpoint
    not_trained = refusal(client, SaveRun(run=done["id"], name="again"))
    assert not_trained.code == "bad_state" and "scoring job" in not_trained.message


def test_bad_refs_runs_and_options_get_clear_errors_and_the_daemon_keeps_serving(client, trained, panel):
    unknown = refusal(client, ShowSaved(ref="nope"))
    assert unknown.code == "bad_saved_model" and "no saved model 'nope'" in unknown.message
    no_alias = refusal(client, Submit(job=JobSpec(data=panel, saved="weekly@gone", device="cpu")))
    assert no_alias.code == "invalid_spec" and "no alias 'gone'" in no_alias.message
    mixed = refusal(client, Submit(job=JobSpec(data=panel, saved="weekly", sets=["max_steps=3"])))
    assert mixed.code == "invalid_spec" and "--set" in mixed.message
    bad_ref = refusal(client, ShowSaved(ref="a@b@c"))  # not a reference: the protocol refuses it
    assert bad_ref.code == "bad_request"
    held = client.call(Submit(job=train_job(panel), placement=Placement(hold=True)))["run"]
    not_done = refusal(client, SaveRun(run=held["id"], name="early"))
    assert not_done.code == "bad_state" and "it is held" in not_done.message
    assert refusal(client, SaveRun(run=10_000, name="x")).code == "not_found"
    relative = refusal(client, ExportSaved(ref="weekly", path="w.tar"))
    assert "must be absolute" in relative.message
    assert client.call(Status())["pid"]  # still serving


def test_a_schedule_with_a_saved_model_queues_scoring_jobs(client, trained, panel):
    client.call(SetAlias(ref="weekly:1", alias="champion"))
    job = JobSpec(data=panel, saved="weekly@champion", device="cpu")
    schedule = client.call(AddSchedule(job=job, every_s=7 * 86400))["schedule"]
    try:
        assert schedule["name"] == "weekly@champion-schedule"
        run = client.call(RunScheduleNow(schedule=schedule["id"]))["run"]
        assert (run["schedule"], run["job"]["saved"]) == (schedule["id"], "weekly@champion")
        done = succeeded(client, run)
        assert json.loads(outputs(done).metrics.read_text())["scored"]["saved_model"] == "weekly:1"
    finally:
        client.call(RemoveSchedule(schedule=schedule["id"]))


def test_the_client_saves_lists_and_forecasts_with_wait_and_out(daemon, trained, panel, tmp_path, capsys):
    home = ["--home", str(daemon.home.state)]
    assert main(["save", str(trained["id"]), "cli", *home]) == ExitCode.OK
    assert f"saved run {trained['id']} as cli:1" in capsys.readouterr().out
    assert main(["saved", "ls", *home]) == ExitCode.OK
    assert "cli" in capsys.readouterr().out
    argv = ["forecast", "--saved", "cli:1", "--data", panel, "--device", "cpu", "--out", str(tmp_path / "fc")]
    assert main([*argv, "--top", "3", *home]) == ExitCode.OK
    printed = capsys.readouterr().out
    assert "Top strategies" in printed and "scored with saved model cli:1" in printed
    pd.testing.assert_frame_equal(
        pd.read_parquet(Outputs(tmp_path / "fc").forecast), pd.read_parquet(outputs(trained).forecast), rtol=1e-6
    )
    assert main(["forecast", "--saved", "missing", "--data", panel, *home]) == ExitCode.BAD_INPUT
    assert "no saved model 'missing'" in capsys.readouterr().err


def test_a_run_whose_save_as_fails_still_succeeds_with_a_warning(client, daemon, panel):
    (daemon.home.state / "models").mkdir(exist_ok=True)
    (daemon.home.state / "models" / "blocked").write_text("a file where the model's folder would go")
    done = succeeded(client, client.call(Submit(job=train_job(panel, save_as="blocked")))["run"])
    log = (Path(done["out"]) / "log.txt").read_text()
    assert "warning: --save-as blocked: the run was not saved" in log
    assert "blocked" not in {m["name"] for m in client.call(ListSaved())}
