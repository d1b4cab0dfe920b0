"""Optuna studies run by a real daemon: trials as child runs, told from their runs' endings, stopped and resumed.

One daemon for the module (tiny mlp trials on a tiny panel, a few steps each); the restart test has its own. Each
study is read back with Optuna's own API from the journal file in the daemon's home.
"""

from __future__ import annotations

import shutil
import tempfile
import time
from pathlib import Path
from typing import Any

import optuna
import pytest
from optuna.storages.journal import JournalFileBackend, JournalStorage
from optuna.trial import TrialState

from stratcast.daemon.engine.data.synthetic import make_strategy_panel
from stratcast.daemon.engine.study.study import JOURNAL
from stratcast.daemon.store import Store
from stratcast.shared.client import Client, RequestFailed
from stratcast.shared.errors import ExitCode
from stratcast.shared.protocol import (
    JobSpec,
    KillRun,
    ListRuns,
    ListStudies,
    ResumeStudy,
    ShowRun,
    ShowStudy,
    StopStudy,
    StudySpec,
    SubmitStudy,
)
from stratcast.tui.cli import main
from tests.daemon.engine.small_jobs import MLP_SPACE as SPACE
from tests.integration.daemon_process import DaemonProcess

pytestmark = pytest.mark.slow

WAIT_S = 120.0


@pytest.fixture(scope="module")
def panel(tmp_path_factory) -> str:
    path = tmp_path_factory.mktemp("data") / "panel.parquet"
    make_strategy_panel(6, 40, seed=4).to_parquet(path, index=False)
    return str(path)


def spec(panel: str, trials: int = 3, steps: int = 6, **kw: Any) -> StudySpec:
    sets = [f"max_steps={steps}", "batch_size=32", "val_check_steps=3", "hidden_size=8", "num_layers=1"]
    job = JobSpec(data=panel, model="mlp", horizon=4, input_size=8, holdout=4, device="cpu", sets=sets)
    return StudySpec(**{"models": ["mlp"], "trials": trials, "pruner": "none", "space": SPACE, "job": job, **kw})


def wait_study(client: Client, study: int, states: tuple[str, ...], timeout: float = WAIT_S) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    shown: dict[str, Any] = {}
    while time.monotonic() < deadline:
        shown = client.call(ShowStudy(study=study))
        if shown["study"]["state"] in states:
            return shown
        time.sleep(0.2)
    raise AssertionError(f"study {study} is not {states}: {shown}")


def wait_child(
    client: Client, study: int, trial: int, states: tuple[str, ...], *, training: bool = False
) -> dict[str, Any]:
    """The run of a study's trial once it is in one of ``states`` (and, with ``training``, past its first step)."""
    deadline = time.monotonic() + WAIT_S
    seen: list[Any] = []
    while time.monotonic() < deadline:
        seen = [r for r in client.call(ListRuns())["runs"] if r["study"] == study and r["trial"] == trial]
        for run in seen:
            if run["state"] in states and (not training or run["checkpoint"] or run["progress"].get("step")):
                return dict(run)
        time.sleep(0.1)
    raise AssertionError(f"no run of study {study} trial {trial} became {states}: {seen}")


def journal_study(daemon: DaemonProcess, name: str) -> optuna.Study:
    storage = JournalStorage(JournalFileBackend(str(daemon.home.state / JOURNAL)))
    return optuna.load_study(study_name=name, storage=storage)


def test_a_study_completes_its_trials_as_child_runs(daemon, client, panel):
    study = client.call(SubmitStudy(spec=spec(panel)))["study"]
    assert study["state"] == "running"
    shown = wait_study(client, study["id"], ("finished", "failed"))
    assert shown["study"]["state"] == "finished" and shown["study"]["asked"] == 3
    assert [t["state"] for t in shown["trials"]] == ["COMPLETE"] * 3
    first = min(t["started"] for t in shown["trials"])  # a finished study keeps the time it ran
    assert shown["study"]["elapsed_s"] >= max(t["completed"] for t in shown["trials"]) - first > 0
    assert shown["best"] and shown["best"][0] in {0, 1, 2}
    runs = {t["run"] for t in shown["trials"]}
    for run_id in runs:
        run = client.call(ShowRun(run=run_id))["run"]
        assert run["state"] == "succeeded" and run["study"] == study["id"]
        assert run["name"] == f"study-{study['id']}/t{run['trial']}"
    loaded = journal_study(daemon, study["name"])  # Optuna's own API, on the daemon's journal file
    assert len(loaded.trials) == 3
    for trial in loaded.trials:
        assert trial.state == TrialState.COMPLETE
        assert set(trial.params) == {"learning_rate", "mlp.dropout"}
        assert trial.values is not None and trial.values[0] > 0
    listed = client.call(ListStudies())["studies"]
    assert study["id"] in [s["id"] for s in listed]


def test_a_killed_trial_is_failed_killed_and_the_study_goes_on(daemon, client, panel):
    study = client.call(SubmitStudy(spec=spec(panel, steps=400)))["study"]
    first = wait_child(client, study["id"], 0, ("running",))
    client.call(KillRun(run=first["id"]))
    shown = wait_study(client, study["id"], ("finished", "failed"))
    states = {t["number"]: t for t in shown["trials"]}
    assert states[0]["state"] == "FAIL" and states[0]["reason"].startswith("killed")
    assert [states[n]["state"] for n in (1, 2)] == ["COMPLETE", "COMPLETE"]
    loaded = journal_study(daemon, study["name"])
    assert loaded.trials[0].user_attrs["fail_reason"] == "killed"


def test_an_invalid_space_is_refused_naming_the_field(client, panel):
    bad = spec(panel, space="[mlp]\nno_such_field = 3\n")
    with pytest.raises(RequestFailed) as info:
        client.call(SubmitStudy(spec=bad))
    assert info.value.code == "invalid_spec" and "no_such_field" in info.value.message
    with pytest.raises(RequestFailed) as info:
        client.call(SubmitStudy(spec=spec(panel, objectives=["holdout-rmse"], pruner="nope")))
    assert info.value.code == "invalid_spec" and info.value.message.startswith("pruner:")
    with pytest.raises(RequestFailed) as info:
        client.call(SubmitStudy(spec=spec(panel, space="[train\n", space_format="toml")))
    assert info.value.code == "invalid_spec" and info.value.message.startswith("space:")


def test_a_stopped_study_asks_nothing_until_resumed(client, panel):
    study = client.call(SubmitStudy(spec=spec(panel, trials=2, steps=400)))["study"]
    first = wait_child(client, study["id"], 0, ("running",), training=True)  # a stop before then ends the worker
    stopped = client.call(StopStudy(study=study["id"]))["study"]
    assert stopped["state"] == "stopped"
    run = wait_child(client, study["id"], 0, ("stopped", "succeeded"))
    time.sleep(2.0)  # a few of the manager's steps: none may ask a trial
    shown = client.call(ShowStudy(study=study["id"]))
    assert shown["study"]["asked"] == 1 and shown["study"]["state"] == "stopped"
    if run["state"] == "stopped":
        assert shown["trials"][0]["state"] == "RUNNING"  # resumable, not told
    with pytest.raises(RequestFailed) as info:
        client.call(StopStudy(study=study["id"]))
    assert info.value.code == "bad_state"
    client.call(ResumeStudy(study=study["id"]))
    shown = wait_study(client, study["id"], ("finished", "failed"))
    assert [t["state"] for t in shown["trials"]] == ["COMPLETE", "COMPLETE"]
    assert client.call(ShowRun(run=first["id"]))["run"]["state"] == "succeeded"  # the same run, resumed


def test_a_restarted_daemon_reaps_orphaned_trials_and_goes_on(panel):
    home = Path(tempfile.mkdtemp(prefix="sc-"))
    process = DaemonProcess(home).start()
    try:
        with Client(process.home) as client:
            study = client.call(SubmitStudy(spec=spec(panel, trials=3, steps=400)))["study"]
            wait_child(client, study["id"], 0, ("running",))
        process.kill9()
        orphan = journal_study(process, study["name"]).ask()  # a trial asked whose run never came: RUNNING
        with Store(process.home.database) as store:
            assert [r.trial for r in store.study_runs(study["id"])] == [0]
        process = DaemonProcess(home).start()
        with Client(process.home) as client:
            shown = wait_study(client, study["id"], ("finished", "failed"))
        trials = {t["number"]: t for t in shown["trials"]}
        assert trials[orphan.number]["state"] == "FAIL" and trials[orphan.number]["reason"].startswith("crashed")
        assert trials[0]["state"] == "COMPLETE"  # its run was requeued and resumed
        assert not [t for t in trials.values() if t["state"] == "RUNNING"]
        assert shown["study"]["asked"] == 3 and len(trials) == 4
    finally:
        process.stop()
        shutil.rmtree(home, ignore_errors=True)


def test_the_command_line_tunes_lists_shows_stops_and_resumes(daemon, client, panel, tmp_path, capsys):
    home = ["--home", str(daemon.home.state)]
    space = tmp_path / "space.toml"
    space.write_text(SPACE)
    job = ["--data", panel, "--horizon", "4", "--input-size", "8", "--holdout", "4", "--device", "cpu"]
    sets = ["--set", "max_steps=6", "--set", "batch_size=32", "--set", "val_check_steps=3"]
    argv = ["tune", *job, *sets, "--model", "mlp", "--trials", "2", "--pruner", "none", "--space", str(space)]
    assert main([*argv, "--timeout", "600", "--study", "cli-study", *home]) == ExitCode.OK
    printed = capsys.readouterr().out
    assert "cli-study: running" in printed
    study = next(s for s in client.call(ListStudies())["studies"] if s["name"] == "cli-study")
    assert study["spec"]["timeout_s"] == 600 and study["spec"]["space"] == SPACE
    assert main(["study", "stop", str(study["id"]), *home]) == ExitCode.OK
    assert "stopped" in capsys.readouterr().out
    assert main(["study", "resume", str(study["id"]), *home]) == ExitCode.OK
    wait_study(client, study["id"], ("finished",))
    assert main(["studies", *home]) == ExitCode.OK
    assert "cli-study" in capsys.readouterr().out
    assert main(["study", str(study["id"]), *home]) == ExitCode.OK
    shown = capsys.readouterr().out
    assert "COMPLETE" in shown and "learning_rate=" in shown and "best: trial" in shown
    assert main(["ls", *home]) == ExitCode.OK
    assert f"study-{study['id']}/t0" in capsys.readouterr().out
    with pytest.raises(SystemExit):
        main(["study", "pause", "1", *home])
    running = client.call(SubmitStudy(spec=spec(panel, trials=1, name="twice")))["study"]
    with pytest.raises(RequestFailed) as info:
        client.call(SubmitStudy(spec=spec(panel, trials=1, name="twice")))
    assert info.value.code == "invalid_spec" and info.value.message.startswith(f"name: study {running['id']}")
    wait_study(client, running["id"], ("finished",))
