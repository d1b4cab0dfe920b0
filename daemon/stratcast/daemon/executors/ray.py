"""The ``ray`` executor: each run is a task on an existing Ray cluster (the optional extra ``stratcast[ray]``).

The daemon stays the scheduler: admission plans runs against the cluster's slots (its GPUs, or its CPUs where it
has none) and this executor submits each admitted run as one Ray task, ``num_gpus=1`` on a GPU cluster (Ray sets
the task's ``CUDA_VISIBLE_DEVICES``), ``num_cpus=1`` otherwise. The task (:func:`run_task`, on whichever node Ray
picks) starts the same worker command as the local executor with the run's folder, which lives on storage every
node shares (``stratcastd serve --shared-dir``), so checkpoints, log and outputs need no copying:

- events: the worker's stdout goes to ``RUN_DIR/worker-events.jsonl``; the executor tails that file and hands each
  line to the daemon through the same parsing as the local executor's pipe, so history, progress and the study
  pruner work unchanged;
- stop: the executor writes ``RUN_DIR/stop-requested``; the task sees it within :data:`POLL_S` and sends the worker
  SIGTERM (it checkpoints and exits, as on one machine);
- kill: ``ray.cancel(force=True)`` ends the task's Ray worker process, and the worker with it (it is started with
  Linux's parent-death signal);
- ending: the task returns the worker's exit code, which :func:`~stratcast.daemon.executors.base.classify` maps to
  the run's state, as for the local executor;
- a task whose Ray worker process or node dies is resubmitted by Ray (``max_retries``); the new attempt finds the
  run's checkpoint and resumes from it (:func:`~stratcast.daemon.executors.local.launch` decides ``--resume``).

The daemon's connection to the cluster lives in a driver process of its own
(:mod:`stratcast.daemon.executors.raydriver`), because Ray ends a driver that cannot go on (a head restarted as a
new cluster): the executor starts it, writes it the tasks to submit and cancel, and reads back the cluster's
resources and each task's end, on a thread of its own. When the driver ends, the executor says why, starts another
and, once it answers, submits again the runs whose tasks ended with it (up to ``retries`` times; they resume from
their checkpoints). Until the cluster answers (and whenever it has not answered for :data:`STALE_S` seconds)
:meth:`RayExecutor.health` says why, and queued runs wait.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import signal
import subprocess
import sys
import threading
import time
from dataclasses import dataclass
from pathlib import Path

import msgspec

from stratcast.daemon.executors.base import HEALTHY, Ending, OnEvent, OnExit, classify, kill_requested, wait_for_workers
from stratcast.daemon.executors.local import relay
from stratcast.daemon.executors.raydriver import (
    EXIT_UNREACHABLE,
    CancelTask,
    Command,
    SubmitTask,
    TaskEnded,
    decode_report,
    encode,
)
from stratcast.daemon.executors.remote import (
    EVENTS_FILE,
    POLL_S,
    STOP_FILE,
    RemoteWorker,
    Tail,
    prepare_child,
    request_stop,
    start_worker,
    wait_worker,
)
from stratcast.daemon.worker import EXIT_STOPPED

log = logging.getLogger("stratcastd")

LOCAL = "local"
"""``--ray-address local``: start a Ray instance on this machine for the daemon's lifetime (tests, one box)."""
DRIVER = (sys.executable, "-m", "stratcast.daemon.executors.raydriver")
"""The driver's command, before its options."""
DRIVER_RESTART_S = 2.0
"""How long after a driver ended the next one starts."""
UNREACHABLE_RETRY_S = 5.0
"""How long after a driver found the cluster unreachable the next one tries."""
DRIVER_CLOSE_S = 60.0
"""How long closing waits for the driver to let go of the cluster before it is killed."""
STALE_S = 15.0
"""A cluster that has not answered for this long is reported unreachable: runs wait for it."""


@dataclass(frozen=True)
class RayOptions:
    """Which Ray cluster the executor uses, and how."""

    address: str = "auto"
    """``auto`` (the cluster ``ray start`` runs on this machine), ``HEAD:6379``, ``ray://HEAD:10001``, or
    :data:`LOCAL` to start a Ray instance inside the daemon."""
    cpus: int | None = None
    """CPUs of a :data:`LOCAL` instance (None: all of this machine's)."""
    temp_dir: Path | None = None
    """Ray's session folder of a :data:`LOCAL` instance (None: Ray's, ``/tmp/ray``); Ray's unix sockets live under
    it, so its path must stay short (about 40 bytes)."""
    retries: int = 3
    """How often Ray resubmits a task whose Ray worker process or node died, and the executor a run whose task
    ended with its driver."""


@dataclass(kw_only=True)
class RayWorker(RemoteWorker):
    """A run's Ray task (its worker runs wherever Ray put it), and what was asked of it."""

    on_gpu: bool
    memory_gib: float | None
    ended: asyncio.Future[TaskEnded]
    """Resolved with the driver's report when the task has ended."""
    in_flight: bool = False
    """Submitted to the current driver (false between a driver's end and the next one's resubmission)."""
    resubmits: int = 0
    """Times it was submitted again because the driver ended."""


class RayExecutor:
    """Runs each run as a Ray task on a cluster, through a driver process, and reports its events and endings.

    Args:
        on_event: Called with each event a worker reports.
        on_exit: Called once when a run's task has ended.
        home: The workers' home (their memory plan cache): a folder every node reaches; None: their environment's.
        options: The cluster and how to reach it.
    """

    name = "ray"

    def __init__(self, on_event: OnEvent, on_exit: OnExit, home: Path | None, options: RayOptions) -> None:
        self.on_event, self.on_exit = on_event, on_exit
        self.home, self.options = home, options
        self.workers: dict[int, RayWorker] = {}
        self._problem = self._connecting()
        self._answered = 0.0
        self._resources: dict[str, float] = {}
        self._driver: subprocess.Popen[bytes] | None = None
        self._send_lock = threading.Lock()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._closed = threading.Event()
        self._thread = threading.Thread(target=self._keep_driver, name="ray-driver", daemon=True)
        self._thread.start()

    # -- the driver and the cluster ----------------------------------------------------------------------------

    def _connecting(self) -> str:
        a = self.options.address
        return f"connecting to the Ray cluster at {a}: no answer yet (is it up? `ray status --address {a}` tells)"

    def _keep_driver(self) -> None:
        """Run the driver process and read its reports; start another whenever it ends, until closed."""
        while not self._closed.is_set():
            try:
                driver = self._start_driver()
            except OSError as exc:
                self._problem = f"cannot start the Ray driver process: {exc}"
                log.error("%s", self._problem)
                self._closed.wait(DRIVER_RESTART_S)
                continue
            assert driver.stdout is not None
            for line in driver.stdout:
                self._report(line)
            code = driver.wait()
            if self._closed.is_set():
                break
            if code == EXIT_UNREACHABLE:  # it said why; a fresh driver tries again
                self._closed.wait(UNREACHABLE_RETRY_S)
                continue
            self._driver_ended(code)
            self._closed.wait(DRIVER_RESTART_S)
        self._problem = "the executor is closed"

    def _start_driver(self) -> subprocess.Popen[bytes]:
        o = self.options
        cmd = [*DRIVER, "--address", o.address]
        cmd += [] if o.cpus is None else ["--cpus", str(o.cpus)]
        cmd += [] if o.temp_dir is None else ["--temp-dir", str(o.temp_dir)]
        self._resources, self._answered = {}, 0.0
        driver = subprocess.Popen(
            cmd, stdin=subprocess.PIPE, stdout=subprocess.PIPE, preexec_fn=prepare_child(())
        )  # its stderr, Ray's own messages, goes to the daemon's log
        self._driver = driver
        log.info("the Ray driver process %d connects to %s", driver.pid, o.address)
        return driver

    def _report(self, line: bytes) -> None:
        try:
            report = decode_report(line)
        except msgspec.DecodeError as exc:
            log.warning("the Ray driver wrote a line that is not a report (%s): %r", exc, line[:200])
            return
        if isinstance(report, TaskEnded):
            w = self.workers.get(report.run)
            if w is not None:
                self._resolve(w, report)
        elif report.problem:
            if report.problem != self._problem:  # once, not every health read
                log.warning("%s", report.problem)
            self._problem = report.problem
        else:
            if self._problem:
                log.info("connected to the Ray cluster at %s: %s", self.options.address, report.resources)
            self._resources, self._answered, self._problem = report.resources, time.monotonic(), ""
            self._resubmit()

    def _driver_ended(self, code: int) -> None:
        """The driver ended on its own (Ray ended it): runs in flight are submitted again once another answers."""
        how = f"exit {code}" if code >= 0 else f"signal {signal.Signals(-code).name}"
        self._problem = (
            f"the Ray driver process ended ({how}; Ray's reason is in the daemon's log): starting another; "
            "runs wait for it"
        )
        log.warning("%s", self._problem)
        for w in list(self.workers.values()):  # a copy: the event loop's thread may add or remove runs meanwhile
            w.in_flight = False  # its task ended with the driver's job

    def _resubmit(self) -> None:
        """Submit again the runs whose tasks ended with an earlier driver (they resume from their checkpoints)."""
        for w in list(self.workers.values()):
            if w.in_flight or w.ended.done():
                continue
            if w.resubmits >= self.options.retries:
                self._resolve(w, TaskEnded(run=w.run, lost="DriverLost"))
                continue
            w.resubmits += 1
            log.warning("run %d: submitted again after its Ray driver ended (%d of %d)", w.run, w.resubmits,
                        self.options.retries)  # fmt: skip
            with contextlib.suppress(OSError):
                self._submit(w)

    def _send(self, command: Command) -> None:
        """Write a command to the driver.

        Raises:
            OSError: when the driver is not running.
        """
        driver = self._driver
        if driver is None or driver.stdin is None or driver.poll() is not None:
            raise OSError("the Ray driver process is not running")
        with self._send_lock:
            try:
                driver.stdin.write(encode(command))
                driver.stdin.flush()
            except (OSError, ValueError) as exc:  # a driver that just ended
                raise OSError(f"the Ray driver process is not running ({exc})") from exc

    def _submit(self, w: RayWorker) -> None:
        home = None if self.home is None else str(self.home)
        self._send(SubmitTask(
            run=w.run, run_dir=str(w.run_dir), on_gpu=w.on_gpu, memory_gib=w.memory_gib, home=home,
            retries=self.options.retries,
        ))  # fmt: skip
        w.in_flight = True

    def _resolve(self, w: RayWorker, report: TaskEnded) -> None:
        """End ``w``'s wait with ``report`` (from any thread; the first report counts)."""

        def resolve() -> None:
            if not w.ended.done():
                w.ended.set_result(report)

        if self._loop is not None:
            self._loop.call_soon_threadsafe(resolve)

    def health(self) -> str:
        """:data:`HEALTHY` while the cluster answers; else why not (connecting, unreachable, silent, no driver)."""
        if self._problem:
            return self._problem
        if time.monotonic() - self._answered > STALE_S:
            return f"the Ray cluster at {self.options.address} stopped answering (for over {STALE_S:g} s)"
        return HEALTHY

    async def close(self) -> None:
        """Let go of the cluster (a :data:`LOCAL` instance stops with the driver) once the workers have ended.

        A driver still trying to connect is ended at once (Ray retries an unreachable address for minutes); a
        connected one gets :data:`DRIVER_CLOSE_S` to shut Ray down.
        """
        self._closed.set()
        driver = self._driver
        if driver is not None and driver.stdin is not None:
            with contextlib.suppress(OSError, ValueError), self._send_lock:
                driver.stdin.close()  # the driver shuts Ray down and exits
        if driver is not None and not self._answered:
            driver.kill()
        await asyncio.to_thread(self._thread.join, DRIVER_CLOSE_S)
        if driver is not None and driver.poll() is None:
            driver.kill()
            await asyncio.to_thread(driver.wait)

    def slots(self) -> int:
        """The cluster's GPUs, or its CPUs where it has none (0 until it answered)."""
        gpus = int(self._resources.get("GPU", 0))
        return gpus or int(self._resources.get("CPU", 0))

    # -- runs --------------------------------------------------------------------------------------------------

    async def start(self, run: int, run_dir: Path, device: str, memory_gib: float | None, ranks: int = 1) -> RayWorker:
        """Submit ``run``'s task; it resumes when ``run_dir`` has checkpoints.

        Raises:
            OSError: when the cluster cannot take tasks now, or for ``ranks`` above 1 (one GPU per task).
        """
        if ranks > 1:
            raise OSError(f"the Ray executor runs each run on one GPU, not {ranks}: use the local executor")
        if self.health() != HEALTHY:
            raise OSError(f"the Ray cluster cannot take runs now: {self.health()}")
        self._loop = asyncio.get_running_loop()
        (run_dir / STOP_FILE).unlink(missing_ok=True)
        (run_dir / EVENTS_FILE).unlink(missing_ok=True)
        on_gpu = self._resources.get("GPU", 0) > 0
        w = RayWorker(
            run=run, device=device, run_dir=run_dir, on_gpu=on_gpu, memory_gib=memory_gib,
            ended=self._loop.create_future(),
        )  # fmt: skip
        try:
            self._submit(w)
        except OSError as exc:  # the driver ended since it last answered: the next one submits it
            log.warning("run %d: not submitted yet (%s); the next Ray driver submits it", run, exc)
        self.workers[run] = w
        w.tasks.append(asyncio.create_task(self._watch(w)))
        return w

    async def _watch(self, w: RayWorker) -> None:
        """Relay the worker's events until its task ends, then report how it ended."""
        events = Tail(w.run_dir / EVENTS_FILE)
        while not w.ended.done():
            await asyncio.wait([w.ended], timeout=POLL_S)
            self._relay(w.run, events)
        ending = self._ending(w, w.ended.result())
        self._relay(w.run, events)  # what the worker wrote last, before it ended
        self.workers.pop(w.run, None)
        await self.on_exit(w.run, ending)

    def _relay(self, run: int, events: Tail) -> None:
        for line in events.lines():
            relay(self.on_event, run, line)

    def _ending(self, w: RayWorker, report: TaskEnded) -> Ending:
        """How the task ended: the worker's exit code through ``classify``, or why Ray lost it."""
        if report.code is not None:
            return classify(report.code, w)
        if report.error is not None:  # the task itself raised: the worker could not start, say why
            return Ending("failed", f"its Ray task failed: {report.error}; see `stratcast logs {w.run}`", "task error")
        if w.kill_requested:  # cancelled on a kill
            return classify(-signal.SIGKILL, w)
        lost = report.lost or "lost"
        return Ending(
            "failed",
            f"its Ray task was lost ({lost}) after {self.options.retries} retries; "
            f"`stratcast resume {w.run}` continues from its checkpoint",
            lost,
        )

    def stop(self, run: int, *, shutdown: bool = False) -> bool:
        """Ask a run's task to stop its worker (it checkpoints and exits); false when it is not running.

        A run waiting for a new driver has no worker: it stops at its last checkpoint now.
        """
        w = self.workers.get(run)
        asked = request_stop(w, shutdown, "task")
        if w is not None and not w.in_flight:
            self._resolve(w, TaskEnded(run=run, code=EXIT_STOPPED))
        return asked

    def kill(self, run: int, *, shutdown: bool = False) -> bool:
        """End a run's task and its worker now; false when it is not running.

        A kill on request (``shutdown`` false) ends the run for good, even while the daemon shuts down.
        """
        if (w := kill_requested(self.workers, run, shutdown)) is None:
            return False
        try:
            if not w.in_flight:
                raise OSError("no task in flight")
            self._send(CancelTask(run=run))
        except OSError:  # no driver, so no task: the run ends here
            self._resolve(w, TaskEnded(run=run, lost="cancelled"))
        return True

    async def wait_all(self, timeout: float) -> None:
        """Wait for every task to end (after stops), killing those still running after ``timeout`` seconds."""
        await wait_for_workers(self.workers, self.kill, timeout, grace=30)


def run_task(run_dir: str, on_gpu: bool, memory_gib: float | None, home: str | None) -> int:
    """Inside a Ray task: run the worker of ``run_dir`` until it exits and return its exit code.

    Negative: the signal that ended it (:func:`~stratcast.daemon.executors.remote.wait_worker`).
    """
    folder = Path(run_dir)
    gpu = os.environ.get("CUDA_VISIBLE_DEVICES", "") if on_gpu else ""  # Ray's pick for this task
    return wait_worker(start_worker(folder, gpu, memory_gib, None if home is None else Path(home)), folder)
