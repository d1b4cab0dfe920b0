"""One Optuna study shared by two daemons (two homes on one machine) through an SQLite URL.

Each daemon asks its own trials, runs them as its own child runs and tells them; the storage ends with every trial
of both. A daemon restarted while the other trains reaps none of the other's RUNNING trials.
"""

from __future__ import annotations

import shutil
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import optuna
import pytest
from optuna.trial import TrialState

from stratcast.daemon.engine.study.study import ASKED_BY
from stratcast.shared.client import Client
from stratcast.shared.protocol import ListRuns, ShowStudy, StudySpec, SubmitStudy
from tests.integration.daemon_process import DaemonProcess
from tests.integration.test_study_daemon import WAIT_S, spec, wait_study

pytestmark = pytest.mark.slow

SUBMIT_S = 90.0
"""A submit opens the SQLite storage (SQLAlchemy's import and Optuna's schema) on busy cores: beyond 10 s here."""


@pytest.fixture(scope="module")
def panel(tmp_path_factory) -> str:
    from stratcast.daemon.engine.data.synthetic import make_strategy_panel

    path = tmp_path_factory.mktemp("data") / "panel.parquet"
    make_strategy_panel(6, 40, seed=4).to_parquet(path, index=False)
    return str(path)


@pytest.fixture(scope="module")
def storage(tmp_path_factory) -> str:
    return f"sqlite:///{tmp_path_factory.mktemp('shared') / 'studies.db'}"


@pytest.fixture(scope="module")
def daemons() -> Iterator[list[DaemonProcess]]:
    homes = [Path(tempfile.mkdtemp(prefix="sc-")) for _ in range(2)]  # unix socket paths are capped near 100 bytes
    started: list[DaemonProcess] = []
    try:
        started.extend(DaemonProcess(home).start() for home in homes)
        yield started
    finally:
        for daemon in started:
            daemon.stop()
        for home in homes:
            shutil.rmtree(home, ignore_errors=True)


def shared(panel: str, storage: str, name: str, *, long: bool = False, **kw: Any) -> StudySpec:
    """A study of ``name`` in the shared ``storage``; ``long``: one trial that trains until stopped."""
    if long:
        kw.update(trials=1, steps=100_000)
    study = spec(panel, storage=storage, name=name, keep="none", **kw)
    if long:  # no early stop: the trial is still training when the other daemon restarts
        study.job.sets.append("early_stop_patience=-1")
    return study


def submit(daemon: DaemonProcess, study: StudySpec) -> int:
    with Client(daemon.home, timeout_s=SUBMIT_S) as client:
        return int(client.call(SubmitStudy(spec=study))["study"]["id"])


def trials_in(storage: str, name: str) -> list[optuna.trial.FrozenTrial]:
    return optuna.load_study(study_name=name, storage=storage).get_trials()


def wait_trials(storage: str, name: str, ok, what: str) -> list[optuna.trial.FrozenTrial]:
    deadline = time.monotonic() + WAIT_S
    trials: list[optuna.trial.FrozenTrial] = []
    while time.monotonic() < deadline:
        trials = trials_in(storage, name)
        if ok(trials):
            return trials
        time.sleep(0.3)
    raise AssertionError(f"the shared study never had {what}: {[(t.number, t.state.name) for t in trials]}")


def test_two_daemons_share_one_study_each_running_and_telling_its_own_trials(daemons, panel, storage):
    first = submit(daemons[0], shared(panel, storage, "together"))
    wait_trials(storage, "together", lambda ts: len(ts) > 0, "a first trial")  # the second joins a started study
    second = submit(daemons[1], shared(panel, storage, "together"))
    shown = []
    for daemon, study in zip(daemons, (first, second), strict=True):
        with Client(daemon.home) as client:
            shown.append(wait_study(client, study, ("finished", "failed")))
    assert [s["study"]["state"] for s in shown] == ["finished", "finished"]
    trials = trials_in(storage, "together")
    assert sorted(t.number for t in trials) == list(range(6))
    assert all(t.state == TrialState.COMPLETE and t.values[0] > 0 for t in trials)
    assert all(set(t.params) == {"learning_rate", "mlp.dropout"} for t in trials)
    askers = {t.user_attrs[ASKED_BY] for t in trials}
    assert len(askers) == 2 and all(str(d.home.state) in " ".join(askers) for d in daemons)
    configurations = {tuple(sorted(t.params.items())) for t in trials}
    assert len(configurations) == 6, "two daemons of one seed drew the same configuration"
    for daemon, study in zip(daemons, (first, second), strict=True):  # each sees all six, with runs for its own
        mine = {t.number for t in trials if t.user_attrs[ASKED_BY].endswith(str(daemon.home.state))}
        with Client(daemon.home) as client:
            view = client.call(ShowStudy(study=study))
        assert len(mine) == 3 and len(view["trials"]) == 6
        assert {t["number"] for t in view["trials"] if t["run"] is not None} == mine
        assert {t["number"] for t in view["trials"] if t["state"] == "COMPLETE"} == set(range(6))


def test_a_restarted_daemon_reaps_none_of_the_other_daemons_running_trials(daemons, panel, storage):
    studies = [submit(d, shared(panel, storage, "restart", long=True)) for d in daemons]

    def both_training(trials):
        return len(trials) == 2 and all(t.state == TrialState.RUNNING for t in trials)

    wait_trials(storage, "restart", both_training, "two RUNNING trials")
    other = next(
        t for t in trials_in(storage, "restart") if t.user_attrs[ASKED_BY].endswith(str(daemons[1].home.state))
    )
    restarted = time.time()
    daemons[0].stop()
    daemons[0].start()  # its study is reopened and reaped at start
    with Client(daemons[0].home) as client:
        deadline = time.monotonic() + WAIT_S
        while (client.call(ShowStudy(study=studies[0]))["study"]["active_since"] or 0) < restarted:
            assert time.monotonic() < deadline, "the restarted daemon never reopened its study"
            time.sleep(0.2)
        mine = [r for r in client.call(ListRuns())["runs"] if r["study"] == studies[0]]
    assert [r["state"] for r in mine] != ["failed"]
    states = {t.number: t.state for t in trials_in(storage, "restart")}
    assert states[other.number] == TrialState.RUNNING, "the restart reaped the other daemon's trial"
    assert set(states.values()) == {TrialState.RUNNING}, "an interrupted run's trial is not an orphan either"
