"""One forecasting job end to end: load, scale, plan, train (with checkpoints), score on the holdout, forecast, write.

The stages, each in its own module: the run's pieces are built by :mod:`stratcast.daemon.engine.run.build`, its
memory plan by :mod:`stratcast.daemon.engine.run.runplan`, its checkpoints by
:mod:`stratcast.daemon.engine.run.checkpoints`, its holdout score by :mod:`stratcast.daemon.engine.evaluation.holdout`
and its output files (listed there) by :mod:`stratcast.daemon.engine.run.outputs`. A stopped job writes a training
checkpoint and no outputs; ``run_job(spec, resume_from=path)`` continues from it.

Memory plan: before training, and again on a resume, the job chooses the micro-batch (on CUDA by measuring a few
real steps, or from the plan cache), logs it and hands the :class:`~stratcast.daemon.engine.run.runplan.RunPlan` to
``on_plan``; the plan goes into ``metrics.json`` and every checkpoint (``memory_plan``).

Out of memory (see :mod:`stratcast.daemon.engine.memory.oom`): an OOM in a forward or backward pass is retried in place
with a smaller micro-batch and reported to ``on_oom``; when not even one window fits the job raises
:class:`~stratcast.daemon.engine.memory.oom.OutOfMemory` with the memory levers; an OOM in the optimizer step raises
:class:`~stratcast.daemon.engine.memory.oom.OptimizerStepOutOfMemory` naming the checkpoint the run rolls back to (a
resume continues from it). Both subclass ``MemoryError``: the worker exits with its out-of-memory code.

Ragged panels: every part of a strategy is its own (see :mod:`stratcast.daemon.engine.data.windows`): its scaler fits
on its own training part, its holdout is its own last ``holdout`` periods and its forecast starts after its own
last period.

Several devices (``ranks``): every rank runs the job up to the end of training, as one data-parallel run (see
:mod:`stratcast.daemon.engine.training.distributed`); rank 0 alone then evaluates, forecasts and writes the outputs.
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from stratcast.daemon.engine.evaluation.holdout import evaluate_holdout
from stratcast.daemon.engine.memory.device import describe_device, resolve_device
from stratcast.daemon.engine.memory.oom import OomHook, OptimizerStepOutOfMemory
from stratcast.daemon.engine.prediction.ensemble import EnsembleForecaster
from stratcast.daemon.engine.prediction.forecast import SAMPLES, VALIDATION_SAMPLES, OriginMemo
from stratcast.daemon.engine.run.advice import (
    OnWarning,
    RunWarning,
    Warnings,
    early_best_warning,
    loss_warning,
    windows_warning,
)
from stratcast.daemon.engine.run.build import (
    Forecaster,
    Log,
    Prepared,
    forecaster,
    make_model,
    make_trainer,
    prepare,
    sampler,
)
from stratcast.daemon.engine.run.checkpoints import Checkpointer, OnCheckpoint, resume, save_final
from stratcast.daemon.engine.run.combining import combination_info, future_rank_score, job_forecasters
from stratcast.daemon.engine.run.intervals import final_point, future_intervals
from stratcast.daemon.engine.run.members import (
    Hooks,
    Member,
    SpanProgress,
    ensemble_fit,
    ensemble_info,
    ensemble_state,
    file_offset,
    labels,
    resumed_members,
    seed_member,
)
from stratcast.daemon.engine.run.outputs import finite_numbers, forecast_future, run_info, write_metrics, write_outputs
from stratcast.daemon.engine.run.quantiles import (
    Drawn,
    drawn_members,
    future_quantiles,
    job_distribution,
    quantiles_info,
)
from stratcast.daemon.engine.run.runplan import OnPlan, RunPlan, start_plan
from stratcast.daemon.engine.run.serving import serving_state
from stratcast.daemon.engine.spec.ensemble import member_specs
from stratcast.daemon.engine.spec.runspec import RunSpec, train_defaults_note
from stratcast.daemon.engine.training.distributed import Ranks
from stratcast.daemon.engine.training.trainer import Trainer
from stratcast.daemon.engine.training.trainparts import FitResult
from stratcast.shared.events import ProgressReported
from stratcast.shared.runfiles import RunFolder


@dataclass
class JobResult:
    """What a job produced: outputs when it finished, a checkpoint when a stop request ended it."""

    out_dir: Path
    device: str
    fit: FitResult
    metrics: dict[str, Any]
    """``metrics.json``'s content; empty for a stopped job."""
    top: list[dict[str, Any]]
    notes: list[str]
    checkpoint: Path | None = None
    """The training checkpoint of a stopped job (``fit.interrupted``), None otherwise."""


def run_job(
    spec: RunSpec,
    *,
    log: Log = print,
    on_progress: Callable[[ProgressReported], None] | None = None,
    should_stop: Callable[[], bool] | None = None,
    resume_from: Path | None = None,
    checkpoint_dir: Path | None = None,
    on_checkpoint: OnCheckpoint | None = None,
    on_oom: OomHook | None = None,
    on_plan: OnPlan | None = None,
    plan_cache: Path | None = None,
    on_warning: OnWarning | None = None,
    ranks: Ranks | None = None,
) -> JobResult:
    """Run ``spec`` in this process and write its outputs to ``spec.out``.

    Args:
        spec: The job.
        log: Receives human-readable lines.
        on_progress: Receives a :class:`ProgressReported` every few steps.
        should_stop: Asked before every step; when it answers true, training stops, a checkpoint is written and
            the job returns without outputs (``result.fit.interrupted``, ``result.checkpoint``).
        resume_from: A training checkpoint of this same spec to continue from.
        checkpoint_dir: Where training checkpoints go (default ``spec.out/checkpoints``).
        on_checkpoint: Called after each training checkpoint is written.
        on_oom: Receives an :class:`~stratcast.daemon.engine.memory.oom.RanOutOfMemory` for every out-of-memory error.
        on_plan: Receives the :class:`~stratcast.daemon.engine.run.runplan.RunPlan` before training starts (also when
            nothing fits, before the job raises ``OutOfMemory``).
        plan_cache: The memory plan cache file (None: no cache; see
            :func:`~stratcast.daemon.engine.run.runplan.default_plan_cache`).
        on_warning: Receives each :class:`~stratcast.daemon.engine.run.advice.RunWarning` (it is logged too, and
            repeated in the verdict of ``metrics.json``).
        ranks: This process's rank of a data-parallel run, its process group joined (None: one process). Every
            rank trains; only rank 0 evaluates and writes the outputs (another rank's result has no metrics).

    Raises:
        CheckpointError: when ``resume_from`` is damaged or was written for another spec or data.
        OutOfMemory: when not even a micro-batch of one window fits, while planning or training (the message
            proposes the levers).
        OptimizerStepOutOfMemory: when the optimizer step ran out of memory (the message names the checkpoint to
            resume from).
    """
    t0 = time.perf_counter()
    device = resolve_device(spec.device)
    device_name = describe_device(device)
    log(f"device: {device_name}")
    if note := train_defaults_note(spec):
        log(note)
    torch.manual_seed(spec.train.seed)
    prep = prepare(spec, device, log)
    spec = prep.spec  # with the scaler and loss chosen from the data where nobody set them
    warnings = Warnings(log, on_warning)
    warnings.add(loss_warning(spec.train, prep.panel.zero_share))
    warnings.add(windows_warning(spec.train, int(prep.split.train_end.max())))
    folder = checkpoint_dir or RunFolder(Path(spec.out)).checkpoints
    hooks = Hooks(log, on_progress, should_stop, folder, on_checkpoint, on_oom, on_plan, plan_cache)
    trained = Training(spec, prep, hooks, warnings, ranks).run(resume_from)
    if isinstance(trained, Stopped):
        return JobResult(Path(spec.out), device_name, trained.fit, {}, [], list(prep.panel.notes), trained.path)
    if ranks is not None and not ranks.lead:
        return JobResult(Path(spec.out), device_name, ensemble_fit(trained.members), {}, [], [])
    return finish(spec, trained, prep, device_name, t0, warnings.given, log)


@dataclass
class Trained:
    """Every member trained: the last member's trainer (for the final checkpoint) and the memory plan."""

    members: list[Member]
    trainer: Trainer
    plan: RunPlan


@dataclass
class Stopped:
    """A stop request ended a member's training: its fit and the checkpoint a resume continues from."""

    fit: FitResult
    path: Path


class Training:
    """Trains a job's members one after another (one model: one member), each through the memory plan."""

    def __init__(
        self, spec: RunSpec, prep: Prepared, hooks: Hooks, warnings: Warnings, ranks: Ranks | None = None
    ) -> None:
        self.spec, self.prep, self.hooks, self.warnings, self.ranks = spec, prep, hooks, warnings, ranks
        self.specs, self.labels = member_specs(spec), labels(spec)
        self.saver = Checkpointer(spec, prep, hooks.checkpoint_dir, hooks.on_checkpoint, ranks)

    def run(self, resume_from: Path | None) -> Trained | Stopped:
        """Train the members not finished in ``resume_from`` (all without it)."""
        done, start = resumed_members(self.specs, self.spec, self.prep, resume_from)
        for i in range(start, len(self.specs)):
            trainer, plan, fit = self.train(i, done, resume_from)
            if fit.interrupted:
                return self.stopped(i, trainer, fit)
            done.append(Member(self.labels[i], self.specs[i], trainer.model, fit))
            resume_from = None
        return Trained(done, trainer, plan)

    def train(self, i: int, done: list[Member], resume_from: Path | None) -> tuple[Trainer, RunPlan, FitResult]:
        """Train member ``i`` (from ``resume_from`` when given), after the members ``done``."""
        spec, prep, hooks, ensemble = self.specs[i], self.prep, self.hooks, bool(self.spec.ensemble)
        if ensemble:
            job = dataclasses.asdict(self.spec.train)  # the options a member's catalog entry gave it, in its line
            mine = dataclasses.asdict(spec.train)
            own = "".join(f", {k}={v}" for k, v in mine.items() if v != job[k] and k != "seed")
            hooks.log(f"member {i + 1}/{len(self.specs)}: {self.labels[i]} (seed {spec.train.seed}{own})")
            seed_member(spec)
        model = make_model(spec, prep.panel.n_series)
        self.saver.start_member(spec, file_offset(i, spec), ensemble_state(self.spec, i, done))
        report = SpanProgress(hooks.on_progress, i, len(self.specs)) if ensemble and hooks.on_progress else None
        progress = report or hooks.on_progress
        trainer = make_trainer(
            spec, model, prep, progress, hooks.should_stop, on_step=self.saver.maybe_save, ranks=self.ranks
        )
        trainer.on_oom = hooks.on_oom
        if resume_from is not None:
            resume(spec, prep, trainer, resume_from, hooks.log)
        shape = (prep.panel.n_series, prep.panel.n_times)
        plan = start_plan(
            trainer, spec, cache=hooks.plan_cache, panel_shape=shape, log=hooks.log, on_plan=hooks.on_plan
        )
        self.saver.plan = plan.to_dict()
        if i > 0 and resume_from is None:
            self.saver.save(trainer)  # the finished members' weights are on disk before this one trains
        try:
            fit = trainer.fit()
        except OptimizerStepOutOfMemory as exc:
            raise OptimizerStepOutOfMemory(f"{exc}; {self.saver.rollback_note(resume_from)}") from None
        if not fit.interrupted:
            hooks.log(f"{self.labels[i]}: {trained_line(fit)}" if ensemble else trained_line(fit))
            self.warnings.add(early_best_warning(fit, spec.train))
        return trainer, plan, fit

    def stopped(self, i: int, trainer: Trainer, fit: FitResult) -> Stopped:
        """Write the stopped member's checkpoint and say where it stopped."""
        path = self.saver.save(trainer)
        member = f" of member {i + 1}/{len(self.specs)} ({self.labels[i]})" if self.spec.ensemble else ""
        self.hooks.log(f"stopped at step {fit.steps}/{self.spec.train.max_steps}{member}; checkpoint {path}")
        return Stopped(fit, path)


def trained_line(fit: FitResult) -> str:
    """``trained to step 600 in 41.0s over 2 segments, stopped early``: the run's training time, all segments."""
    segments = f" over {len(fit.segment_seconds)} segments" if fit.earlier_seconds else ""
    early = ", stopped early" if fit.stopped_early else ""
    return f"trained to step {fit.steps} in {fit.train_seconds:.1f}s{segments}{early}"


def finish(
    spec: RunSpec,
    trained: Trained,
    prep: Prepared,
    device: str,
    t0: float,
    warnings: Sequence[RunWarning] = (),
    log: Log = print,
) -> JobResult:
    """Score on the holdout, forecast, calibrate intervals and write every output; ``t0`` is the job's start.

    The forecast is the model (an ensemble's mean) combined with the baselines
    (:func:`~stratcast.daemon.engine.run.combining.job_forecaster`) unless ``combine=none``; a model that forecasts
    a distribution adds its quantiles (:mod:`stratcast.daemon.engine.run.quantiles`).
    """
    members, fit = trained.members, ensemble_fit(trained.members)
    drawn = drawn_members(members, prep)
    base = member_forecaster(spec, members, prep, drawn=drawn)
    samples = any(sampler(m.spec, m.model) is not None for m in members)
    scan = member_forecaster(spec, members, prep, draws=VALIDATION_SAMPLES) if samples else base
    forecast_fn, scan_fn = job_forecasters(spec, base, scan, prep, log)
    distribution = job_distribution(spec, members, prep, drawn)
    scores, per_strategy = evaluate_holdout(spec, prep, forecast_fn, distribution) if spec.holdout else ({}, None)
    future = forecast_future(spec, prep, forecast_fn)
    point, scan_point = final_point(spec, prep, forecast_fn), final_point(spec, prep, scan_fn)
    bands, scores["intervals"], ji = future_intervals(spec, prep, point, future, log, calibration_fn=scan_point)
    quantiles = future_quantiles(spec, prep, distribution, future)
    out = Path(spec.out)
    out.mkdir(parents=True, exist_ok=True)
    rank_score = future_rank_score(forecast_fn, prep)
    summary = write_outputs(out, spec, prep, future, per_strategy, rank_score, bands, quantiles)
    info = run_info(spec, fit, device, prep, time.perf_counter() - t0) | combination_info(forecast_fn)
    info |= ensemble_info(spec, members) | quantiles_info(spec, distribution, scores.pop("quantiles", None))
    top = [finite_numbers({str(k): v for k, v in r.items()}) for r in summary.head(10).to_dict("records")]
    metrics = write_metrics(out, scores, info, top[0], trained.plan, warnings)
    extra = ensemble_state(spec, len(members), members) | serving_state(spec, prep, forecast_fn, ji)
    save_final(out, spec, trained.trainer, prep, trained.plan, extra)
    return JobResult(out, device, fit, metrics, top, list(prep.panel.notes))


def member_forecaster(
    spec: RunSpec,
    members: list[Member],
    prep: Prepared,
    *,
    draws: int = SAMPLES,
    drawn: Sequence[Drawn | None] = (),
) -> Forecaster:
    """The model's forecaster, or for an ensemble the mean of its members' (each member's own forecaster).

    ``draws``: how many draws a member that samples its forecasts averages. Such a member draws for each
    (row, origin) once (:class:`~stratcast.daemon.engine.prediction.forecast.OriginMemo`): a job forecasts the
    validation origins three times (the combination's fit, the calibration, the calibration with the holdout), the
    holdout's twice (its scores, its coverage) and the future's twice (the forecast, its ranking score), and so
    what is ranked and covered is the forecast written and scored. ``drawn``: the members'
    :func:`~stratcast.daemon.engine.run.quantiles.drawn_members`, whose means serve as their point forecasts (at
    ``SAMPLES`` draws), so that the quantiles come from the same draws.
    """
    each: list[Forecaster] = []
    for m, d in zip(members, drawn or [None] * len(members), strict=True):
        if d is not None and draws == SAMPLES:
            each.append(d.point)
        elif sampler(m.spec, m.model) is not None:
            each.append(OriginMemo(forecaster(m.spec, m.model, prep, draws=draws), prep.raw.shape[1]))
        else:
            each.append(forecaster(m.spec, m.model, prep, draws=draws))
    if not spec.ensemble:
        return each[0]
    return EnsembleForecaster(each, [m.label for m in members])
