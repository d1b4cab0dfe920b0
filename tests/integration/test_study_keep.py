"""A study keeps its best: a final run trained and saved when it finishes, ``retrain_study``, importances, times.

One daemon for the module (tiny mlp trials on a tiny panel, as in ``test_study_daemon``).
"""

from __future__ import annotations

import time
from typing import Any

import pytest

from stratcast.shared.client import Client, RequestFailed
from stratcast.shared.errors import ExitCode
from stratcast.shared.protocol import KillRun, ListRuns, RetrainStudy, ShowRun, ShowSaved, ShowStudy, SubmitStudy
from stratcast.tui.cli import main
from tests.integration.test_study_daemon import WAIT_S, panel, spec, wait_child, wait_study

pytestmark = pytest.mark.slow

__all__ = ["panel"]  # the module's panel fixture


def wait_run(client: Client, run_id: int, states: tuple[str, ...] = ("succeeded", "failed", "killed")) -> Any:
    deadline = time.monotonic() + WAIT_S
    run: dict[str, Any] = {}
    while time.monotonic() < deadline:
        run = client.call(ShowRun(run=run_id))["run"]
        if run["state"] in states:
            return run
        time.sleep(0.2)
    raise AssertionError(f"run {run_id} is not {states}: {run}")


def test_a_finished_study_trains_its_best_on_all_data_and_saves_it(client, panel):
    study = client.call(SubmitStudy(spec=spec(panel, trials=5, save_as="kept")))["study"]
    complete = 0
    while True:  # no importances before 5 COMPLETE trials
        shown = client.call(ShowStudy(study=study["id"]))
        complete = sum(t["state"] == "COMPLETE" for t in shown["trials"])
        if complete < 5:
            assert shown["importances"] == {}
        if shown["study"]["state"] in ("finished", "failed"):
            break
        time.sleep(0.2)
    assert shown["study"]["state"] == "finished" and complete == 5
    importances = shown["importances"]
    assert set(importances) == {"learning_rate", "mlp.dropout"} and abs(sum(importances.values()) - 1) < 1e-6
    for t in shown["trials"]:
        assert t["started"] is not None and t["completed"] is not None and t["completed"] >= t["started"]
    best = next(t for t in shown["trials"] if t["number"] == shown["best"][0])
    final_id = shown["study"]["final_run"]
    assert final_id is not None
    final = wait_run(client, final_id)
    assert final["state"] == "succeeded" and final["name"] == f"study-{study['id']}/best"
    assert final["study"] == study["id"] and final["trial"] is None
    job = final["job"]
    assert (job["holdout"], job["backtest"], job["save_as"]) == (0, None, "kept")
    trial_job = client.call(ShowRun(run=best["run"]))["run"]["job"]
    assert job["sets"] == trial_job["sets"]  # the best trial's configuration, all of it
    manifest = client.call(ShowSaved(ref="kept"))["manifest"]
    assert manifest["source_run"] == f"run {final_id}"
    assert manifest["spec"]["train"]["learning_rate"] == pytest.approx(best["params"]["learning_rate"])
    assert manifest["spec"]["model_params"]["dropout"] == pytest.approx(best["params"]["mlp.dropout"])
    # trained on all the data, the version has no holdout of its own: the trial's value is its evidence
    evidence = manifest["study"]
    assert (evidence["study"], evidence["trial"], evidence["keep"]) == (study["name"], best["number"], "all-data")
    assert evidence["objectives"] == ["holdout-rmse"] and evidence["values"] == pytest.approx(best["values"])
    assert evidence["complete"] == 5
    assert client.call(ShowStudy(study=study["id"]))["study"]["state"] == "finished"  # still: its trials are done


def test_keep_none_queues_nothing_and_retrain_trains_the_trial_asked_for(daemon, client, panel, capsys):
    study = client.call(SubmitStudy(spec=spec(panel, trials=2, keep="none")))["study"]
    shown = wait_study(client, study["id"], ("finished", "failed"))
    time.sleep(1.5)  # a few of the manager's steps: none may queue a final run
    shown = client.call(ShowStudy(study=study["id"]))
    assert shown["study"]["final_run"] is None and shown["importances"] == {}  # 2 trials: too few
    names = [r["name"] for r in client.call(ListRuns())["runs"]]
    assert f"study-{study['id']}/best" not in names
    with pytest.raises(RequestFailed) as info:
        client.call(RetrainStudy(study=study["id"], trial=7))
    assert info.value.code == "invalid_spec" and info.value.message.startswith("trial: trial 7")
    run = client.call(RetrainStudy(study=study["id"], trial=1, keep="holdout", save_as="trial-one"))["run"]
    trial_job = client.call(ShowRun(run=shown["trials"][1]["run"]))["run"]["job"]
    assert run["job"]["sets"] == trial_job["sets"] and run["job"]["holdout"] == trial_job["holdout"] == 4
    assert run["job"]["save_as"] == "trial-one"
    assert client.call(ShowStudy(study=study["id"]))["study"]["final_run"] == run["id"]
    assert wait_run(client, run["id"])["state"] == "succeeded"
    kept = client.call(ShowSaved(ref="trial-one"))["manifest"]["study"]
    assert (kept["trial"], kept["keep"], kept["values"]) == (1, "holdout", shown["trials"][1]["values"])
    home = ["--home", str(daemon.home.state)]
    assert main(["study", "retrain", str(study["id"]), "--trial", "0", "--save-as", "trial-zero", *home]) == 0
    printed = capsys.readouterr().out
    assert f"study-{study['id']}/best" in printed
    assert main(["study", str(study["id"]), *home]) == ExitCode.OK
    printed = capsys.readouterr().out
    assert "final run:" in printed
    with pytest.raises(SystemExit):
        main(["study", "retrain", str(study["id"]), "--keep", "nope", *home])


def test_a_study_with_no_complete_trial_keeps_nothing_and_cannot_be_retrained(client, panel):
    study = client.call(SubmitStudy(spec=spec(panel, trials=1, steps=400)))["study"]
    first = wait_child(client, study["id"], 0, ("running",))
    client.call(KillRun(run=first["id"]))
    shown = wait_study(client, study["id"], ("finished", "failed"))
    assert shown["study"]["final_run"] is None and "best not kept" in shown["study"]["reason"]
    with pytest.raises(RequestFailed) as info:
        client.call(RetrainStudy(study=study["id"]))
    assert info.value.code == "bad_state" and "no COMPLETE trial" in info.value.message
