"""The worker: one run of the daemon in its own process, reporting to the daemon through JSON lines.

Command line::

    python -m stratcast.daemon.worker RUN_DIR [--resume] [--device cpu|cuda:0] [--memory-gib X] [--plan-cache PATH]
                                      [--world-size N]

``RUN_DIR`` is made by the daemon and holds ``job.json`` (a :class:`~stratcast.shared.protocol.JobSpec` as JSON);
the worker writes the outputs to ``RUN_DIR/out/`` and training checkpoints to ``RUN_DIR/checkpoints/``. The daemon
sets ``CUDA_VISIBLE_DEVICES`` (so the assigned GPU is ``cuda:0``) and
``PYTORCH_CUDA_ALLOC_CONF=expandable_segments:True``, and appends the worker's stderr to ``RUN_DIR/log.txt``.
``--resume`` continues from the newest checkpoint that loads (or starts afresh, saying so in the log);
``--memory-gib`` caps the worker's CUDA allocator (``torch.cuda.set_per_process_memory_fraction``);
``--plan-cache`` names the memory plan cache file (default: ``$STRATCAST_PLAN_CACHE``, else
``memory-plans.json`` in the daemon's state folder, see :mod:`stratcast.daemon.engine.run.runplan`).

``--world-size N`` (default 1) trains the run data-parallel over ``N`` processes
(:mod:`stratcast.daemon.engine.training.distributed`): on CUDA ``CUDA_VISIBLE_DEVICES`` lists ``N`` GPUs and rank
``r`` trains on ``cuda:r`` (NCCL); on the CPU the ranks use gloo. This process is rank 0: it starts ranks
``1..N-1`` as its children (:mod:`stratcast.daemon.peers`; the hidden ``--rank``, ``--master-port`` and
``--resume-from`` options), alone sends events, writes the outputs and the checkpoint, and is what the daemon
signals (a stop reaches every rank at the next step). A rank that dies fails the run with a reason naming it.
Backtests, scoring jobs, ensembles and per-strategy mode refuse ``N > 1`` as bad input.

**stderr** is the human log: the job's lines, progress lines, warnings, and on failure a one-line summary
followed by the full traceback. Stray writes to stdout (a library's ``print``) land there too.

**stdout** carries machine events (:mod:`stratcast.shared.events`), one JSON line each, flushed as written:
``started``, ``plan``, ``progress``, ``memory``, ``checkpoint``, ``oom``, ``warning``, ``cutoff`` (a backtest
whose job sets ``report_cutoffs``: one per finished cutoff, for a study's Wilcoxon pruner), then one of
``finished``, ``stopped`` or ``failed``.

``plan`` is sent once before training, on every start and resume; when its ``micro_batch`` is 0 (nothing fits) a
``failed`` event with the out-of-memory exit follows. ``progress`` follows a
:class:`~stratcast.shared.events.ProgressReported` at most every :data:`PROGRESS_EVENT_EVERY_S` (always for
validation checks and the last step). ``memory`` goes with a progress report when the last one is at least
:data:`MEMORY_EVERY_S` old, and before ``finished``, ``stopped`` and ``failed``. ``oom`` reports every
out-of-memory error; when the run cannot go on (nothing smaller to retry with, or the optimizer step ran out) the
worker exits :attr:`WorkerExit.OUT_OF_MEMORY` after a ``failed`` event.

**Signals:** the first SIGTERM or SIGINT asks for a stop: training ends at the next step boundary, a checkpoint is
written and the worker exits :attr:`WorkerExit.STOPPED`. A second one exits at once with
:attr:`WorkerExit.FORCED`. If the daemon goes away (the event pipe breaks) the worker stops the same way.

This module imports no torch at import time, so the daemon can import :class:`WorkerExit` cheaply.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import math
import os
import signal
import sys
import threading
import time
import traceback
from collections.abc import Callable, Sequence
from enum import IntEnum
from pathlib import Path
from types import FrameType
from typing import IO, TYPE_CHECKING, NoReturn

import msgspec
import psutil

from stratcast.shared import runfiles
from stratcast.shared.events import (
    CheckpointSaved,
    CutoffScored,
    MemorySampled,
    PlanChosen,
    ProgressReported,
    RanOutOfMemory,
    RunFailed,
    RunFinished,
    RunStopped,
    WarningGiven,
    WorkerEvent,
    WorkerStarted,
    encode_line,
)
from stratcast.shared.protocol import BacktestOptions, JobSpec
from stratcast.shared.runfiles import Outputs, RunFolder

if TYPE_CHECKING:
    import torch

    from stratcast.daemon.engine.backtest.state import Progress
    from stratcast.daemon.engine.run.advice import RunWarning
    from stratcast.daemon.engine.run.job import JobResult
    from stratcast.daemon.engine.run.runplan import RunPlan
    from stratcast.daemon.engine.saved.manifest import StudyEvidence
    from stratcast.daemon.engine.spec.runspec import RunSpec
    from stratcast.daemon.engine.training.distributed import Ranks
    from stratcast.daemon.peers import Peers

MEMORY_EVERY_S = 0.5
"""Least time between two ``memory`` events."""
PROGRESS_EVENT_EVERY_S = 0.2
"""Least time between two ``progress`` events (validation checks and the last step always get one): a fast model
reports every 10 steps, hundreds of times a second, and each event wakes the daemon and its clients, whose time
slices then stall the worker's own compute threads (DLinear trained 1.4x slower through the daemon before)."""
PROGRESS_LINE_EVERY_S = 5.0
"""Least time between two progress lines in the log (validation checks always get one)."""
GIB = 1024**3
BAD_INPUT_GRACE_S = 10.0
"""How long rank 0 has to report bad input itself after another rank exited for it (they read the same job)."""


class WorkerExit(IntEnum):
    """The worker's exit codes."""

    OK = 0
    """Finished; the outputs are in ``RUN_DIR/out``."""
    FAILED = 1
    """Anything else: a bug, the device, the disk (the log has the traceback)."""
    USAGE = 2
    """Bad command line (argparse's code)."""
    BAD_INPUT = 3
    """The job's data or options were rejected; the log says what to fix."""
    STOPPED = 75
    """A stop request ended training with a checkpoint; ``--resume`` continues (sysexits' EX_TEMPFAIL)."""
    OUT_OF_MEMORY = 76
    """The device (or host) ran out of memory."""
    FORCED = 130
    """A second stop signal: ended at once, without a new checkpoint."""


EXIT_OK, EXIT_FAILED, EXIT_BAD_INPUT = WorkerExit.OK, WorkerExit.FAILED, WorkerExit.BAD_INPUT
EXIT_STOPPED, EXIT_OOM, EXIT_FORCED = WorkerExit.STOPPED, WorkerExit.OUT_OF_MEMORY, WorkerExit.FORCED
"""The exit codes as plain constants, for the daemon's runner."""


def build_parser() -> argparse.ArgumentParser:
    """The worker's command line."""
    p = argparse.ArgumentParser(prog="python -m stratcast.daemon.worker", description=__doc__.splitlines()[0])
    p.add_argument("run_dir", type=Path, help=f"the run's folder, holding {runfiles.JOB}")
    p.add_argument("--resume", action="store_true", help="continue from the newest good checkpoint")
    p.add_argument("--device", help="cpu or cuda:N (default: the job's device)")
    p.add_argument("--memory-gib", type=_positive, help="cap this worker's CUDA memory at this many GiB")
    p.add_argument(
        "--plan-cache", type=Path, help="memory plan cache file (default: $STRATCAST_PLAN_CACHE or the state folder's)"
    )
    p.add_argument("--world-size", type=_count, default=1, help="train over this many devices (default 1)")
    p.add_argument("--rank", type=int, default=0, help=argparse.SUPPRESS)
    p.add_argument("--master-port", type=int, default=0, help=argparse.SUPPRESS)
    p.add_argument("--resume-from", type=Path, help=argparse.SUPPRESS)
    return p


def _count(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected 1 or more devices, got {text!r}")
    return value


def _positive(text: str) -> float:
    value = float(text)
    if not value > 0:
        raise argparse.ArgumentTypeError(f"expected a positive number of GiB, got {text!r}")
    return value


def main(argv: Sequence[str] | None = None) -> int:
    """Run the job in ``RUN_DIR`` and return the exit code (see :class:`WorkerExit`)."""
    args = build_parser().parse_args(argv)
    if args.rank > 0:  # another rank of a data-parallel run: no events, its log only on failure
        from stratcast.daemon.peers import die_with_parent

        die_with_parent()
        LogMode.prefix, LogMode.quiet = f"rank {args.rank}: ", True
    events = Events.take_stdout() if args.rank == 0 else Events(None)
    stop = StopFlag()
    events.on_broken = stop.request
    try:
        return run(args, events, stop)
    except Exception as exc:  # every failure becomes an exit code, a log entry and a "failed" event
        return fail(exc, events)


def run(args: argparse.Namespace, events: Events, stop: StopFlag) -> int:
    """Read the job, run it with checkpoints and events, and map how it ended to an exit code."""
    from stratcast.daemon.engine.memory.device import tune_cpu_allocator

    tune_cpu_allocator()  # before torch makes its first large allocation
    from stratcast.daemon.engine.memory.device import resolve_device
    from stratcast.daemon.engine.run.build import check_distributable
    from stratcast.daemon.engine.run.job import run_job
    from stratcast.daemon.engine.run.runplan import default_plan_cache
    from stratcast.daemon.engine.training.checkpoint import latest_checkpoint
    from stratcast.daemon.engine.training.distributed import Ranks, latest_for_world, timeout

    run_dir: Path = args.run_dir
    job = read_job(RunFolder(run_dir).job)
    world = args.world_size
    if world > 1 and (job.saved is not None or job.backtest is not None):
        kind = "a scoring job" if job.saved is not None else "a backtest"
        raise ValueError(f"{kind} cannot run over {world} devices (--gpus-per-run {world}): run it on one")
    if job.saved is not None:
        return score_saved(job, run_dir, args, events)
    ranks = Ranks(args.rank, world)
    device = rank_device(resolve_device(args.device or job.device), ranks)
    spec = load_spec(job, run_dir, str(device))
    check_distributable(spec, world)
    share = ranks.share(spec.train.batch_size)  # before any rank starts: a batch too small is bad input
    checkpoints = RunFolder(run_dir).checkpoints
    if ranks.rank > 0:
        resume_from = args.resume_from  # rank 0 chose it
    elif world > 1:
        resume_from = latest_for_world(checkpoints, world, log=log) if args.resume else None
    else:
        resume_from = latest_checkpoint(checkpoints, log=log) if args.resume else None
    if args.resume and resume_from is None:
        log(f"no usable checkpoint in {checkpoints}: starting from scratch")
    events.emit(WorkerStarted(pid=os.getpid(), device=str(device), resume=_str(resume_from)))
    limit_memory(device, args.memory_gib)
    memory = MemoryReporter(device, events)
    events.memory = memory
    if world > 1:
        start_ranks(args, ranks, device, resume_from, events)
        per_step = spec.train.batch_size
        log(f"training over {world} devices ({device.type}): rank 0 draws {share} of each step's {per_step}")
    engine = run_job if job.backtest is None else backtest_runner(job.backtest, cutoff_reporter(job, events))
    distributed = {"ranks": ranks} if world > 1 else {}
    result = engine(
        spec,
        log=log,
        on_progress=ProgressReporter(events, memory),
        should_stop=stop,
        resume_from=resume_from,
        checkpoint_dir=RunFolder(run_dir).checkpoints,
        on_checkpoint=events.checkpoint_saved,
        on_oom=events.oom,
        on_plan=events.plan,
        on_warning=events.warning,
        plan_cache=None if ranks.rank > 0 else args.plan_cache or default_plan_cache(),
        **distributed,
    )
    if ranks.rank > 0:
        return WorkerExit.STOPPED if result.fit.interrupted else WorkerExit.OK
    if events.peers is not None and result.fit.interrupted:
        events.peers.join(timeout().total_seconds())  # their state files are written before "stopped" is sent
    memory.report(force=True)
    if result.fit.interrupted:
        events.emit(RunStopped(path=str(result.checkpoint), step=result.fit.steps))
        return WorkerExit.STOPPED
    metrics = json.loads(Outputs(result.out_dir).metrics.read_text())
    if job.save_as is not None:
        save_as(job.save_as, result.out_dir, run_dir, events)
    if events.peers is not None:
        events.peers.join(timeout().total_seconds())
    events.emit(RunFinished(out=str(result.out_dir), metrics=metrics))
    log(f"finished: outputs in {result.out_dir}")
    return WorkerExit.OK


def start_ranks(
    args: argparse.Namespace, ranks: Ranks, device: torch.device, resume_from: Path | None, events: Events
) -> None:
    """Join this rank to the run's process group; rank 0 first starts the other ranks and watches them."""
    import torch

    from stratcast.daemon.engine.training.distributed import join_group, lead_store
    from stratcast.daemon.peers import Peers

    if device.type == "cpu":  # the ranks share the cores
        torch.set_num_threads(max(1, (os.cpu_count() or 1) // ranks.world))
    if ranks.rank > 0:
        join_group(ranks, device, port=args.master_port)
        return
    store = lead_store(ranks.world)

    def command(rank: int) -> list[str]:
        cmd = [sys.executable, "-m", "stratcast.daemon.worker", str(args.run_dir), "--world-size", str(ranks.world)]
        cmd += ["--rank", str(rank), "--master-port", str(store.port)]
        for flag, value in (
            ("--device", args.device),
            ("--memory-gib", args.memory_gib),
            ("--resume-from", resume_from),
        ):
            if value is not None:
                cmd += [flag, str(value)]
        return cmd

    events.peers = Peers.start(command, ranks.world)
    events.peers.watch(lambda rank, code: peer_failed(rank, code, ranks.world, events))
    join_group(ranks, device, store=store)


def peer_failed(rank: int, code: int, world: int, events: Events) -> None:
    """The watcher's verdict on a rank that ended abnormally: fail the run naming it (unless already ending)."""
    from stratcast.daemon.peers import exit_reason

    if code == WorkerExit.BAD_INPUT:
        time.sleep(BAD_INPUT_GRACE_S)  # rank 0 reads the same job and data: its own message is the better one
    if not events.ending.acquire(blocking=False):
        return  # rank 0 is failing already; its fail() names the rank
    summary = f"rank {rank} of {world} {exit_reason(code)} (its log lines start with 'rank {rank}: ')"
    log(f"failed: {summary}", always=True)
    if events.peers is not None:
        events.peers.kill()
    if events.memory is not None:
        events.memory.report(force=True)
    events.emit(RunFailed(exit=int(WorkerExit.FAILED), error=summary))
    exit_now(WorkerExit.FAILED)


def rank_device(device: torch.device, ranks: Ranks) -> torch.device:
    """Rank ``r``'s device: ``cuda:r`` on CUDA (``device`` itself for one rank); the CPU as it is.

    Raises:
        ValueError: for several ranks on a device kind that cannot (MPS), or fewer GPUs than ranks.
    """
    from stratcast.daemon.engine.memory.device import resolve_device

    if ranks.world == 1 or device.type == "cpu":
        return device
    if device.type != "cuda":
        raise ValueError(f"a run over {ranks.world} devices needs CUDA GPUs or the CPU, not {device.type}")
    return resolve_device(f"cuda:{ranks.rank}")


def save_as(name: str, out_dir: Path, run_dir: Path, events: Events) -> None:
    """Save the finished run as the next version of ``name`` (``--save-as``) in the home's store, logging its ref.

    A failure to save is a ``warning`` event and a log line: the run itself succeeded.
    """
    from stratcast.daemon.engine.saved.versions import save_run
    from stratcast.shared.paths import resolve_home

    try:
        version = save_run(
            resolve_home().state, out_dir, name, source=f"run {run_dir.name}", study=kept_evidence(run_dir)
        )
    except Exception as exc:  # the run succeeded whatever happens to its copy
        message = f"--save-as {name}: the run was not saved ({type(exc).__name__}: {exc})"
        log(f"warning: {message}")
        events.emit(WarningGiven(kind="save", message=message))
        return
    log(f"saved as {version.ref} ({version.path})")


def kept_evidence(run_dir: Path) -> StudyEvidence | None:
    """The study evidence of a study's final run (its folder's ``study.json``); None for any other run.

    A damaged file is logged and left out: the version is saved without it.
    """
    from stratcast.daemon.engine.saved.manifest import StudyEvidence

    path = RunFolder(run_dir).study
    if not path.exists():
        return None
    try:
        return msgspec.json.decode(path.read_bytes(), type=StudyEvidence)
    except (OSError, msgspec.DecodeError) as exc:
        log(f"warning: {path} is not a study's evidence ({exc}): the version is saved without it")
        return None


def score_saved(job: JobSpec, run_dir: Path, args: argparse.Namespace, events: Events) -> int:
    """A scoring job: forecast ``job.data`` with the saved model ``job.saved`` (resolved now, in the home's store).

    The outputs are a run's (in ``RUN_DIR/out``); nothing is trained and no checkpoint is written, so a stopped
    scoring job starts again from the beginning. A saved model that is missing, damaged or does not fit the data
    is bad input (:class:`~stratcast.daemon.engine.saved.store.SavedModelError` is a ``ValueError``).
    """
    from stratcast.daemon.engine.memory.device import resolve_device
    from stratcast.daemon.engine.saved.score import score
    from stratcast.daemon.engine.saved.versions import load_saved
    from stratcast.shared.paths import resolve_home

    assert job.saved is not None
    device = resolve_device(args.device or job.device)
    events.emit(WorkerStarted(pid=os.getpid(), device=str(device), resume=None))
    memory = MemoryReporter(device, events)
    events.memory = memory
    saved = load_saved(resolve_home().state, job.saved)
    log(f"scoring {job.data} with saved model {saved.version.ref} (asked for {job.saved}) on {device}")
    out = RunFolder(run_dir).out.path
    result = score(saved, job.data, out, device=str(device), log=log)
    for strategy, why in result.skipped.items():
        log(f"{strategy}: skipped, {why}")
    memory.report(force=True)
    metrics = json.loads(Outputs(out).metrics.read_text())  # as written: JSON data, not the engine's objects
    events.emit(RunFinished(out=str(out), metrics=metrics))
    log(f"finished: outputs in {out}")
    return WorkerExit.OK


def backtest_runner(
    options: BacktestOptions, on_block: Callable[[Progress], None] | None = None
) -> Callable[..., JobResult]:
    """:func:`~stratcast.daemon.engine.backtest.job.run_backtest` with ``options`` and ``on_block``, as ``run_job``."""
    import functools

    from stratcast.daemon.engine.backtest.job import run_backtest

    return functools.partial(run_backtest, options=options, on_block=on_block)


def cutoff_reporter(job: JobSpec, events: Events) -> Callable[[Progress], None] | None:
    """The block hook that sends a ``cutoff`` event per finished cutoff, when the job asks (``report_cutoffs``).

    Raises:
        ValueError: for a ``report_cutoffs`` that is no backtest objective.
    """
    from stratcast.daemon.engine.study.objectives import cutoff_objective, finished_cutoff_scores

    objective = cutoff_objective(job)
    if objective is None:
        return None
    reported = 0

    def report(progress: Progress) -> None:
        nonlocal reported
        values = finished_cutoff_scores(objective, progress)
        for k in range(reported, len(values)):
            if math.isfinite(values[k]):  # a non-finite one is no evidence: the pruner sees the others
                events.emit(CutoffScored(cutoff=k, value=values[k]))
        reported = len(values)

    return report


def read_job(path: Path) -> JobSpec:
    """The run's :class:`JobSpec`.

    Raises:
        ValueError: when the file is not a valid job (``msgspec`` names the field).
    """
    job: JobSpec = msgspec.json.decode(path.read_bytes(), type=JobSpec)
    return job


def load_spec(job: JobSpec, run_dir: Path, device: str) -> RunSpec:
    """The engine's spec for ``job``; an unknown model is bad input like any other option.

    Raises:
        ValueError: for any option the engine rejects.
    """
    from stratcast.daemon.engine.spec.runspec import spec_from_job

    try:
        return spec_from_job(job, out=str(RunFolder(run_dir).out.path), device=device)
    except KeyError as exc:
        raise ValueError(exc.args[0] if exc.args else str(exc)) from None


def limit_memory(device: torch.device, gib: float | None) -> None:
    """Cap the CUDA caching allocator of this process at ``gib`` GiB (``--memory-gib``)."""
    import torch

    if gib is None:
        return
    if device.type != "cuda":
        log(f"--memory-gib caps CUDA memory only; no cap on {device}")
        return
    total = torch.cuda.get_device_properties(device).total_memory
    fraction = min(1.0, gib * GIB / total)
    torch.cuda.set_per_process_memory_fraction(fraction, device)
    log(f"memory cap: {gib:.2f} GiB of {total / GIB:.1f} GiB on {device} ({fraction:.1%})")


class LogMode:
    """How this process logs: another rank of a data-parallel run prefixes its lines and logs only failures."""

    prefix = ""
    quiet = False


def log(message: str, *, always: bool = False) -> None:
    """One timestamped line of the human log (stderr); ``always``: also from a quiet rank."""
    if LogMode.quiet and not always:
        return
    print(f"{time.strftime('%Y-%m-%d %H:%M:%S')} {LogMode.prefix}{message}", file=sys.stderr, flush=True)


def _str(path: Path | None) -> str | None:
    return None if path is None else str(path)


def rank_timed_out(summary: str) -> bool:
    """Whether rank 0's error ``summary`` is a wait for another rank that ran past the process group's timeout.

    A collective says ``Timed out``; a wait on the group's store (a barrier, a key exchange) says
    ``DistStoreError: wait timeout``; which one a hung rank causes depends on where rank 0 was waiting.
    """
    return "Timed out" in summary or (summary.startswith("DistStoreError") and "timeout" in summary)


def fail(exc: Exception, events: Events) -> int:
    """Log how the run failed, send the ``failed`` event, and return the exit code for ``exc``."""
    events.ending.acquire()  # the ranks' watcher reports nothing from now on
    code = exit_code_for(exc)
    summary = f"{type(exc).__name__}: {exc}".splitlines()[0] if str(exc) else type(exc).__name__
    if events.peers is not None:
        from stratcast.daemon.engine.training.distributed import TIMEOUT_ENV
        from stratcast.daemon.peers import exit_reason

        peer = events.peers.failed(wait_s=3.0) if code == WorkerExit.FAILED else None
        if peer is not None:  # rank 0's error is the broken connection to the rank that died
            summary = f"rank {peer[0]} {exit_reason(peer[1])}; on rank 0: {summary}"
        elif code == WorkerExit.FAILED and rank_timed_out(summary):
            summary = f"a rank did not answer within the process group's timeout (${TIMEOUT_ENV}): {summary}"
        events.peers.kill()
    if code == WorkerExit.BAD_INPUT:
        log(f"error: {summary}", always=True)
        log("the job's data or options were rejected: fix what the line above names and submit the job again")
    else:
        where = _where(exc)
        what = "out of memory" if code == WorkerExit.OUT_OF_MEMORY else "failed"
        log(f"{what}: {summary}{where}", always=True)
        traceback.print_exception(exc, file=sys.stderr)
        sys.stderr.flush()
    if events.memory is not None:
        events.memory.report(force=True)
    events.emit(RunFailed(exit=int(code), error=summary))
    return code


def _where(exc: BaseException) -> str:
    """`` (at job.py:120 in run_job)``: the innermost stratcast frame of the traceback, else the innermost one."""
    frames = traceback.extract_tb(exc.__traceback__)
    ours = [f for f in frames if f"{os.sep}stratcast{os.sep}" in f.filename]
    if not frames:
        return ""
    frame = (ours or frames)[-1]
    return f" (at {Path(frame.filename).name}:{frame.lineno} in {frame.name})"


def exit_code_for(exc: BaseException) -> WorkerExit:
    """Out of memory (CUDA's error, or the CPU allocator's plain RuntimeError), bad input, or a failure."""
    if isinstance(exc, MemoryError):
        return WorkerExit.OUT_OF_MEMORY
    if isinstance(exc, RuntimeError):
        torch = sys.modules.get("torch")
        text = str(exc)
        if (torch is not None and isinstance(exc, torch.OutOfMemoryError)) or any(
            needle in text for needle in ("can't allocate memory", "out of memory")
        ):
            return WorkerExit.OUT_OF_MEMORY
        return WorkerExit.FAILED
    # DataError, DeviceError and msgspec's errors are ValueErrors; a missing job.json is the daemon's fault
    return WorkerExit.BAD_INPUT if isinstance(exc, ValueError) else WorkerExit.FAILED


class Events:
    """Machine events, one JSON object per line, on what was stdout when the worker started."""

    def __init__(self, stream: IO[bytes] | None) -> None:
        self.stream: IO[bytes] | None = stream
        """None: no events (another rank of a data-parallel run)."""
        self.on_broken: Callable[[], None] | None = None
        """Called once if the reader goes away (the daemon died): the worker then stops with a checkpoint."""
        self.memory: MemoryReporter | None = None
        """Set once the device is known, so that a failure can send a last ``memory`` event."""
        self.peers: Peers | None = None
        """The other ranks, when this is rank 0 of a data-parallel run."""
        self.ending = threading.Lock()
        """Taken by whoever sends the ``failed`` event: rank 0's failure or the ranks' watcher, never both."""

    @classmethod
    def take_stdout(cls) -> Events:
        """Keep stdout for events only: stray writes to fd 1 (print, C libraries) go to stderr from now on."""
        sys.stdout.flush()
        stream = os.fdopen(os.dup(1), "wb")
        os.dup2(2, 1)
        return cls(stream)

    def emit(self, event: WorkerEvent) -> None:
        """Write one event line and flush it."""
        if self.stream is None:
            return
        try:
            self.stream.write(encode_line(event))
            self.stream.flush()
        except (BrokenPipeError, ConnectionResetError):
            self._broken()

    def checkpoint_saved(self, path: Path, step: int) -> None:
        """The job's checkpoint callback: a ``checkpoint`` event and a log line."""
        self.emit(CheckpointSaved(path=str(path), step=step))
        log(f"checkpoint {path.name}")

    def plan(self, plan: RunPlan) -> None:
        """The job's plan callback: a ``plan`` event (the job logs the plan itself)."""
        self.emit(msgspec.convert(plan.to_dict(), PlanChosen))

    def warning(self, warning: RunWarning) -> None:
        """The job's warning callback: a ``warning`` event with its ``kind`` and ``message`` (the job logs it)."""
        self.emit(msgspec.convert(warning, WarningGiven, from_attributes=True))

    def oom(self, event: RanOutOfMemory) -> None:
        """The job's OOM callback: an ``oom`` event and a log line."""
        self.emit(event)
        then = "giving up" if event.new_micro_batch == 0 else f"retrying with micro-batch {event.new_micro_batch}"
        if event.phase == "optimizer":
            then = "rolling back to the last checkpoint"
        message = f"out of memory at step {event.step} ({event.phase}, micro-batch {event.old_micro_batch}): {then}"
        log(message, always=True)

    def _broken(self) -> None:
        stream, self.stream = self.stream, None
        log("the daemon's event pipe closed: stopping at the next step with a checkpoint")
        if stream is not None:
            with contextlib.suppress(OSError):  # what it still buffered has nowhere to go
                stream.close()
        if self.on_broken is not None:
            self.on_broken()


class MemoryReporter:
    """Sends ``memory`` events: the CUDA allocator's figures for ``device`` and the process's RSS."""

    def __init__(self, device: torch.device, events: Events) -> None:
        self.device, self.events = device, events
        self.process = psutil.Process()
        self.last = float("-inf")

    def sample(self) -> MemorySampled:
        """Allocated, reserved and peak bytes, OOMs seen (zeros off CUDA), and the resident set size."""
        import torch

        figures = {"allocated": 0, "reserved": 0, "peak": 0, "oom_count": 0}
        if self.device.type == "cuda":
            figures = {
                "allocated": torch.cuda.memory_allocated(self.device),
                "reserved": torch.cuda.memory_reserved(self.device),
                "peak": torch.cuda.max_memory_allocated(self.device),
                "oom_count": int(torch.cuda.memory_stats(self.device).get("num_ooms", 0)),
            }
        return MemorySampled(**figures, rss=self.process.memory_info().rss)

    def report(self, force: bool = False) -> None:
        """Send a ``memory`` event unless one went out less than :data:`MEMORY_EVERY_S` ago (``force``: send)."""
        now = time.monotonic()
        if force or now - self.last >= MEMORY_EVERY_S:
            self.last = now
            self.events.emit(self.sample())


class ProgressReporter:
    """The job's progress callback: a ``progress`` event, a ``memory`` event, and now and then a log line."""

    def __init__(self, events: Events, memory: MemoryReporter) -> None:
        self.events, self.memory = events, memory
        self.last_line = self.last_event = float("-inf")

    def __call__(self, p: ProgressReported) -> None:
        """Report ``p``."""
        from stratcast.daemon.progress import describe

        now = time.monotonic()
        if p.val_loss is not None or p.step == p.max_steps or now - self.last_event >= PROGRESS_EVENT_EVERY_S:
            self.last_event = now
            self.events.emit(p)
            self.memory.report()
        if p.val_loss is not None or p.step == p.max_steps or now - self.last_line >= PROGRESS_LINE_EVERY_S:
            self.last_line = now
            log(describe(p))


class StopFlag:
    """SIGTERM/SIGINT ask for a stop at the next step boundary; a second signal ends the worker at once."""

    def __init__(self) -> None:
        self.requested = False
        for sig in (signal.SIGTERM, signal.SIGINT):
            signal.signal(sig, self.handle)

    def handle(self, signum: int, frame: FrameType | None) -> None:
        """Record the request (no work in a signal handler); exit now on the second one."""
        if self.requested:
            os.write(2, f"second {signal.Signals(signum).name}: exiting now, without a checkpoint\n".encode())
            os._exit(WorkerExit.FORCED)
        self.requested = True

    def request(self) -> None:
        """Ask for a stop from within the worker (the daemon went away)."""
        self.requested = True

    def __call__(self) -> bool:
        """Whether a stop was requested."""
        return self.requested


def exit_now(code: int) -> NoReturn:
    """Flush and leave without the interpreter's teardown.

    Everything a worker keeps is on disk by now (checkpoints and outputs are fsynced, events flushed line by
    line); tearing down an interpreter that has used torch took 0.66 s, time in which a stopped run would still
    hold its GPU.
    """
    for stream in (sys.stdout, sys.stderr):
        with contextlib.suppress(OSError, ValueError):
            stream.flush()
    os._exit(code)


if __name__ == "__main__":
    exit_now(main())
