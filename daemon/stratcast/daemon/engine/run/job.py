"""One forecasting job end to end: load, scale, train, score on the holdout, forecast, write the results.

Outputs in the run folder:

* ``forecast.parquet``: ``strategy, step, forecast, time`` (each strategy's forecast follows its own last period).
* ``summary.parquet``: one row per strategy: ``forecast_sum``, ``forecast_mean`` ("Avg Profit"), ``rank``,
  ``trailing_mean`` (realized mean of the last ``trailing_window`` periods), ``zero_share``, ``observed_periods``,
  ``last_period`` (the time of its last period), ``ended_early`` (it stopped before the panel's last period), and
  with a holdout the strategy's own skill inputs (holdout realized and forecast means, error of the holdout total).
* ``metrics.json``: the skill table, the verdict (skill sentences, then the run's warnings), the warnings
  (``{"kind", "message"}``), the training summary, the spec and the memory plan (``memory_plan``).
* ``model.pt`` (+ ``model.pt.json`` with its sha256): the final checkpoint, loadable with ``weights_only=True``.

Training checkpoints (``kind: "train"``) go to ``checkpoint_dir/step-00000123.pt`` every
``checkpoint_every_steps`` steps and/or ``checkpoint_every_s`` seconds, and when a stop request ends training; a
stopped job writes no outputs. ``run_job(spec, resume_from=path)`` rebuilds the data, model and trainer exactly as
a fresh run (see :mod:`stratcast.daemon.engine.run.build`), loads the trainer state and trains on: on CPU the result
equals an uninterrupted run bit for bit.

Memory plan (see :mod:`stratcast.daemon.engine.run.runplan`): before training, and again on a resume, the job chooses
the micro-batch (on CUDA by measuring a few real steps, or from the plan cache), logs it and hands the
:class:`~stratcast.daemon.engine.run.runplan.RunPlan` to ``on_plan``; the plan goes into ``metrics.json`` and every
checkpoint (``memory_plan``).

Out of memory (see :mod:`stratcast.daemon.engine.memory.oom`): an OOM in a forward or backward pass is retried in place
with a smaller micro-batch and reported to ``on_oom``; when not even one window fits the job raises
:class:`~stratcast.daemon.engine.memory.oom.OutOfMemory` with the memory levers; an OOM in the optimizer step raises
:class:`~stratcast.daemon.engine.memory.oom.OptimizerStepOutOfMemory` naming the checkpoint the run rolls back to (a
resume continues from it). Both subclass ``MemoryError``: the worker exits with its out-of-memory code.

The future forecast comes from the model trained and early-stopped without the holdout, fed the last
``input_size`` periods, so the holdout score describes exactly the model that made the forecast.

Ragged panels: every part of a strategy is its own (see :mod:`stratcast.daemon.engine.data.windows`): its scaler fits
on its own training part, its holdout is its own last ``holdout`` periods and its forecast starts after its own
last period.
"""

from __future__ import annotations

import dataclasses
import json
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch
from torch import Tensor

from stratcast.daemon.engine.data.panel import Panel
from stratcast.daemon.engine.evaluation import skill
from stratcast.daemon.engine.memory.device import describe_device, resolve_device
from stratcast.daemon.engine.memory.oom import OomHook, OptimizerStepOutOfMemory
from stratcast.daemon.engine.prediction.forecast import blend_toward_mean
from stratcast.daemon.engine.run.advice import (
    OnWarning,
    RunWarning,
    Warnings,
    early_best_warning,
    loss_warning,
    windows_warning,
)
from stratcast.daemon.engine.run.build import Forecaster, Log, Prepared, forecaster, make_model, make_trainer, prepare
from stratcast.daemon.engine.run.runplan import OnPlan, RunPlan, start_plan
from stratcast.daemon.engine.spec.config import TrainConfig
from stratcast.daemon.engine.spec.runspec import RunSpec, train_defaults_note
from stratcast.daemon.engine.training.checkpoint import (
    CheckpointError,
    load_checkpoint,
    save_checkpoint,
    save_rotating,
    write_json_atomic,
)
from stratcast.daemon.engine.training.trainer import Trainer
from stratcast.daemon.engine.training.trainparts import FitResult, Progress
from stratcast.shared import runfiles
from stratcast.shared.runfiles import Outputs, RunFolder

OnCheckpoint = Callable[[Path, int], None]
"""Called with a training checkpoint's path and step once it is safely on disk."""
TRAIN_KIND, FINAL_KIND = "train", "final"
"""``kind`` of a resumable training checkpoint and of the final ``model.pt``."""
SPEC_FILE_VERSION = 1
SCHEDULE_OPTIONS = frozenset(
    {"checkpoint_every_steps", "checkpoint_every_s", "micro_batch_size", "oom_grow_after", "activation_checkpointing"}
)
"""Training options that do not change what is trained: a resume may use other values (another micro-batch
accumulates the same gradient, to float tolerance; activation checkpointing recomputes the same activations)."""


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
    on_progress: Callable[[Progress], None] | None = None,
    should_stop: Callable[[], bool] | None = None,
    resume_from: Path | None = None,
    checkpoint_dir: Path | None = None,
    on_checkpoint: OnCheckpoint | None = None,
    on_oom: OomHook | None = None,
    on_plan: OnPlan | None = None,
    plan_cache: Path | None = None,
    on_warning: OnWarning | None = None,
) -> JobResult:
    """Run ``spec`` in this process and write its outputs to ``spec.out``.

    Args:
        spec: The job.
        log: Receives human-readable lines.
        on_progress: Receives a :class:`Progress` every few steps.
        should_stop: Asked before every step; when it answers true, training stops, a checkpoint is written and
            the job returns without outputs (``result.fit.interrupted``, ``result.checkpoint``).
        resume_from: A training checkpoint of this same spec to continue from.
        checkpoint_dir: Where training checkpoints go (default ``spec.out/checkpoints``).
        on_checkpoint: Called after each training checkpoint is written.
        on_oom: Receives an :class:`~stratcast.daemon.engine.memory.oom.OomEvent` for every out-of-memory error.
        on_plan: Receives the :class:`~stratcast.daemon.engine.run.runplan.RunPlan` before training starts (also when
            nothing fits, before the job raises ``OutOfMemory``).
        plan_cache: The memory plan cache file (None: no cache; see
            :func:`~stratcast.daemon.engine.run.runplan.default_plan_cache`).
        on_warning: Receives each :class:`~stratcast.daemon.engine.run.advice.RunWarning` (it is logged too, and
            repeated in the verdict of ``metrics.json``).

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
    model = make_model(spec, prep.panel.n_series)
    saver = Checkpointer(spec, prep, checkpoint_dir or RunFolder(Path(spec.out)).checkpoints, on_checkpoint)
    trainer = make_trainer(spec, model, prep, on_progress, should_stop, on_step=saver.maybe_save)
    trainer.on_oom = on_oom
    if resume_from is not None:
        resume(spec, prep, trainer, resume_from, log)
    shape = (prep.panel.n_series, prep.panel.n_times)
    plan = start_plan(trainer, spec, cache=plan_cache, panel_shape=shape, log=log, on_plan=on_plan)
    saver.plan = plan.to_dict()
    try:
        fit = trainer.fit()
    except OptimizerStepOutOfMemory as exc:
        raise OptimizerStepOutOfMemory(f"{exc}; {saver.rollback_note(resume_from)}") from None
    if fit.interrupted:
        path = saver.save(trainer)
        log(f"stopped at step {fit.steps}/{spec.train.max_steps}; checkpoint {path}")
        return JobResult(Path(spec.out), device_name, fit, {}, [], list(prep.panel.notes), path)
    log(trained_line(fit))
    warnings.add(early_best_warning(fit, spec.train))
    return finish(spec, trainer, prep, fit, device_name, t0, plan, warnings.given)


def trained_line(fit: FitResult) -> str:
    """``trained to step 600 in 41.0s over 2 segments, stopped early``: the run's training time, all segments."""
    segments = f" over {len(fit.segment_seconds)} segments" if fit.earlier_seconds else ""
    early = ", stopped early" if fit.stopped_early else ""
    return f"trained to step {fit.steps} in {fit.train_seconds:.1f}s{segments}{early}"


def finish(
    spec: RunSpec,
    trainer: Trainer,
    prep: Prepared,
    fit: FitResult,
    device: str,
    t0: float,
    plan: RunPlan,
    warnings: Sequence[RunWarning] = (),
) -> JobResult:
    """Score the trained model on the holdout, forecast, and write every output; ``t0`` is the job's start.

    The verdict repeats the ``warnings`` after the skill sentences, so every printer of the verdict shows them.
    """
    forecast_fn = forecaster(spec, trainer.model, prep)
    metrics, per_strategy = evaluate_holdout(spec, prep, forecast_fn) if spec.holdout else ({}, None)
    future = forecast_future(spec, prep, forecast_fn)
    out = Path(spec.out)
    out.mkdir(parents=True, exist_ok=True)
    summary = write_outputs(out, spec, prep, future, per_strategy)
    metrics.update(run_info(spec, fit, device, prep, time.perf_counter() - t0))
    top = [{str(k): v for k, v in r.items()} for r in summary.head(10).to_dict("records")]
    metrics["best_strategy"] = top[0]
    metrics["memory_plan"] = plan.to_dict()
    metrics["verdict"] = [*metrics.get("verdict", []), *(w.message for w in warnings)]
    metrics["warnings"] = [dataclasses.asdict(w) for w in warnings]
    write_json_atomic(Outputs(out).metrics, metrics)
    save_final(out, spec, trainer, prep, plan)
    return JobResult(out, device, fit, metrics, top, list(prep.panel.notes))


class Checkpointer:
    """Writes the training checkpoints of one job: on a step or time interval, and when asked."""

    def __init__(self, spec: RunSpec, prep: Prepared, directory: Path, on_saved: OnCheckpoint | None) -> None:
        self.spec, self.prep, self.directory, self.on_saved = spec, prep, directory, on_saved
        self.last_time = time.monotonic()
        self.last: tuple[int, Path] | None = None
        self.plan: dict[str, Any] | None = None
        """The run's memory plan (:meth:`RunPlan.to_dict`), recorded in every checkpoint."""

    def due(self, step: int) -> bool:
        """Whether the step or the time interval since the last checkpoint has come round."""
        every_steps, every_s = self.spec.train.checkpoint_every_steps, self.spec.train.checkpoint_every_s
        by_steps = every_steps > 0 and step % every_steps == 0
        return by_steps or (every_s > 0 and time.monotonic() - self.last_time >= every_s)

    def maybe_save(self, trainer: Trainer) -> None:
        """The trainer's step hook: save when :meth:`due`."""
        if self.due(trainer.step):
            self.save(trainer)

    def rollback_note(self, resumed_from: Path | None) -> str:
        """Which checkpoint a run that must roll back continues from when resumed."""
        if self.last is not None:
            return f"resume the run to continue from {self.last[1]} (step {self.last[0]})"
        if resumed_from is not None:
            return f"resume the run to continue from {resumed_from}"
        return "no checkpoint was written yet: the run starts again from scratch"

    def save(self, trainer: Trainer) -> Path:
        """Save the trainer's state now (once per step) and return the checkpoint's path."""
        if self.last is not None and self.last[0] == trainer.step:
            return self.last[1]
        state = checkpoint_state(self.spec, trainer, self.prep, TRAIN_KIND, self.plan)
        path = save_rotating(self.directory, trainer.step, state, val_loss=trainer.last_val)
        self.last, self.last_time = (trainer.step, path), time.monotonic()
        if self.on_saved is not None:
            self.on_saved(path, trainer.step)
        return path


def resume(spec: RunSpec, prep: Prepared, trainer: Trainer, path: Path, log: Log) -> None:
    """Load the training checkpoint at ``path`` into a freshly built ``trainer``.

    Raises:
        CheckpointError: when the file is damaged, is not a training checkpoint, or was written for another
            model, mode, configuration or panel.
    """
    state = load_checkpoint(path)
    expected = checkpoint_state(spec, None, prep, TRAIN_KIND)
    for key in ("kind", "model_name", "mode", "model_config", "train_config", "ids"):
        if _comparable(key, state.get(key)) != _comparable(key, expected[key]):
            raise CheckpointError(
                f"checkpoint {path} does not belong to this job: its {key} differs (was the job or its data file "
                "changed?); restart the run from scratch"
            )
    trainer.load_state_dict(state["trainer"])
    log(f"resumed from {path.name} at step {trainer.step}/{spec.train.max_steps}")


def write_spec(out: Path, spec: RunSpec) -> None:
    """Record ``spec`` in ``out/spec.json`` so that ``stratcastd run --resume out`` can rebuild the job."""
    out.mkdir(parents=True, exist_ok=True)
    write_json_atomic(RunFolder(out).spec, {"version": SPEC_FILE_VERSION, "spec": dataclasses.asdict(spec)})


def read_spec(out: Path) -> RunSpec:
    """The spec :func:`write_spec` recorded in ``out``, with ``out`` as its output folder (it may have moved).

    Raises:
        ValueError: when ``out`` holds no readable ``spec.json`` of this version.
    """
    path = RunFolder(out).spec
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError) as exc:
        raise ValueError(f"{out} is not a resumable run folder: cannot read {runfiles.SPEC} ({exc})") from None
    if not isinstance(data, dict) or data.get("version") != SPEC_FILE_VERSION:
        raise ValueError(f"{path} is not a version {SPEC_FILE_VERSION} run spec")
    fields: dict[str, Any] = dict(data["spec"])
    train: dict[str, Any] = {k: tuple(v) if isinstance(v, list) else v for k, v in fields.pop("train").items()}
    params: dict[str, Any] = {k: tuple(v) if isinstance(v, list) else v for k, v in fields.pop("model_params").items()}
    fields["from_data"] = tuple(fields.get("from_data", ()))  # absent from older spec files: nothing chosen
    return RunSpec(**{**fields, "out": str(out)}, train=TrainConfig(**train), model_params=params)


def _comparable(key: str, value: Any) -> Any:
    """``value`` as plain JSON data (tuples and lists alike), without the options a resume may change."""
    if key == "train_config" and isinstance(value, dict):
        value = {k: v for k, v in value.items() if k not in SCHEDULE_OPTIONS}
    return json.loads(json.dumps(value, sort_keys=True, default=str))


PerStrategy = dict[str, np.ndarray[Any, Any]]
"""Holdout figures per scored strategy: ``rows`` (panel rows) and one array per summary column."""


def evaluate_holdout(spec: RunSpec, prep: Prepared, forecast_fn: Forecaster) -> tuple[dict[str, Any], PerStrategy]:
    """Score the model and the baselines on the holdout, from the same origins and on the same strategies.

    A strategy's holdout is its own last ``holdout`` periods, forecast from its own ``val_end``.
    """
    cfg = spec.train
    batch = prep.windows.origins_at(prep.split.val_end)
    if batch is None:
        raise ValueError("no strategy has enough history before the holdout to be scored")
    rows, steps = batch.rows, spec.holdout
    origin = batch.origin  # [M] each scored strategy's first holdout period
    model_fc = forecast_fn(batch.x, rows)[:, :steps]
    recent = skill.trailing_mean(prep.raw[rows], prep.start[rows], origin, cfg.trailing_window)
    model_fc = blend_toward_mean(model_fc, recent, cfg.blend_steps)
    base = skill.baselines(
        prep.raw[rows],
        prep.start[rows],
        origin,
        steps,
        trailing_window=cfg.trailing_window,
        season=cfg.season,
    )
    realized = prep.raw[rows].gather(1, origin[:, None] + torch.arange(steps, device=origin.device))  # [M, steps]
    forecasts = {skill.MODEL: model_fc, **base}
    metrics = skill.score(realized.cpu(), {k: v.cpu() for k, v in forecasts.items()})
    metrics["verdict"] = skill.verdict(metrics)
    # "origin": the latest strategy's (on a rectangular panel, every strategy's)
    metrics["holdout"] = {"periods": steps, "strategies": int(rows.numel()), "origin": int(origin.max())}
    per_strategy = {
        "rows": rows.cpu().numpy(),
        "realized_mean": realized.mean(1).cpu().numpy(),
        "forecast_mean": model_fc.mean(1).cpu().numpy(),
        "total_error": (model_fc.sum(1) - realized.sum(1)).cpu().numpy(),
    }
    return metrics, per_strategy


def forecast_future(spec: RunSpec, prep: Prepared, forecast_fn: Forecaster) -> Tensor:
    """Raw point forecasts [N, H] past each strategy's own last period."""
    cfg = spec.train
    rows = torch.arange(prep.panel.n_series, device=prep.raw.device)
    fc = forecast_fn(prep.windows.forecast_inputs(), rows)
    recent = skill.trailing_mean(prep.raw, prep.start, prep.split.end, cfg.trailing_window)
    return blend_toward_mean(fc, recent, cfg.blend_steps)


def write_outputs(
    out: Path, spec: RunSpec, prep: Prepared, future: Tensor, per_strategy: PerStrategy | None
) -> pd.DataFrame:
    """Write ``forecast.parquet`` and ``summary.parquet``; returns the summary sorted by rank."""
    panel, cfg = prep.panel, spec.train
    fc = future.cpu().double().numpy()
    n, h = fc.shape
    long = pd.DataFrame(
        {"strategy": np.repeat(panel.ids, h), "step": np.tile(np.arange(1, h + 1), n), "forecast": fc.ravel()}
    )
    long["time"] = future_times(panel, h).ravel()
    _atomic_parquet(long, Outputs(out).forecast)
    summary = strategy_summary(panel, prep, fc, cfg.trailing_window)
    if per_strategy is not None:
        for key in ("realized_mean", "forecast_mean", "total_error"):
            col = np.full(n, np.nan)
            col[per_strategy["rows"]] = per_strategy[key]
            summary[f"holdout_{key}"] = col
    summary = summary.sort_values("rank").reset_index(drop=True)
    _atomic_parquet(summary, Outputs(out).summary)
    return summary


def strategy_summary(panel: Panel, prep: Prepared, fc: np.ndarray[Any, Any], window: int) -> pd.DataFrame:
    """One row per strategy: forecast sum and mean, rank by forecast, trailing mean, zero share, last period.

    ``ended_early`` says whether the strategy's last period is before the panel's.
    """
    trailing = skill.trailing_mean(prep.raw, prep.start, prep.split.end, window).cpu().double().numpy()
    observed = panel.periods()
    zero_share = ((panel.values == 0) & observed).sum(1) / np.maximum(observed.sum(1), 1)
    mean = fc.mean(1)
    rank = np.empty(len(mean), dtype=np.int64)
    rank[np.argsort(-mean, kind="stable")] = np.arange(1, len(mean) + 1)
    return pd.DataFrame(
        {
            "strategy": panel.ids,
            "rank": rank,
            "forecast_mean": mean,
            "forecast_sum": fc.sum(1),
            "trailing_mean": trailing,
            "zero_share": zero_share,
            "observed_periods": panel.lengths,
            "last_period": panel.last_times,
            "ended_early": panel.ended_early,
        }
    )


def future_times(panel: Panel, steps: int) -> np.ndarray[Any, Any]:
    """[N, steps] the grid times after each series' last period, continuing the grid's step."""
    times: np.ndarray[Any, Any] = panel.times
    step = times[-1] - times[-2] if len(times) > 1 else 1
    last: np.ndarray[Any, Any] = panel.last_times
    out: np.ndarray[Any, Any] = last[:, None] + step * np.arange(1, steps + 1)
    return out


def _atomic_parquet(frame: pd.DataFrame, path: Path) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    frame.to_parquet(tmp, index=False)
    tmp.replace(path)


def run_info(spec: RunSpec, fit: FitResult, device: str, prep: Prepared, seconds: float) -> dict[str, Any]:
    """The training summary and the spec, for ``metrics.json``."""
    return {
        "run": {
            "model": spec.model,
            "mode": spec.mode,
            "device": device,
            "strategies": prep.panel.n_series,
            "periods": prep.panel.n_times,
            "steps": fit.steps,
            "best_step": fit.best_step,
            "best_val_loss": fit.best_val_loss,
            "stopped_early": fit.stopped_early,
            "interrupted": fit.interrupted,
            "train_seconds": fit.train_seconds,
            "train_segment_seconds": fit.segment_seconds,
            "total_seconds": seconds,
            "notes": list(prep.panel.notes),
        },
        "spec": {
            "data": spec.data,
            "holdout": spec.holdout,
            "train": dataclasses.asdict(spec.train),
            "model_params": dict(spec.model_params),
            "chosen_from_data": prep.chosen,
        },
    }


def save_final(out: Path, spec: RunSpec, trainer: Trainer, prep: Prepared, plan: RunPlan) -> None:
    """The final checkpoint: trainer state, scaler, configs and memory plan, loadable with ``weights_only=True``."""
    save_checkpoint(Outputs(out).model, checkpoint_state(spec, trainer, prep, FINAL_KIND, plan.to_dict()))


def checkpoint_state(
    spec: RunSpec, trainer: Trainer | None, prep: Prepared, kind: str, plan: dict[str, Any] | None = None
) -> dict[str, Any]:
    """A checkpoint's named state (``trainer`` is None when only the identifying fields are wanted).

    ``memory_plan`` is the plan the run trained under (:meth:`RunPlan.to_dict`): a record, not restored on a
    resume, which plans again for its own device.
    """
    return {
        "kind": kind,
        "model_name": spec.model,
        "mode": spec.mode,
        "model_config": dataclasses.asdict(spec.model_config()),
        "train_config": dataclasses.asdict(spec.train),
        "trainer": None if trainer is None else trainer.state_dict(),
        "scaler": prep.scaler.state_dict(),
        "ids": [str(i) for i in prep.panel.ids],
        "memory_plan": plan,
    }
