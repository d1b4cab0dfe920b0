"""The ``local`` executor: worker processes on this machine, one per running run, started, watched and ended here.

Each worker is ``python -m stratcast.daemon.worker RUN_DIR`` with ``CUDA_VISIBLE_DEVICES`` set to its GPU (empty
on the CPU) and ``PYTORCH_CUDA_ALLOC_CONF=expandable_segments:True``. Its stderr goes to ``RUN_DIR/log.txt``; its
stdout carries its events (:mod:`stratcast.shared.events`), one JSON line each, decoded here and handed to the
daemon's callback typed; a line that is not a valid event is logged with its run and skipped. A worker that
crashes, runs out of memory, segfaults or is killed ends its run with that cause; the daemon goes on.
"""

from __future__ import annotations

import asyncio
import logging
import os
import signal
import sys
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import msgspec

from stratcast.daemon.executors.base import (
    HEALTHY,
    OnEvent,
    OnExit,
    Started,
    classify,
    kill_requested,
    wait_for_workers,
)
from stratcast.shared.events import WorkerEvent, decode_line
from stratcast.shared.paths import HOME_ENV
from stratcast.shared.runfiles import RunFolder

log = logging.getLogger("stratcastd")

MAX_LINE = 1 << 20
"""Longest stdout line read from a worker; a longer one is skipped (a worker bug, not a reason to crash)."""

WORKER = (sys.executable, "-m", "stratcast.daemon.worker")
"""The worker's command, before its run folder and options."""


@dataclass(kw_only=True)
class LocalWorker(Started):
    """A running worker process."""

    proc: asyncio.subprocess.Process

    @property
    def pid(self) -> int:
        """The worker's process id."""
        return self.proc.pid


def cpu_threads(cpu_slots: int, cores: int | None = None) -> int:
    """Threads for each CPU worker when ``cpu_slots`` of them may run at once: its share of the ``cores``.

    Each worker's torch otherwise takes every core: two workers on two cores then spin against each other in
    OpenMP's waits, measured at 650 windows/s against 45,000 for one worker alone (N-HiTS, EURUSD, 2 cores).
    """
    return max(1, (cores if cores is not None else os.cpu_count() or 1) // max(1, cpu_slots))


def worker_env(environ: Mapping[str, str], gpu: str, home: Path | None, threads: int | None = None) -> dict[str, str]:
    """A worker's environment: the daemon's without systemd's variables, on ``gpu`` ('' for none), in ``home``.

    The home makes a worker of a daemon started with ``--home`` use that home's memory plan cache, not the default
    state folder's. ``threads`` caps a CPU worker's threads (``OMP_NUM_THREADS``, unless the daemon's environment
    sets it).
    """
    env = {k: v for k, v in environ.items() if k not in ("NOTIFY_SOCKET", "WATCHDOG_USEC", "WATCHDOG_PID")}
    if threads is not None and not gpu:
        env.setdefault("OMP_NUM_THREADS", str(threads))
    # PCI order makes CUDA number the GPUs as NVML (and so the daemon) does
    env.update(
        CUDA_VISIBLE_DEVICES=gpu, CUDA_DEVICE_ORDER="PCI_BUS_ID", PYTORCH_CUDA_ALLOC_CONF="expandable_segments:True"
    )
    if home is not None:
        env[HOME_ENV] = str(home)
    return env


def launch(worker: Sequence[str], run_dir: Path, gpu: str, memory_gib: float | None, ranks: int = 1) -> list[str]:
    """The command of a worker on GPU ``gpu`` ('' for the CPU); it resumes when ``run_dir`` has checkpoints.

    A GPU worker sees its GPUs only (``CUDA_VISIBLE_DEVICES``, :func:`worker_env`), so it trains on ``cuda:0``; a
    data-parallel one (``ranks`` above 1, ``gpu`` ``0,2``) starts its other ranks itself, rank ``r`` on ``cuda:r``.
    """
    cmd = [*worker, str(run_dir), "--device", "cuda:0" if gpu else "cpu"]
    if memory_gib is not None and gpu:
        cmd += ["--memory-gib", str(memory_gib)]
    if ranks > 1:
        cmd += ["--world-size", str(ranks)]
    if RunFolder(run_dir).has_checkpoint():
        cmd.append("--resume")
    return cmd


class LocalExecutor:
    """Starts worker processes on this machine and reports their events and endings.

    Args:
        on_event: Called with each event a worker reports.
        on_exit: Called once when a worker has ended.
        home: The daemon's state folder, the workers' home (their memory plan cache); None: their environment's.
        worker: The worker's command before its run folder (tests start a stand-in).
        cpu_slots: The CPU runs the daemon runs at once: each CPU worker gets that share of the cores.
    """

    name = "local"

    def __init__(
        self,
        on_event: OnEvent,
        on_exit: OnExit,
        home: Path | None = None,
        worker: Sequence[str] = WORKER,
        *,
        cpu_slots: int = 1,
    ) -> None:
        self.on_event, self.on_exit = on_event, on_exit
        self.home = home
        self.threads = cpu_threads(cpu_slots)
        """Threads of each CPU worker (its share of the cores)."""
        self.worker = tuple(worker)
        self.workers: dict[int, LocalWorker] = {}

    def health(self) -> str:
        """Always :data:`HEALTHY`: this machine is there while the daemon is."""
        return HEALTHY

    def slots(self) -> None:
        """None: the daemon places runs on this machine's GPUs and CPU itself."""
        return None

    async def close(self) -> None:
        """Nothing to let go of: the workers have ended."""

    async def start(
        self, run: int, run_dir: Path, device: str, memory_gib: float | None, ranks: int = 1
    ) -> LocalWorker:
        """Start the worker of ``run`` on ``device`` (``cuda:N``, ``cuda:0,cuda:2`` or ``cpu``).

        It resumes when it has checkpoints; ``ranks`` is its data-parallel processes (see :func:`launch`).
        """
        gpu = ",".join(d.removeprefix("cuda:") for d in device.split(",")) if device.startswith("cuda") else ""
        cmd = launch(self.worker, run_dir, gpu, memory_gib, ranks)
        env = worker_env(os.environ, gpu, self.home, self.threads)
        with open(RunFolder(run_dir).log, "ab") as log:
            proc = await asyncio.create_subprocess_exec(
                *cmd,
                stdin=asyncio.subprocess.DEVNULL,
                stdout=asyncio.subprocess.PIPE,
                stderr=log,
                env=env,
                start_new_session=True,
                limit=MAX_LINE,
            )
        w = LocalWorker(run=run, proc=proc, device=device)
        self.workers[run] = w
        w.tasks.append(asyncio.create_task(self._watch(w)))
        return w

    async def _watch(self, w: LocalWorker) -> None:
        """Read the worker's events until it exits, then report how it ended."""
        assert w.proc.stdout is not None
        while True:
            try:
                line = await w.proc.stdout.readline()
            except ValueError:  # a line over MAX_LINE: skip what is buffered
                log.warning("run %d: skipped a worker event line over %d bytes", w.run, MAX_LINE)
                continue
            if not line:
                break
            relay(self.on_event, w.run, line)
        code = await w.proc.wait()
        self.workers.pop(w.run, None)
        await self.on_exit(w.run, classify(code, w))

    def stop(self, run: int, *, shutdown: bool = False) -> bool:
        """Ask a worker to checkpoint and exit (SIGTERM); false when it is not running."""
        w = self.workers.get(run)
        if w is None:
            return False
        w.stop_requested, w.shutdown = True, w.shutdown or shutdown
        _signal(w.proc, signal.SIGTERM)
        return True

    def kill(self, run: int, *, shutdown: bool = False) -> bool:
        """End a worker now (SIGKILL to its process group); false when it is not running.

        A kill on request (``shutdown`` false) ends the run for good, even while the daemon shuts down.
        """
        if (w := kill_requested(self.workers, run, shutdown)) is None:
            return False
        _signal(w.proc, signal.SIGKILL, group=True)
        return True

    async def wait_all(self, timeout: float) -> None:
        """Wait for every worker to exit (after stops), killing those still alive after ``timeout`` seconds."""
        await wait_for_workers(self.workers, self.kill, timeout, grace=10)


def _signal(proc: asyncio.subprocess.Process, sig: signal.Signals, *, group: bool = False) -> None:
    """Send ``sig`` to a worker (or its whole process group); a worker that already exited is fine."""
    try:
        if group:
            os.killpg(proc.pid, sig)
        else:
            proc.send_signal(sig)
    except (ProcessLookupError, PermissionError):
        pass


def relay(on_event: OnEvent, run: int, line: bytes) -> None:
    """Hand the event of one line of ``run``'s worker to ``on_event``; a bad line or a failing handler is logged."""
    event = _parse(run, line)
    if event is None:
        return
    try:
        on_event(run, event)
    except Exception:  # a bug in handling one event must not lose the run's ending: log it, read on
        log.exception("run %d: handling its worker's %s event failed", run, type(event).__name__)


def _parse(run: int, line: bytes) -> WorkerEvent | None:
    """The event of one line from ``run``'s worker, or None (logged) for a line that is not a valid event."""
    try:
        return decode_line(line)
    except msgspec.DecodeError as exc:  # a worker bug: the run goes on, so does the daemon
        log.warning("run %d: skipped a worker event line that is not a valid event (%s): %.200r", run, exc, line)
        return None
