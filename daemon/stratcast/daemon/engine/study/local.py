"""Running a trial's job in this process: the foreground study's runner, and the reference for the daemon's.

The trial's job is the study's fixed job with the drawn values (:meth:`TrialPlan.job`); it runs through
:func:`~stratcast.daemon.engine.run.job.run_job` for a holdout objective and
:func:`~stratcast.daemon.engine.backtest.job.run_backtest` for a backtest one (both when the study has both).

Pruning: the trainer's validation scores go to the pruner through the progress hook; with the Wilcoxon pruner and
one backtest objective, the objective's value at each cutoff goes instead, as each refit block finishes. When the
pruner says to stop, the trainer's stop request (``should_stop``) ends training cleanly at its next step, and the
trial is told PRUNED.

Failures are told with their reason: an out-of-memory error beyond the micro-batch's recovery ``oom``, a
configuration the engine refuses (``ValueError``, a model's shape check) ``invalid``, a stop by hand ``killed``,
anything else ``crashed``.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import msgspec
import optuna
from optuna.trial import TrialState

from stratcast.daemon.engine.backtest.job import run_backtest
from stratcast.daemon.engine.backtest.state import Progress
from stratcast.daemon.engine.memory.oom import OomHook
from stratcast.daemon.engine.run.build import Log
from stratcast.daemon.engine.run.job import run_job
from stratcast.daemon.engine.spec.runspec import spec_from_job
from stratcast.daemon.engine.study.objectives import (
    Objective,
    finished_cutoff_scores,
    intermediate_value,
    values_of,
)
from stratcast.daemon.engine.study.study import TrialPlan, report, tell_failure, tell_pruned, tell_result
from stratcast.shared.events import ProgressReported
from stratcast.shared.protocol import BacktestOptions, JobSpec


@dataclass(frozen=True)
class TrialOutcome:
    """How a trial ended: its state, its values (COMPLETE) and its reason (otherwise), and its wall time."""

    number: int
    state: TrialState
    values: tuple[float, ...] = ()
    reason: str = ""
    seconds: float = 0.0


class PruneWatch:
    """Reports a trial's intermediate values to the pruner, and turns its decision into the trainer's stop request.

    As a progress hook it reports the trainer's validation scores (median, Hyperband); as a backtest's block hook,
    each finished cutoff's value of the study's objective (Wilcoxon, which compares trials cutoff by cutoff).
    """

    def __init__(
        self,
        study: optuna.Study,
        number: int,
        should_stop: Callable[[], bool] | None,
        objective: Objective | None = None,
    ) -> None:
        self.study, self.number, self.user_stop = study, number, should_stop
        self.objective = objective
        self.pruned_at: tuple[int, float] | None = None
        self.cutoffs_reported = 0

    def __call__(self, event: ProgressReported) -> None:
        """Report the event's validation score; remember a prune decision."""
        point = intermediate_value(event)
        if point is not None:
            self.judge(*point)

    def block(self, progress: Progress) -> None:
        """Report the cutoffs a backtest block finished (their objective values, at their cutoff index)."""
        assert self.objective is not None
        values = finished_cutoff_scores(self.objective, progress)
        for k in range(self.cutoffs_reported, len(values)):
            self.judge(k, values[k])
        self.cutoffs_reported = len(values)

    def judge(self, step: int, value: float) -> None:
        """Report one value; the first prune decision stops the trial."""
        if self.pruned_at is None and report(self.study, self.number, step, value):
            self.pruned_at = (step, value)

    def stop(self) -> bool:
        """Whether training should stop: pruned, or stopped by hand."""
        return self.pruned_at is not None or (self.user_stop is not None and self.user_stop())


@dataclass(frozen=True)
class _Memory:
    """What a trial's jobs get for memory: the plan cache file and the out-of-memory hook."""

    plan_cache: Path | None
    on_oom: OomHook | None


def run_trial_locally(
    study: optuna.Study,
    plan: TrialPlan,
    fixed: JobSpec,
    objectives: Sequence[Objective],
    *,
    out: Path,
    backtest: BacktestOptions | None = None,
    device: str = "auto",
    log: Log = print,
    should_stop: Callable[[], bool] | None = None,
    plan_cache: Path | None = None,
    on_oom: OomHook | None = None,
) -> TrialOutcome:
    """Run trial ``plan`` in this process, writing under ``out/trial-N``, and tell the study how it ended.

    An invalid plan (already told) is not run. ``should_stop`` is a stop by hand: the trial is told FAIL
    (``killed``). ``plan_cache`` (the memory plan cache file; None: probe every trial) and ``on_oom`` (every
    out-of-memory error the trainer recovered from or gave up on) go to the trial's jobs as to a run's.
    """
    t0 = time.perf_counter()
    if plan.invalid is not None:
        return TrialOutcome(plan.number, TrialState.PRUNED, reason=f"invalid: {plan.invalid}")
    per_cutoff = _wilcoxon(study) and len(objectives) == 1 and objectives[0].backtest
    watch = PruneWatch(study, plan.number, should_stop, objectives[0] if per_cutoff else None)
    folder = out / f"trial-{plan.number}"
    memory = _Memory(plan_cache, on_oom)
    try:
        ended = _run(study, plan, fixed, objectives, folder, backtest, device, log, watch, memory)
    except MemoryError as exc:
        ended = _failed(study, plan.number, "oom", str(exc))
    except (ValueError, KeyError) as exc:
        ended = _failed(study, plan.number, "invalid", str(exc).strip("'\""))
    except (KeyboardInterrupt, SystemExit):  # a forced exit (a second signal): told before it goes on
        tell_failure(study, plan.number, "killed", "interrupted")
        raise
    except Exception as exc:  # a trial's crash must not end the study: it is told, and the next one runs
        ended = _failed(study, plan.number, "crashed", f"{type(exc).__name__}: {exc}")
    return TrialOutcome(plan.number, ended.state, ended.values, ended.reason, time.perf_counter() - t0)


def _run(
    study: optuna.Study,
    plan: TrialPlan,
    fixed: JobSpec,
    objectives: Sequence[Objective],
    folder: Path,
    backtest: BacktestOptions | None,
    device: str,
    log: Log,
    watch: PruneWatch,
    memory: _Memory,
) -> TrialOutcome:
    """Run the jobs the objectives need, then tell the values (or the prune, or the stop)."""
    job = plan.job(fixed)
    holdout = backtested = None
    if any(not o.backtest for o in objectives):
        spec = spec_from_job(job, out=str(folder / "holdout"), device=device)
        hook = None if _wilcoxon(study) else watch
        result = run_job(
            spec, log=log, on_progress=hook, should_stop=watch.stop, plan_cache=memory.plan_cache, on_oom=memory.on_oom
        )
        if result.fit.interrupted:
            return _stopped(study, plan.number, watch)
        holdout = result.metrics
    if any(o.backtest for o in objectives):
        options = backtest or BacktestOptions()
        spec = spec_from_job(
            msgspec.structs.replace(job, backtest=options, levels=fixed.levels),
            out=str(folder / "backtest"),
            device=device,
        )
        result = run_backtest(
            spec,
            options,
            log=log,
            on_progress=None if _wilcoxon(study) else watch,
            should_stop=watch.stop,
            on_block=None if watch.objective is None else watch.block,
            plan_cache=memory.plan_cache,
            on_oom=memory.on_oom,
        )
        if result.fit.interrupted:
            return _stopped(study, plan.number, watch)
        backtested = result.metrics
    values = values_of(objectives, holdout, backtested)
    tell_result(study, plan.number, values)
    return TrialOutcome(plan.number, TrialState.COMPLETE, tuple(values))


def _wilcoxon(study: optuna.Study) -> bool:
    """Whether the study prunes by per-cutoff values (the trainer's validation scores are then not reported)."""
    return isinstance(study.pruner, optuna.pruners.WilcoxonPruner)


def _stopped(study: optuna.Study, number: int, watch: PruneWatch) -> TrialOutcome:
    """Tell a trial whose training was stopped: PRUNED when the pruner asked, else FAIL (``killed``)."""
    if watch.pruned_at is None:
        return _failed(study, number, "killed", "stopped by request")
    step, value = watch.pruned_at
    at = f"cutoff {step + 1} (value {value:.6g})" if watch.objective else f"step {step} (validation score {value:.6g})"
    reason = f"pruned at {at}"
    tell_pruned(study, number, reason)
    return TrialOutcome(number, TrialState.PRUNED, reason=reason)


def _failed(study: optuna.Study, number: int, fail_reason: str, message: str) -> TrialOutcome:
    """Tell a failed trial and return its outcome."""
    told = tell_failure(study, number, fail_reason, message)
    return TrialOutcome(number, told.state, reason=str(told.user_attrs.get("reason", fail_reason)))
