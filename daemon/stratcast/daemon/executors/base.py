"""Executors: what runs the daemon's runs, behind one interface, so the server never asks where a worker lives.

The daemon stays the scheduler and the single source of truth: admission (:mod:`stratcast.daemon.queue`) picks
each run's placement, and the executor chosen with ``stratcastd serve --executor`` starts the run's worker there,
relays what the worker says and tells how it ended. ``local`` (worker processes on this machine,
:mod:`stratcast.daemon.executors.local`) is the default; ``ray`` (each run a task on a Ray cluster,
:mod:`stratcast.daemon.executors.ray`) comes with the optional extra ``stratcast[ray]``, and ``slurm`` (each run a
Slurm job through submitit, :mod:`stratcast.daemon.executors.slurm`) with ``stratcast[slurm]``; both implement the
same :class:`Executor`.

The contract every executor keeps:

- :meth:`Executor.start` starts a run's worker on a placement (``cuda:N``, or ``cpu``) with its run folder; the
  worker resumes from the folder's last checkpoint when there is one. A start that fails raises ``OSError`` (the
  daemon fails that run, not itself).
- The worker's events reach ``on_event(run, event)`` typed and in order; one bad event never loses the run.
- Exactly one ``on_exit(run, ending)`` per start, after the worker's last event, with the run's final state from
  :func:`classify`; by then the run has left :attr:`Executor.workers`.
- :meth:`Executor.stop` asks the worker to checkpoint and exit (``stopped``, or ``interrupted`` at a shutdown, which
  the next start resumes); :meth:`Executor.kill` ends it now.
- :meth:`Executor.health` says ``ok``, or why the backend cannot be reached: then runs wait in the queue (they are
  not failed) until it answers again.
- :meth:`Executor.slots` is None where the daemon places runs on this machine's GPUs and CPU; a cluster executor
  gives its number of slots instead, and admission plans runs against one device of that many slots, named after
  the executor (the cluster places each task itself).
"""

from __future__ import annotations

import asyncio
import signal
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from importlib.util import find_spec
from pathlib import Path
from typing import TYPE_CHECKING, Protocol, TypeVar

from stratcast.daemon.worker import EXIT_BAD_INPUT, EXIT_OK, EXIT_OOM, EXIT_STOPPED
from stratcast.shared.events import WorkerEvent

if TYPE_CHECKING:
    from stratcast.daemon.executors.ray import RayOptions
    from stratcast.daemon.executors.slurm import SlurmOptions

HEALTHY = "ok"
"""What :meth:`Executor.health` says when runs can be started."""

EXECUTORS = ("local", "ray", "slurm")
"""The names ``stratcastd serve --executor`` accepts."""
EXTRAS = {"ray": "ray", "slurm": "submitit"}
"""The module each executor of an optional extra (``stratcast[NAME]``) needs."""

SHUTDOWN_REASON = "the daemon shut down; it resumes from its checkpoint at the next start"
"""Reason of a run that a daemon shutdown stopped: the next daemon start queues such runs again."""


@dataclass(frozen=True)
class Ending:
    """How a worker ended, as a run state and the words for it."""

    state: str
    reason: str
    exit: str


OnEvent = Callable[[int, WorkerEvent], None]
"""Called with a run's id and each event its worker reports."""
OnExit = Callable[[int, Ending], Awaitable[None]]
"""Called once with a run's id and how its worker ended."""


class Worker(Protocol):
    """A started run's worker, wherever it runs, and what was asked of it."""

    @property
    def run(self) -> int:
        """The run's id."""

    @property
    def device(self) -> str:
        """Its placement: ``cuda:N`` or ``cpu``."""

    @property
    def pid(self) -> int | None:
        """Its process id on this machine (telemetry, GPU process lists); None where it runs elsewhere."""

    @property
    def kill_requested(self) -> bool:
        """A kill was asked."""

    @property
    def shutdown(self) -> bool:
        """It was stopped or killed because the daemon shuts down."""


@dataclass(kw_only=True)
class Started:
    """What every executor keeps of a started run's worker (a :class:`Worker`): its run, placement, what was asked."""

    run: int
    device: str
    stop_requested: bool = False
    kill_requested: bool = False
    shutdown: bool = False
    tasks: list[asyncio.Task[None]] = field(default_factory=list)
    """The asyncio tasks that watch it (they end when it ends)."""

    @property
    def pid(self) -> int | None:
        """None: the worker runs elsewhere (a cluster task or job)."""
        return None


W = TypeVar("W", bound=Started)


def kill_requested(workers: Mapping[int, W], run: int, shutdown: bool) -> W | None:
    """Record a kill of ``run``'s worker (``shutdown``: by the daemon's shutdown); None when it is not running."""
    w = workers.get(run)
    if w is not None:
        w.kill_requested, w.shutdown = True, shutdown
    return w


async def wait_for_workers(
    workers: Mapping[int, Started], kill: Callable[..., bool], timeout: float, grace: float
) -> None:
    """An executor's :meth:`Executor.wait_all`: wait for every worker's tasks to end (after stops).

    After ``timeout`` seconds ``kill`` the runs still there (as for a shutdown) and wait ``grace`` seconds more.
    """
    tasks = [t for w in workers.values() for t in w.tasks]
    if not tasks:
        return
    _done, pending = await asyncio.wait(tasks, timeout=timeout)
    if pending:
        for run in list(workers):
            kill(run, shutdown=True)
        await asyncio.wait(pending, timeout=grace)


class Executor(Protocol):
    """What the daemon needs from whatever runs its runs: start, stop, kill, what runs, and its health."""

    @property
    def name(self) -> str:
        """The executor's ``--executor`` name."""

    @property
    def workers(self) -> Mapping[int, Worker]:
        """The started workers that have not ended yet, by run id."""

    async def start(self, run: int, run_dir: Path, device: str, memory_gib: float | None, ranks: int = 1) -> Worker:
        """Start ``run``'s worker on ``device`` (``cuda:N`` or ``cpu``); it resumes when ``run_dir`` has checkpoints.

        ``ranks`` above 1: a data-parallel run over that many processes, on the GPUs ``device`` names
        (``cuda:0,cuda:2``) or on the CPU; only the local executor starts such runs (the others refuse them).

        Raises:
            OSError: when the worker cannot be started.
        """

    def stop(self, run: int, *, shutdown: bool = False) -> bool:
        """Ask ``run``'s worker to checkpoint and exit; False when it has none."""

    def kill(self, run: int, *, shutdown: bool = False) -> bool:
        """End ``run``'s worker now; False when it has none. A kill on request ends the run for good."""

    async def wait_all(self, timeout: float) -> None:
        """Wait for every worker to end (after stops), killing those still there after ``timeout`` seconds."""

    def health(self) -> str:
        """:data:`HEALTHY`, or why runs cannot be started now (the backend is unreachable, and why)."""

    def slots(self) -> int | None:
        """How many runs the executor's cluster runs at once; None: the daemon places runs on this machine."""

    async def close(self) -> None:
        """Let go of the backend (after :meth:`wait_all`), before the daemon exits."""


class UnknownExecutor(ValueError):
    """``--executor`` names no executor this install has."""

    def __init__(self, name: str) -> None:
        super().__init__(f"unknown executor {name!r} (choose from: {', '.join(EXECUTORS)})")


def missing_extra(name: str) -> str | None:
    """Why this install cannot run the executor ``name`` (its optional extra is not installed), or None."""
    module = EXTRAS.get(name)
    if module is None or find_spec(module) is not None:
        return None
    return f"--executor {name} needs the extra: pip install 'stratcast[{name}]'"


def open_executor(
    name: str,
    on_event: OnEvent,
    on_exit: OnExit,
    home: Path | None = None,
    *,
    ray: RayOptions | None = None,
    slurm: SlurmOptions | None = None,
    cpu_slots: int = 1,
) -> Executor:
    """The executor called ``name``, relaying events and endings to the callbacks; ``home`` is the workers' home.

    ``cpu_slots``: the CPU runs the daemon runs at once; the local executor gives each CPU worker its share of the
    cores (:func:`~stratcast.daemon.executors.local.cpu_threads`).

    ``ray`` says which cluster the ``ray`` executor uses (default: :class:`RayOptions`'s), ``slurm`` which cluster
    and job sizes the ``slurm`` executor uses (default: :class:`SlurmOptions`'s; its files go to ``home``, else the
    current folder).

    Raises:
        UnknownExecutor: for a name not in :data:`EXECUTORS`.
    """
    if name == "local":
        from stratcast.daemon.executors.local import LocalExecutor

        return LocalExecutor(on_event, on_exit, home, cpu_slots=cpu_slots)
    if name == "ray":
        from stratcast.daemon.executors.ray import RayExecutor, RayOptions

        return RayExecutor(on_event, on_exit, home, ray or RayOptions())
    if name == "slurm":
        from stratcast.daemon.executors.slurm import SlurmExecutor, SlurmOptions

        return SlurmExecutor(on_event, on_exit, home or Path.cwd(), slurm or SlurmOptions())
    raise UnknownExecutor(name)


def classify(code: int, w: Worker) -> Ending:
    """Map a worker's exit code (negative: the signal that ended it) and what was asked of it to the run's state."""
    if code < 0:
        name = signal.Signals(-code).name if -code in signal.Signals._value2member_map_ else f"signal {-code}"
        if w.kill_requested and w.shutdown:  # it did not checkpoint in time: resume it, as after a crash
            return Ending("interrupted", SHUTDOWN_REASON, name)
        if w.kill_requested:
            return Ending("killed", "killed on request", name)
        return Ending("failed", f"the worker died of {name}; see `stratcast logs {w.run}`", name)
    exit_text = f"exit {code}"
    if code == EXIT_OK:
        return Ending("succeeded", "", exit_text)
    if code == EXIT_STOPPED:
        if w.shutdown:
            return Ending("interrupted", SHUTDOWN_REASON, exit_text)
        return Ending("stopped", "stopped on request; `stratcast resume` continues from the checkpoint", exit_text)
    if code == EXIT_OOM:
        return Ending("oom-failed", f"out of memory; see `stratcast logs {w.run}`", exit_text)
    if code == EXIT_BAD_INPUT:
        return Ending("failed", f"bad input; see `stratcast logs {w.run}`", exit_text)
    return Ending("failed", f"the worker failed ({exit_text}); see `stratcast logs {w.run}`", exit_text)
