"""The daemon's study manager without a daemon: progress reports to the pruner, and run endings told to Optuna."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import msgspec
import optuna
import pytest
from optuna.trial import TrialState

from stratcast.daemon.engine.study.objectives import ObjectiveError, cutoff_objective, parse_objectives
from stratcast.daemon.engine.study.space import build_space
from stratcast.daemon.engine.study.study import make_pruner, open_storage
from stratcast.daemon.handlers.common import InvalidSpec
from stratcast.daemon.handlers.submit import check_job
from stratcast.daemon.store import Store
from stratcast.daemon.studies import LiveStudy, StudyManager, fixed_job, prepare, second_backtest
from stratcast.daemon.worker import EXIT_BAD_INPUT
from stratcast.shared.protocol import BacktestOptions, JobSpec, Placement, RunInfo, StudyInfo, StudySpec
from stratcast.shared.runfiles import RunFolder


class FakeDaemon:
    """What the manager calls when it prunes: the runner's stop, an event, a run update."""

    def __init__(self) -> None:
        self.stopped: list[int] = []
        self.updates: list[tuple[int, dict[str, Any]]] = []
        self.runner = SimpleNamespace(stop=self.stop)
        self.db = SimpleNamespace(add_event=lambda *a, **k: None)
        self.home = SimpleNamespace(state=Path("/nonexistent/stratcast-home"))  # names this daemon as trials' asker

    def stop(self, run: int) -> bool:
        self.stopped.append(run)
        return True

    def update_run(self, run_id: int, **fields: Any) -> None:
        self.updates.append((run_id, fields))


def run(number: int, state: Any = "running", **kw: Any) -> RunInfo:
    return RunInfo(
        id=100 + number,
        name="",
        state=state,
        job=kw.pop("job", JobSpec(data="/data.parquet", model="mlp")),
        placement=Placement(),
        created=0.0,
        study=1,
        trial=number,
        out=kw.pop("out", "/nowhere"),
        **kw,
    )


def live_study(pruner: optuna.pruners.BasePruner | None = None) -> LiveStudy:
    study = optuna.create_study(pruner=pruner or optuna.pruners.NopPruner())
    space = build_space(["mlp"])
    objectives = parse_objectives("holdout-rmse")
    return LiveStudy(study, space, objectives, JobSpec(data="/data.parquet", model="mlp", holdout=4))


def test_a_trial_worse_than_the_median_is_stopped_and_told_pruned_when_its_run_ends():
    live = live_study(optuna.pruners.MedianPruner(n_startup_trials=1, n_warmup_steps=0))
    first = live.study.ask()
    first.report(0.1, 2)
    first.report(0.1, 3)
    live.study.tell(first, 0.1)
    live.study.ask()  # trial 1, its run below
    d = FakeDaemon()
    manager = StudyManager(d)  # type: ignore[arg-type]
    manager.live[1] = live

    async def report(step: int, value: float) -> None:
        manager.progress(run(1), step, value)
        await asyncio.gather(*manager._tasks)

    asyncio.run(report(1, 10.0))  # no finished trial reported step 1: nothing to compare, it goes on
    assert d.stopped == [] and live.pruned == {}
    asyncio.run(report(2, 10.0))
    assert d.stopped == [101] and "pruned at step 2" in live.pruned[101]
    assert manager._tell(live, run(1, "stopped"))
    told = live.study.trials[1]
    assert told.state == TrialState.PRUNED and told.user_attrs["reason"].startswith("pruned at step 2")


@pytest.mark.parametrize(
    ("state", "exit", "told", "reason"),
    [
        ("killed", "signal SIGKILL", TrialState.FAIL, "killed"),
        ("oom-failed", "exit 3", TrialState.FAIL, "oom"),
        ("failed", f"exit {EXIT_BAD_INPUT}", TrialState.PRUNED, "invalid"),
        ("failed", "signal SIGSEGV", TrialState.FAIL, "crashed"),
    ],
)
def test_a_run_that_ended_badly_is_told_with_its_reason(state, exit, told, reason):
    live = live_study()
    live.study.ask()
    manager = StudyManager(FakeDaemon())  # type: ignore[arg-type]
    assert not manager._tell(live, run(0, "running"))  # still running: nothing told
    assert not manager._tell(live, run(0, "stopped"))  # stopped by hand: resumable, still RUNNING
    assert manager._tell(live, run(0, state, exit=exit))
    trial = live.study.trials[0]
    assert trial.state == told and trial.user_attrs["fail_reason"] == reason


def test_a_succeeded_run_is_told_its_objective_from_its_metrics(tmp_path: Path):
    live = live_study()
    live.study.ask()
    out = tmp_path / "run"
    (out / "out").mkdir(parents=True)
    errors = {"model": {"rmse": 2.0}, "zero": {"rmse": 4.0}, "trailing_mean": {"rmse": 8.0}}
    (out / "out" / "metrics.json").write_text(json.dumps({"errors": errors}))
    manager = StudyManager(FakeDaemon())  # type: ignore[arg-type]
    assert manager._tell(live, run(0, "succeeded", out=str(out)))
    assert live.study.trials[0].values == [0.5]  # 2.0 over the best baseline's 4.0


def test_holdout_and_backtest_objectives_make_a_holdout_run_then_a_backtest_and_a_holdout_is_added():
    job = JobSpec(data="/data.parquet", model="mlp", horizon=6)
    mixed = StudySpec(models=["mlp"], objectives=["holdout-rmse", "backtest-top-k"], job=job)
    _, objectives, fixed, sampler, pruner = prepare(mixed)
    assert (fixed.holdout, fixed.backtest, sampler, pruner) == (6, None, "nsga2", "none")
    assert second_backtest(mixed, objectives) == BacktestOptions()
    assert fixed_job(StudySpec(models=["mlp"], job=job), parse_objectives("holdout-rmse")).holdout == 6
    assert second_backtest(StudySpec(models=["mlp"], job=job), parse_objectives("holdout-rmse")) is None
    backtest = fixed_job(StudySpec(models=["mlp"], job=job), parse_objectives("backtest-diff"))
    assert backtest.backtest is not None and backtest.holdout == 0
    with pytest.raises(InvalidSpec, match=r"^pruner: wilcoxon compares trials cutoff by cutoff"):
        prepare(StudySpec(models=["mlp"], objectives=["holdout-rmse"], pruner="wilcoxon", job=job))
    with pytest.raises(InvalidSpec, match=r"^sampler: "):
        prepare(StudySpec(models=["mlp"], sampler="grid", job=job))
    with pytest.raises(InvalidSpec, match=r"^space: .*no_model"):
        prepare(StudySpec(models=["no_model"], job=job))


def write_metrics(folder: Path, metrics: dict[str, Any]) -> str:
    (folder / "out").mkdir(parents=True)
    (folder / "out" / "metrics.json").write_text(json.dumps(metrics))
    return str(folder)


def mixed_study() -> LiveStudy:
    study = optuna.create_study(directions=["minimize", "maximize"])
    objectives = parse_objectives("holdout-rmse,backtest-top-k")
    job = JobSpec(data="/data.parquet", model="mlp", holdout=4)
    return LiveStudy(study, build_space(["mlp"]), objectives, job, backtest=BacktestOptions(top=["2"]))


def test_a_mixed_trial_waits_for_its_backtest_and_is_told_the_values_of_both_runs(tmp_path: Path):
    live = mixed_study()
    live.study.ask()
    errors = {"model": {"rmse": 3.0}, "zero": {"rmse": 4.0}}
    holdout = run(0, "succeeded", out=write_metrics(tmp_path / "holdout", {"errors": errors}))
    manager = StudyManager(FakeDaemon())  # type: ignore[arg-type]
    assert manager._settle(live, [holdout]) == {0}  # not told: its backtest is queued next
    assert live.second == {0: holdout}
    table = {"sizes": {"2": {"methods": {"model": {"mean": 1.5}}}}}
    job = JobSpec(data="/data.parquet", model="mlp", backtest=BacktestOptions(top=["2"]))
    backtest = run(0, "running", job=job, out=write_metrics(tmp_path / "backtest", {"backtest": table}))
    backtest = msgspec.structs.replace(backtest, id=200)
    assert manager._settle(live, [holdout, backtest]) == {0}  # the backtest runs: the trial goes on
    assert manager._settle(live, [holdout, msgspec.structs.replace(backtest, state="succeeded")]) == set()
    told = live.study.trials[0]
    assert told.state == TrialState.COMPLETE and told.values == [0.75, 1.5]


def test_a_mixed_trial_whose_holdout_run_was_killed_is_told_then_with_no_backtest():
    live = mixed_study()
    live.study.ask()
    manager = StudyManager(FakeDaemon())  # type: ignore[arg-type]
    assert manager._settle(live, [run(0, "killed", exit="signal SIGKILL")]) == set()
    assert live.second == {}
    assert live.study.trials[0].state == TrialState.FAIL
    assert live.study.trials[0].user_attrs["fail_reason"] == "killed"


def wilcoxon_study(pruner: optuna.pruners.BasePruner) -> LiveStudy:
    study = optuna.create_study(direction="maximize", pruner=pruner)
    study.add_trial(
        optuna.trial.create_trial(value=10.0, intermediate_values={k: 10.0 for k in range(6)})
    )  # a best trial far above any other at every cutoff
    objectives = parse_objectives("backtest-top-k")
    job = JobSpec(data="/data.parquet", model="mlp", backtest=BacktestOptions())
    return LiveStudy(study, build_space(["mlp"]), objectives, job)


def test_a_wilcoxon_trial_clearly_worse_cutoff_by_cutoff_is_pruned_at_a_cutoff():
    live = wilcoxon_study(make_pruner("wilcoxon"))
    assert live.cutoff_objective == "backtest-top-k"
    live.study.ask()  # trial 1, its backtest run below
    d = FakeDaemon()
    manager = StudyManager(d)  # type: ignore[arg-type]
    manager.live[1] = live

    async def report(cutoff: int, value: float) -> None:
        manager.cutoff(run(1), cutoff, value)
        await asyncio.gather(*manager._tasks)

    for k in range(3):  # three cutoffs worse: not enough for the test to be sure
        asyncio.run(report(k, 0.5 + k))
        assert d.stopped == []
    asyncio.run(report(3, 0.25))
    assert d.stopped == [101] and live.pruned[101] == "pruned at cutoff 4 (value 0.25)"
    assert live.study.trials[1].intermediate_values == {0: 0.5, 1: 1.5, 2: 2.5, 3: 0.25}
    asyncio.run(report(4, 0.0))  # already pruned: nothing more reported
    assert 4 not in live.study.trials[1].intermediate_values
    assert manager._tell(live, run(1, "stopped"))
    told = live.study.trials[1]
    assert told.state == TrialState.PRUNED and told.user_attrs["reason"] == "pruned at cutoff 4 (value 0.25)"


def test_cutoff_values_of_a_study_that_prunes_by_validation_loss_are_ignored():
    live = live_study(optuna.pruners.MedianPruner(n_startup_trials=0, n_warmup_steps=0))
    assert live.cutoff_objective is None
    live.study.ask()
    manager = StudyManager(FakeDaemon())  # type: ignore[arg-type]
    manager.live[1] = live
    manager.cutoff(run(0), 0, 1.0)  # no task: nothing to await
    assert manager._tasks == set() and live.study.trials[0].intermediate_values == {}


class StoreDaemon(FakeDaemon):
    """A fake daemon with a real state database and home, to queue runs and reopen studies in."""

    def __init__(self, home: Path, store: Store) -> None:
        super().__init__()
        self.db = store  # type: ignore[assignment]
        self.home = SimpleNamespace(state=home, runs=home / "runs")
        self.changed: list[RunInfo] = []

    def run_changed(self, run: RunInfo) -> RunInfo:
        self.changed.append(run)
        return run

    def kick(self) -> None:
        pass


def mixed_record(tmp_path: Path, store: Store) -> tuple[StudyInfo, RunInfo]:
    """A mixed study in ``store`` whose trial 0 (RUNNING in its journal) has a holdout run that succeeded."""
    job = JobSpec(data="/data.parquet", model="mlp", horizon=4, holdout=4, backtest=BacktestOptions(top=["2"]))
    info = store.add_study(StudySpec(models=["mlp"], objectives=["holdout-rmse", "backtest-top-k"], job=job))
    storage = open_storage(None, tmp_path)  # the daemon's default journal in its home
    optuna.create_study(study_name=info.name, storage=storage, directions=["minimize", "maximize"]).ask()
    holdout_job = msgspec.structs.replace(job, backtest=None, sets=["model.dropout=0.1"])
    first = store.add_run(holdout_job, Placement(), runs_dir=tmp_path / "runs", study=info.id, trial=0)
    return info, store.update_run(first.id, state="succeeded", finished=1.0)


def test_a_restarted_daemon_keeps_a_mixed_trial_that_waits_for_its_backtest_and_queues_it(tmp_path: Path):
    with Store(tmp_path / "state.db") as store:
        info, first = mixed_record(tmp_path, store)
        d = StoreDaemon(tmp_path, store)
        manager = StudyManager(d)  # type: ignore[arg-type]
        asyncio.run(manager._reopen(info, reap=True))
        live = manager.live[info.id]
        assert live.study.trials[0].state == TrialState.RUNNING  # not reaped: its backtest comes next
        assert live.second == {0: first}
        info = store.update_study(info.id, asked=1)
        asyncio.run(manager._ask(info, live, store.study_runs(info.id), {0}))
        [_, second] = store.study_runs(info.id)
        assert live.second == {} and d.changed == [second]
        assert (second.name, second.trial, second.state) == (f"study-{info.id}/t0-backtest", 0, "queued")
        assert second.job == msgspec.structs.replace(first.job, backtest=BacktestOptions(top=["2"]), holdout=0)
        assert json.loads(RunFolder(Path(second.out)).job.read_text())["sets"] == ["model.dropout=0.1"]
        assert store.events(second.id)[-1]["data"] == {"study": info.id, "trial": 0, "after": first.id}


def test_a_mixed_trial_takes_one_place_of_parallel_whichever_of_its_runs_is_active(tmp_path: Path):
    with Store(tmp_path / "state.db") as store:
        info, _ = mixed_record(tmp_path, store)
        d = StoreDaemon(tmp_path, store)
        manager = StudyManager(d)  # type: ignore[arg-type]
        asyncio.run(manager._reopen(info, reap=True))
        live = manager.live[info.id]
        info = store.update_study(info.id, asked=1)
        asyncio.run(manager._ask(info, live, store.study_runs(info.id), {0}))  # queues trial 0's backtest
        asked = len(live.study.trials)
        runs = store.study_runs(info.id)
        asyncio.run(manager._ask(info, live, runs, {0}))  # parallel 1: its backtest holds the one place
        assert len(live.study.trials) == asked == 1 and store.study_runs(info.id) == runs


def test_a_job_reports_cutoff_values_only_of_a_backtest_objective_in_a_backtest():
    backtest = JobSpec(data="/data.parquet", backtest=BacktestOptions(), report_cutoffs="backtest-diff")
    objective = cutoff_objective(backtest)
    assert objective is not None and objective.name == "backtest-diff"
    assert cutoff_objective(JobSpec(data="/data.parquet", backtest=BacktestOptions())) is None
    for job in (
        msgspec.structs.replace(backtest, report_cutoffs="holdout-rmse"),
        msgspec.structs.replace(backtest, backtest=None),
    ):
        with pytest.raises(ObjectiveError, match=r"per-cutoff values are a backtest's.*backtest-top-k, backtest-diff"):
            cutoff_objective(job)
    with pytest.raises(InvalidSpec, match="report_cutoffs holdout-rmse: per-cutoff values"):
        check_job(msgspec.structs.replace(backtest, report_cutoffs="holdout-rmse", device="cpu"))


def test_a_run_the_pruner_stopped_before_a_restart_is_told_pruned_after_it(tmp_path: Path):
    with Store(tmp_path / "state.db") as store:
        info = store.add_study(StudySpec(models=["mlp"], job=JobSpec(data="/data.parquet", holdout=4)))
        journal = optuna.create_study(study_name=info.name, storage=open_storage(None, tmp_path))
        journal.ask()
        run_ = store.add_run(info.spec.job, Placement(), runs_dir=tmp_path / "runs", study=info.id, trial=0)
        store.update_run(run_.id, state="stopped")
        reason = "pruned at step 4 (validation loss 2.5)"
        store.add_event(run_.id, "pruned", {"step": 4, "val_loss": 2.5, "reason": reason})
        manager = StudyManager(StoreDaemon(tmp_path, store))  # type: ignore[arg-type]
        asyncio.run(manager._reopen(info, reap=True))
        told = manager.live[info.id].study.trials[0]
        assert told.state == TrialState.PRUNED and told.user_attrs["reason"] == reason
