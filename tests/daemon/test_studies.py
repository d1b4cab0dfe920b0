"""The daemon's study manager without a daemon: progress reports to the pruner, and run endings told to Optuna."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import optuna
import pytest
from optuna.trial import TrialState

from stratcast.daemon.engine.study.objectives import parse_objectives
from stratcast.daemon.engine.study.space import build_space
from stratcast.daemon.handlers.common import InvalidSpec
from stratcast.daemon.studies import LiveStudy, StudyManager, fixed_job, prepare
from stratcast.daemon.worker import EXIT_BAD_INPUT
from stratcast.shared.protocol import JobSpec, Placement, RunInfo, StudySpec


class FakeDaemon:
    """What the manager calls when it prunes: the runner's stop, an event, a run update."""

    def __init__(self) -> None:
        self.stopped: list[int] = []
        self.updates: list[tuple[int, dict[str, Any]]] = []
        self.runner = SimpleNamespace(stop=self.stop)
        self.db = SimpleNamespace(add_event=lambda *a, **k: None)

    def stop(self, run: int) -> bool:
        self.stopped.append(run)
        return True

    def update_run(self, run_id: int, **fields: Any) -> None:
        self.updates.append((run_id, fields))


def run(number: int, state: Any = "running", **kw: Any) -> RunInfo:
    job = JobSpec(data="/data.parquet", model="mlp")
    return RunInfo(
        id=100 + number,
        name="",
        state=state,
        job=job,
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


def test_a_study_of_holdout_and_backtest_objectives_is_refused_and_a_holdout_is_added():
    job = JobSpec(data="/data.parquet", model="mlp", horizon=6)
    with pytest.raises(InvalidSpec, match=r"^objectives: a daemon study's trials are runs or backtests"):
        prepare(StudySpec(models=["mlp"], objectives=["holdout-rmse", "backtest-top-k"], job=job))
    assert fixed_job(StudySpec(models=["mlp"], job=job), parse_objectives("holdout-rmse")).holdout == 6
    backtest = fixed_job(StudySpec(models=["mlp"], job=job), parse_objectives("backtest-diff"))
    assert backtest.backtest is not None and backtest.holdout == 0
    with pytest.raises(InvalidSpec, match=r"^sampler: "):
        prepare(StudySpec(models=["mlp"], sampler="grid", job=job))
    with pytest.raises(InvalidSpec, match=r"^space: .*no_model"):
        prepare(StudySpec(models=["no_model"], job=job))
