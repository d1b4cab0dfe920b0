"""Daemon studies over holdout and backtest objectives together, and backtests that report each cutoff's value.

A trial of both kinds of objectives is two child runs, its holdout run then its backtest; a backtest whose job asks
(``report_cutoffs``, what a Wilcoxon study's trials get) sends a ``cutoff`` event per finished cutoff. One daemon for
the module; tiny mlp trials on a tiny panel, two cutoffs or four.
"""

from __future__ import annotations

import time
from typing import Any

import msgspec
import optuna
import pytest
from optuna.storages.journal import JournalFileBackend, JournalStorage

from stratcast.daemon.engine.study.objectives import OBJECTIVES, backtest_top_k, cutoff_scores, holdout_relative_rmse
from stratcast.daemon.engine.study.study import JOURNAL
from stratcast.shared.client import Client
from stratcast.shared.errors import ExitCode
from stratcast.shared.protocol import (
    BacktestOptions,
    JobSpec,
    KillRun,
    ListRuns,
    ResumeStudy,
    ShowRun,
    ShowStudy,
    StopStudy,
    Submit,
    SubmitStudy,
)
from stratcast.tui.cli import main
from tests.integration.test_study_daemon import journal_study, panel, spec, wait_child, wait_study

pytestmark = pytest.mark.slow

__all__ = ["panel"]  # the module's panel fixture, shared with the study tests

WAIT_S = 180.0
BACKTEST = BacktestOptions(cutoffs=2, every=2, refit_every=2, top=["2"], draws=20)
MIXED = ["holdout-rmse", "backtest-top-k"]


def mixed_spec(panel: str, **kw: Any) -> Any:
    study = spec(panel, objectives=MIXED, sampler="nsga2", **kw)  # keeps nothing: its runs are its trials'
    return msgspec.structs.replace(study, keep="none", job=msgspec.structs.replace(study.job, backtest=BACKTEST))


def wait_run(client: Client, run_id: int, states: tuple[str, ...]) -> dict[str, Any]:
    deadline = time.monotonic() + WAIT_S
    shown: dict[str, Any] = {}
    while time.monotonic() < deadline:
        shown = client.call(ShowRun(run=run_id))
        if shown["run"]["state"] in states:
            return shown
        time.sleep(0.2)
    raise AssertionError(f"run {run_id} is not {states}: {shown.get('run')}")


def pareto(values: dict[int, list[float]]) -> set[int]:
    """The trials no other beats on both objectives (holdout RMSE down, profit up)."""

    def beats(a: list[float], b: list[float]) -> bool:
        return a[0] <= b[0] and a[1] >= b[1] and a != b

    return {n for n, v in values.items() if not any(beats(w, v) for m, w in values.items() if m != n)}


def test_a_mixed_study_runs_each_trial_as_a_holdout_run_then_a_backtest_and_shows_the_pareto_front(
    daemon, client, panel, capsys
):
    study = client.call(SubmitStudy(spec=mixed_spec(panel, trials=3)))["study"]
    shown = wait_study(client, study["id"], ("finished", "failed"), timeout=WAIT_S)
    assert shown["study"]["state"] == "finished" and shown["study"]["asked"] == 3
    runs = [r for r in client.call(ListRuns())["runs"] if r["study"] == study["id"]]
    assert len(runs) == 6 and {r["state"] for r in runs} == {"succeeded"}
    values = {}
    for trial in shown["trials"]:
        n = trial["number"]
        assert trial["state"] == "COMPLETE" and len(trial["values"]) == 2
        mine = {r["name"]: r for r in runs if r["trial"] == n}
        holdout, backtest = mine[f"study-{study['id']}/t{n}"], mine[f"study-{study['id']}/t{n}-backtest"]
        assert holdout["job"]["backtest"] is None and holdout["job"]["holdout"] == 4
        assert backtest["job"]["backtest"] == msgspec.to_builtins(BACKTEST) and backtest["job"]["holdout"] == 0
        assert backtest["job"]["sets"] == holdout["job"]["sets"]  # the same configuration
        assert trial["run"] == backtest["id"] > holdout["id"]  # the trial's latest run
        first = client.call(ShowRun(run=holdout["id"]))["metrics"]
        second = client.call(ShowRun(run=backtest["id"]))
        assert trial["values"] == pytest.approx([holdout_relative_rmse(first), backtest_top_k(second["metrics"])])
        assert not [e for e in second["events"] if e["kind"] == "cutoff"]  # no pruner asked for them
        values[n] = trial["values"]
    assert set(shown["best"]) == pareto(values)
    assert main(["ls", "--home", str(daemon.home.state)]) == ExitCode.OK
    listed = capsys.readouterr().out
    assert f"study-{study['id']}/t0-backtest" in listed and f"study-{study['id']}/t0 " in listed
    assert main(["study", str(study["id"]), "--home", str(daemon.home.state)]) == ExitCode.OK
    printed = capsys.readouterr().out
    assert f"Pareto front: {', '.join(f'trial {n}' for n in shown['best'])}" in printed


def test_a_mixed_trial_whose_holdout_run_is_killed_fails_killed_with_no_backtest(client, panel):
    study = client.call(SubmitStudy(spec=mixed_spec(panel, trials=1, steps=400)))["study"]
    first = wait_child(client, study["id"], 0, ("running",))
    client.call(KillRun(run=first["id"]))
    shown = wait_study(client, study["id"], ("finished", "failed"), timeout=WAIT_S)
    [trial] = shown["trials"]
    assert trial["state"] == "FAIL" and trial["reason"].startswith("killed") and trial["run"] == first["id"]
    assert [r["id"] for r in client.call(ListRuns())["runs"] if r["study"] == study["id"]] == [first["id"]]


def test_a_backtest_asked_for_cutoff_values_reports_each_as_the_objective_reads_it(client, panel):
    options = msgspec.structs.replace(BACKTEST, cutoffs=4)  # two blocks of two cutoffs
    sets = ["max_steps=6", "batch_size=32", "hidden_size=8", "num_layers=1"]
    job = JobSpec(
        data=panel,
        model="mlp",
        horizon=4,
        input_size=8,
        device="cpu",
        sets=sets,
        backtest=options,
        report_cutoffs="backtest-top-k",
    )
    run = client.call(Submit(job=job))["run"]
    shown = wait_run(client, run["id"], ("succeeded", "failed", "killed"))
    assert shown["run"]["state"] == "succeeded"
    reported = [e["data"] for e in shown["events"] if e["kind"] == "cutoff"]
    assert [e["cutoff"] for e in reported] == [0, 1, 2, 3]
    expected = cutoff_scores(OBJECTIVES["backtest-top-k"], shown["metrics"])
    assert [e["value"] for e in reported] == pytest.approx(expected)
    assert sum(expected) / 4 == pytest.approx(backtest_top_k(shown["metrics"]))


def test_a_stopped_mixed_study_holds_its_trial_and_resumed_runs_its_backtest_after_its_holdout_run(client, panel):
    study = client.call(SubmitStudy(spec=mixed_spec(panel, trials=1, steps=400)))["study"]
    first = wait_child(client, study["id"], 0, ("running",), training=True)  # a stop before then ends the worker
    assert client.call(StopStudy(study=study["id"]))["study"]["state"] == "stopped"
    wait_run(client, first["id"], ("stopped", "succeeded"))
    time.sleep(2.0)  # a few of the manager's steps: no backtest may be queued while the study is stopped
    assert [r["id"] for r in client.call(ListRuns())["runs"] if r["study"] == study["id"]] == [first["id"]]
    assert client.call(ShowStudy(study=study["id"]))["trials"][0]["state"] == "RUNNING"
    client.call(ResumeStudy(study=study["id"]))
    shown = wait_study(client, study["id"], ("finished", "failed"), timeout=WAIT_S)
    [trial] = shown["trials"]
    runs = [r for r in client.call(ListRuns())["runs"] if r["study"] == study["id"]]
    assert sorted((r["name"], r["state"]) for r in runs) == [
        (f"study-{study['id']}/t0", "succeeded"),
        (f"study-{study['id']}/t0-backtest", "succeeded"),
    ]
    assert trial["state"] == "COMPLETE" and len(trial["values"]) == 2


def wilcoxon_spec(panel: str, name: str, cutoffs: int, refit_every: int, steps: int) -> Any:
    study = spec(panel, trials=1, steps=steps, objectives=["backtest-top-k"], pruner="wilcoxon", name=name)
    options = msgspec.structs.replace(BACKTEST, cutoffs=cutoffs, refit_every=refit_every)
    return msgspec.structs.replace(study, job=msgspec.structs.replace(study.job, holdout=0, backtest=options))


def test_a_wilcoxon_studys_backtest_reports_its_cutoffs_to_the_trial_as_its_metrics_read_them(daemon, client, panel):
    study = client.call(SubmitStudy(spec=wilcoxon_spec(panel, "wilcoxon-values", 4, 2, 6)))["study"]
    shown = wait_study(client, study["id"], ("finished", "failed"), timeout=WAIT_S)
    [trial] = shown["trials"]
    assert trial["state"] == "COMPLETE"
    run = client.call(ShowRun(run=trial["run"]))
    assert run["run"]["job"]["report_cutoffs"] == "backtest-top-k"
    expected = cutoff_scores(OBJECTIVES["backtest-top-k"], run["metrics"])
    told = journal_study(daemon, study["name"]).trials[0]
    assert len(expected) == 4 and [told.intermediate_values[k] for k in range(4)] == pytest.approx(expected)
    assert told.values[0] == pytest.approx(sum(expected) / 4)


def test_a_wilcoxon_trial_worse_than_the_best_at_every_cutoff_is_pruned_at_the_fourth(daemon, client, panel):
    seeded = optuna.create_study(
        study_name="wilcoxon-prune",
        storage=JournalStorage(JournalFileBackend(str(daemon.home.state / JOURNAL))),
        direction="maximize",
    )  # a best trial no real one comes near, at every cutoff: the test is sure after four (p = 1/16)
    seeded.add_trial(optuna.trial.create_trial(value=1e9, intermediate_values={k: 1e9 for k in range(8)}))
    study = client.call(SubmitStudy(spec=wilcoxon_spec(panel, "wilcoxon-prune", 8, 1, 200)))["study"]
    shown = wait_study(client, study["id"], ("finished", "failed"), timeout=WAIT_S)
    trial = next(t for t in shown["trials"] if t["number"] == 1)
    assert trial["state"] == "PRUNED" and trial["reason"].startswith("pruned at cutoff 4 (value ")
    run = client.call(ShowRun(run=trial["run"]))
    assert run["run"]["state"] == "stopped"
    assert [e["data"]["cutoff"] for e in run["events"] if e["kind"] == "pruned"] == [3]
    reported = {e["data"]["cutoff"]: e["data"]["value"] for e in run["events"] if e["kind"] == "cutoff"}
    told = journal_study(daemon, study["name"]).trials[1]
    assert told.intermediate_values == pytest.approx({k: reported[k] for k in range(4)})
