"""``submit``: validate a job (options and data file), then queue it."""

from __future__ import annotations

import asyncio
import dataclasses
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import msgspec

from stratcast.daemon.handlers.common import InvalidSpec
from stratcast.daemon.handlers.context import DaemonContext
from stratcast.shared.jobargs import DAEMON_DEVICES
from stratcast.shared.protocol import JobSpec, Placement, RunInfo, Submit, to_builtins
from stratcast.shared.runfiles import RunFolder

if TYPE_CHECKING:
    from stratcast.daemon.engine.data.panel import Panel


@dataclass(frozen=True)
class CheckedJob:
    """What :func:`check_job` loaded: the panel a worker would train on and what it was checked against."""

    panel: Panel
    """The data with the series too short to train on dropped (``panel.notes`` lists them)."""
    loaded: int
    """Strategies in the file, before dropping."""
    required: int
    """Periods a series needs: ``input_size + 1 + val_size + holdout`` (val_size as chosen for the history)."""


async def handle(d: DaemonContext, req: Submit) -> dict[str, Any]:
    """Queue the run once its options and data pass the checks a worker would make first."""
    return {"run": to_builtins(await queue_job(d, req.job, req.placement))}


async def queue_job(d: DaemonContext, job: JobSpec, placement: Placement, *, schedule: int | None = None) -> RunInfo:
    """Check ``job`` (in a thread: reading the data can take seconds) and add it to the queue.

    Raises:
        InvalidSpec: naming what is wrong with the options, the data file or the placement.
    """
    check_placement(d, placement)
    async with d.validation:
        await asyncio.to_thread(check_job, job, d.home.workspace)
    run = d.db.add_run(job, placement, runs_dir=d.home.runs, schedule=schedule)
    folder = RunFolder(Path(run.out))
    folder.path.mkdir(parents=True, exist_ok=True)
    folder.job.write_bytes(msgspec.json.encode(job))
    d.db.add_event(run.id, "submitted", {"schedule": schedule})
    return d.run_changed(run)


def check_placement(d: DaemonContext, placement: Placement) -> None:
    """Dependencies must name existing runs; a memory cap must be positive; several devices need GPUs of their own.

    Raises:
        InvalidSpec: naming the option at fault.
    """
    for dep in placement.after:
        try:
            d.db.get_run(dep)
        except KeyError:
            raise InvalidSpec(f"--after {dep}: there is no run {dep}") from None
    if placement.memory_gib is not None and placement.memory_gib <= 0:
        raise InvalidSpec(f"--memory-gib must be positive, got {placement.memory_gib}")
    if placement.gpus > 1:
        if placement.memory_gib is not None or placement.gpu is not None:
            given = "--memory-gib" if placement.memory_gib is not None else "--gpu"
            raise InvalidSpec(
                f"--gpus-per-run {placement.gpus} takes whole GPUs chosen by the daemon: drop {given}, or submit "
                "on one GPU"
            )
        if d.runner.name != "local":
            raise InvalidSpec(
                f"--gpus-per-run {placement.gpus}: the {d.runner.name} executor runs each run on one GPU; a run "
                "over several GPUs needs a daemon with the local executor on a multi-GPU server"
            )


def check_job(job: JobSpec, home: Path | None = None) -> CheckedJob:
    """Build the run's spec and load its data as the worker will, so a bad job is refused now, not later.

    A scoring job (``job.saved``) loads the saved model from ``home``'s store and checks that the data fits it.

    Returns:
        The loaded panel, for ``check_data`` to describe.

    Raises:
        InvalidSpec: with the engine's message (file, column and first offending rows for data errors).
    """
    from stratcast.daemon.engine.backtest.cutoffs import plan_cutoffs
    from stratcast.daemon.engine.data.panel import DataError
    from stratcast.daemon.engine.run.build import load_trainable
    from stratcast.daemon.engine.spec.runspec import spec_from_job
    from stratcast.daemon.engine.study.objectives import cutoff_objective

    if job.device not in DAEMON_DEVICES:
        raise InvalidSpec(f"device {job.device!r}: the daemon assigns GPUs itself; use --gpu N to pin one")
    if not Path(job.data).is_absolute():
        raise InvalidSpec(f"data path {job.data!r} must be absolute: the daemon does not share your working folder")
    if job.saved is not None:
        return check_scoring(job, home)
    if job.save_as is not None and job.backtest is not None:
        raise InvalidSpec(f"--save-as {job.save_as}: a backtest trains a model per cutoff and keeps none; save a run")
    try:
        cutoff_objective(job)  # a study's Wilcoxon trials report one per cutoff
        spec = spec_from_job(job, out="-", device="cpu")
        if job.backtest is not None:  # every cutoff is scored on its own holding: no holdout
            spec = dataclasses.replace(spec, holdout=0)
        trainable = load_trainable(spec)  # an error when no series is long enough
        if job.backtest is not None:
            plan_cutoffs(trainable.loaded, spec, job.backtest)  # refuses a plan the panel cannot hold
    except (DataError, ValueError, KeyError, OSError) as exc:
        raise InvalidSpec(str(exc)) from None
    return CheckedJob(panel=trainable.panel, loaded=trainable.loaded.n_series, required=trainable.needs.total)


def check_scoring(job: JobSpec, home: Path | None) -> CheckedJob:
    """Check a scoring job: options a saved model fixes are left alone, the version loads, the data fits it.

    Raises:
        InvalidSpec: naming the option, or with the saved model's message.
    """
    from stratcast.daemon.engine.saved.score import check_fit
    from stratcast.daemon.engine.saved.store import SavedModelError
    from stratcast.daemon.engine.saved.versions import load_saved

    assert job.saved is not None
    given = [
        option
        for option, used in (
            ("--ensemble", bool(job.ensemble)),
            ("--backtest", job.backtest is not None),
            ("--save-as", job.save_as is not None),
            ("--set", bool(job.sets)),
            ("--holdout", job.holdout != 0),
            ("--horizon", job.horizon is not None),
            ("--input-size", job.input_size is not None),
            ("--mode", job.mode != "batch"),
            (
                "--id-col/--time-col/--target-col",
                any(c is not None for c in (job.id_col, job.time_col, job.target_col)),
            ),
            ("--fill-missing", job.fill_missing != JobSpec(data="").fill_missing),
            ("--levels", job.levels != JobSpec(data="").levels),
            ("--rank-by", job.rank_by != JobSpec(data="").rank_by),
        )
        if used
    ]
    if given:
        raise InvalidSpec(
            f"--saved {job.saved}: {', '.join(given)} cannot be given when scoring with a saved model (it keeps "
            "the model, its options, columns, horizon, input size and interval levels; it trains nothing)"
        )
    if home is None:
        raise InvalidSpec(f"--saved {job.saved}: no store of saved models to load it from")
    try:
        saved = load_saved(home, job.saved)
        fit = check_fit(saved, job.data)
    except SavedModelError as exc:
        raise InvalidSpec(str(exc)) from None
    return CheckedJob(panel=fit.panel, loaded=fit.loaded, required=fit.spec.train.min_input)
