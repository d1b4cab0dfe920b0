"""A walk-forward selection backtest as a job: the plan, the walk over refit blocks, checkpoints, outputs.

The cutoffs (:mod:`stratcast.daemon.engine.backtest.cutoffs`) fall in blocks of ``refit_every``. Each block
trains a fresh model (the same seed) with the job's trainer on the panel as of its first cutoff
(:mod:`stratcast.daemon.engine.backtest.walk`), then forecasts all its cutoffs in one pass and ranks the
strategies at each (:mod:`stratcast.daemon.engine.backtest.picks`). The memory plan is made for the first
training and reused by the others. A stop request inside a block's training writes the trainer's checkpoint as a
job does; the finished blocks are kept in the checkpoint folder (:mod:`stratcast.daemon.engine.backtest.state`), so
``run_backtest(..., resume_from=checkpoint)`` skips them and continues the block that was stopped.

Progress spans the whole backtest: step ``b * max_steps + s`` of ``blocks * max_steps`` (a block stopped early
by validation jumps ahead).
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import msgspec
import pandas as pd
import torch

from stratcast.daemon.engine.backtest.bands import backtest_bands, forecasts_from, residual_frame
from stratcast.daemon.engine.backtest.cutoffs import CutoffPlan, plan_cutoffs
from stratcast.daemon.engine.backtest.picks import ERROR_METHODS, cutoff_rows, empty_rows, hold_errors, mean_over
from stratcast.daemon.engine.backtest.report import write_backtest
from stratcast.daemon.engine.backtest.state import Progress, clear_checkpoints, load_progress, save_progress
from stratcast.daemon.engine.backtest.walk import (
    Block,
    CutoffForecasts,
    fit_block_combination,
    make_block,
    predict_block,
)
from stratcast.daemon.engine.data.panel import Panel
from stratcast.daemon.engine.evaluation import skill
from stratcast.daemon.engine.memory.device import describe_device, resolve_device
from stratcast.daemon.engine.memory.oom import OomHook, OptimizerStepOutOfMemory
from stratcast.daemon.engine.run.advice import OnWarning, Warnings, loss_warning
from stratcast.daemon.engine.run.build import Log, load_spec_panel, make_model, make_trainer
from stratcast.daemon.engine.run.checkpoints import Checkpointer, OnCheckpoint, resume
from stratcast.daemon.engine.run.job import JobResult
from stratcast.daemon.engine.run.members import Hooks, SpanProgress
from stratcast.daemon.engine.run.runplan import OnPlan, RunPlan, start_plan
from stratcast.daemon.engine.spec.ensemble import refuse_backtest
from stratcast.daemon.engine.spec.runspec import RunSpec
from stratcast.daemon.engine.training.checkpoint import write_json_atomic
from stratcast.daemon.engine.training.trainer import Trainer
from stratcast.daemon.engine.training.trainparts import FitResult
from stratcast.shared.events import ProgressReported
from stratcast.shared.protocol import BacktestOptions
from stratcast.shared.runfiles import Outputs, RunFolder


@dataclass
class BacktestResult(JobResult):
    """A job's result with the backtest's long table and every cutoff's forecasts (empty when it was stopped)."""

    picks: pd.DataFrame = field(default_factory=empty_rows)
    forecasts: list[CutoffForecasts] = field(default_factory=list)
    """This process's cutoffs' per-step forecasts and realized values (a resumed backtest's finished blocks
    are not among them)."""


def run_backtest(
    spec: RunSpec,
    options: BacktestOptions,
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
    on_block: Callable[[Progress], None] | None = None,
) -> BacktestResult:
    """Backtest ``spec`` with ``options`` in this process and write the outputs to ``spec.out``.

    The arguments are :func:`~stratcast.daemon.engine.run.job.run_job`'s; ``resume_from`` is the training
    checkpoint of the block a stop interrupted (the finished blocks are read from ``checkpoint_dir``).
    ``on_block`` receives the finished blocks' :class:`~stratcast.daemon.engine.backtest.state.Progress` after
    each block (a study's pruner judges a trial by its cutoffs so far).

    Raises:
        ValueError: for options the panel cannot backtest (:func:`plan_cutoffs` names the numbers), or an ensemble.
        CheckpointError: when ``resume_from`` or the recorded blocks belong to another backtest.
        OutOfMemory: when not even a micro-batch of one window fits.
        OptimizerStepOutOfMemory: when the optimizer step ran out of memory.
    """
    refuse_backtest(spec.ensemble)
    t0 = time.perf_counter()
    device = resolve_device(spec.device)
    log(f"device: {describe_device(device)}")
    if spec.holdout:
        log(f"backtest: holdout {spec.holdout} unused: every cutoff is scored on its own holding")
        spec = dataclasses.replace(spec, holdout=0)
    full = load_spec_panel(spec)
    plan = plan_cutoffs(full, spec, options)
    log(plan.describe())
    folder = checkpoint_dir or RunFolder(Path(spec.out)).checkpoints
    hooks = Hooks(log, on_progress, should_stop, folder, on_checkpoint, on_oom, on_plan, plan_cache)
    walk = Walk(spec, plan, full, device, hooks, Warnings(log, on_warning))
    walk.on_block = on_block
    progress = _start_progress(folder, plan, options, resume_from)
    result = walk.run(progress, resume_from)
    if result is not None:
        return result
    return finish(spec, options, plan, progress, walk, time.perf_counter() - t0)


def _start_progress(folder: Path, plan: CutoffPlan, options: BacktestOptions, resume_from: Path | None) -> Progress:
    """The finished blocks when resuming, else a fresh record (written now, so a resume knows the options)."""
    cutoffs = list(plan.cutoffs)
    if resume_from is not None:
        return load_progress(folder, cutoffs, options)
    progress = Progress(cutoffs, options)
    save_progress(folder, progress)
    return progress


class Walk:
    """The walk over the refit blocks: train, forecast, rank; one :class:`Trainer` per block."""

    def __init__(
        self, spec: RunSpec, plan: CutoffPlan, full: Panel, device: torch.device, hooks: Hooks, warnings: Warnings
    ) -> None:
        self.spec, self.plan, self.full, self.device, self.hooks, self.warnings = (
            spec,
            plan,
            full,
            device,
            hooks,
            warnings,
        )
        self.memory_plan: RunPlan | None = None
        self.forecasts: list[CutoffForecasts] = []
        self.on_block: Callable[[Progress], None] | None = None

    def run(self, progress: Progress, resume_from: Path | None) -> BacktestResult | None:
        """Walk the blocks not yet finished; a :class:`BacktestResult` when a stop ended a block's training."""
        for b, indices in enumerate(self.plan.blocks):
            if b < progress.blocks_done:
                continue
            block = make_block(self.spec, self.full, self.plan, indices, self.device, self._block_log(b))
            trainer, saver = self.trainer(block, b)
            if resume_from is not None:
                resume(block.spec, block.prep, trainer, resume_from, self.hooks.log)
                resume_from = None
            fit = self.fit(trainer, saver, block)
            if fit.interrupted:
                return self.stopped(trainer, saver, fit, progress)
            self.record(block, trainer, fit, progress)
            del block, trainer, saver  # the next block's panel is prepared without this one's beside it
        return None

    def _block_log(self, b: int) -> Log:
        """The panel lines of the first block only: the later ones repeat them."""
        return self.hooks.log if b == 0 else _silent

    def trainer(self, block: Block, b: int) -> tuple[Trainer, Checkpointer]:
        """A fresh model (the spec's seed) and its trainer, checkpointing into the backtest's folder."""
        if b == 0:
            self.warnings.add(loss_warning(block.spec.train, block.prep.panel.zero_share))
        torch.manual_seed(block.spec.train.seed)
        model = make_model(block.spec, block.prep.panel.n_series)
        saver = Checkpointer(block.spec, block.prep, self.hooks.checkpoint_dir, self.hooks.on_checkpoint)
        report = (
            None if self.hooks.on_progress is None else SpanProgress(self.hooks.on_progress, b, len(self.plan.blocks))
        )
        trainer = make_trainer(block.spec, model, block.prep, report, self.hooks.should_stop, on_step=saver.maybe_save)
        trainer.on_oom = self.hooks.on_oom
        return trainer, saver

    def fit(self, trainer: Trainer, saver: Checkpointer, block: Block) -> FitResult:
        """Plan memory once (the first training of this process), then train."""
        if self.memory_plan is None:
            shape = (block.prep.panel.n_series, block.prep.panel.n_times)
            self.memory_plan = start_plan(
                trainer,
                block.spec,
                cache=self.hooks.plan_cache,
                panel_shape=shape,
                log=self.hooks.log,
                on_plan=self.hooks.on_plan,
            )
        else:
            trainer.set_micro_batch(self.memory_plan.micro_batch)
        saver.plan = self.memory_plan.to_dict()
        try:
            return trainer.fit()
        except OptimizerStepOutOfMemory as exc:
            raise OptimizerStepOutOfMemory(f"{exc}; {saver.rollback_note(None)}") from None

    def stopped(self, trainer: Trainer, saver: Checkpointer, fit: FitResult, progress: Progress) -> BacktestResult:
        """Write the trainer's checkpoint and return a stopped result."""
        path = saver.save(trainer)
        done = progress.blocks_done
        self.hooks.log(
            f"stopped in block {done + 1}/{len(self.plan.blocks)} at step {fit.steps}/{self.spec.train.max_steps}; "
            f"checkpoint {path}"
        )
        return BacktestResult(Path(self.spec.out), str(self.device), fit, {}, [], [], path)

    def record(self, block: Block, trainer: Trainer, fit: FitResult, progress: Progress) -> None:
        """Forecast the block's cutoffs, rank, log, and keep the block in the checkpoint folder."""
        t = time.perf_counter()
        combination = fit_block_combination(block, trainer.model, self.hooks.log)
        forecasts = predict_block(block, trainer.model, self.plan.hold, combination)
        share = (time.perf_counter() - t) / len(forecasts)
        rows, records = [], []
        for k, (view, fc) in enumerate(zip(block.views, forecasts, strict=True)):
            rows.append(score_rows(fc, self.plan.hold))
            seconds = share + (fit.train_seconds if k == 0 else 0.0)
            records.append(cutoff_record(fc, k == 0, seconds, self.plan.hold))
            self.hooks.log(self.cutoff_line(view.index, k, fit, block))
        if combination is not None:  # the block's weights, with its refit cutoff's record
            records[0]["combination"] = combination.to_dict()
        self.forecasts += forecasts
        clear_checkpoints(self.hooks.checkpoint_dir)
        progress.add(
            pd.concat(rows, ignore_index=True), records, fit.steps, fit.train_seconds, residual_frame(forecasts)
        )
        save_progress(self.hooks.checkpoint_dir, progress)
        if self.on_block is not None:
            self.on_block(progress)

    def cutoff_line(self, index: int, k: int, fit: FitResult, block: Block) -> str:
        """The log line of a cutoff: ``cutoff 5/52 (2019-03-04): refit; trained 120 steps in 3.1s``.

        A cutoff without training says ``predicted with the model of cutoff 4``.
        """
        head = f"cutoff {index + 1}/{len(self.plan.cutoffs)} ({self.plan.dates[index]})"
        if k == 0:
            return f"{head}: refit; trained {fit.steps} steps in {fit.train_seconds:.1f}s"
        return f"{head}: predicted with the model of cutoff {block.views[0].index + 1}"


def _silent(line: str) -> None:
    """A log that drops its lines."""


def score_rows(fc: CutoffForecasts, hold: int) -> pd.DataFrame:
    """The long table's rows of one cutoff."""
    if not fc.strategies.size:
        return empty_rows()
    means = {skill.MODEL: mean_over(fc.model, hold) if fc.rank is None else fc.rank}
    if fc.raw is not None:
        means[skill.MODEL_RAW] = mean_over(fc.raw, hold)
    means |= {k: mean_over(fc.baselines[k], hold) for k in (skill.TRAILING, skill.LAST)}
    return cutoff_rows(fc.cutoff, fc.date, fc.strategies, means, mean_over(fc.realized, hold))


def cutoff_record(fc: CutoffForecasts, refit: bool, seconds: float, hold: int) -> dict[str, Any]:
    """The per-cutoff dict of the backtest's ``cutoffs`` list."""
    errors: dict[str, Any] = {}
    if fc.strategies.size:
        forecasts = {skill.MODEL: fc.model, **{k: fc.baselines[k] for k in ERROR_METHODS if k != skill.MODEL}}
        if fc.raw is not None:
            forecasts[skill.MODEL_RAW] = fc.raw
        errors = hold_errors(fc.realized, forecasts)
    return {
        "cutoff": fc.cutoff,
        "date": fc.date,
        "refit": refit,
        "strategies": int(fc.strategies.size),
        "errors": errors,
        "seconds": seconds,
    }


def finish(
    spec: RunSpec, options: BacktestOptions, plan: CutoffPlan, progress: Progress, walk: Walk, seconds: float
) -> BacktestResult:
    """Write the outputs and ``metrics.json``; the result with the table and this process's forecasts."""
    out = Path(spec.out)
    info = {
        "trainings": progress.trainings,
        "train_seconds": progress.train_seconds,
        "steps": progress.steps,
        "seconds_per_cutoff": seconds / len(plan.cutoffs),
        "total_seconds": seconds,
        "device": str(walk.device),
        "memory_plan": None if walk.memory_plan is None else walk.memory_plan.to_dict(),
        "spec": {"data": spec.data, "model": spec.model, "mode": spec.mode, "train": dataclasses.asdict(spec.train)},
    }
    meta = {"model": spec.model, "mode": spec.mode, "options": msgspec.to_builtins(options), "dates": plan.dates}
    bands = backtest_bands(forecasts_from(progress.residuals), walk.full, plan.hold, spec)
    table = write_backtest(out, progress.rows, progress.records, options, meta, bands=bands, log=walk.hooks.log)
    metrics = {"backtest": table, "run": info}
    write_json_atomic(Outputs(out).metrics, metrics)
    fit = FitResult(progress.steps, None, None, False, False, progress.train_seconds)
    return BacktestResult(out, str(walk.device), fit, metrics, [], [], None, progress.rows, walk.forecasts)
