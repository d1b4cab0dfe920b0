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

Connecting to the cluster and watching it happen on one thread that lives as long as the daemon: Ray ties the
processes of a ``local`` instance to the thread that started them, and a cluster that does not answer must not
block the event loop. Until the cluster answers (and whenever it has not answered for :data:`STALE_S` seconds)
:meth:`RayExecutor.health` says why, and queued runs wait.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import signal
import threading
import time
from dataclasses import dataclass
from importlib import import_module
from pathlib import Path
from typing import Any

from stratcast.daemon.executors.base import HEALTHY, Ending, OnEvent, OnExit, classify, kill_requested, wait_for_workers
from stratcast.daemon.executors.local import relay
from stratcast.daemon.executors.remote import (
    EVENTS_FILE,
    POLL_S,
    STOP_FILE,
    RemoteWorker,
    Tail,
    request_stop,
    start_worker,
    wait_worker,
)

log = logging.getLogger("stratcastd")

LOCAL = "local"
"""``--ray-address local``: start a Ray instance on this machine for the daemon's lifetime (tests, one box)."""
HEALTH_S = 2.0
"""How often the cluster's resources are read."""
STALE_S = 15.0
"""A cluster that has not answered for this long is reported unreachable: runs wait for it."""
RECONNECT_S = 7 * 24 * 3600
"""How long the daemon's Ray driver waits for a lost cluster head before giving up (Ray's own default, 60 s, ends
the driver's process, so the daemon, when the head is away a minute)."""


def driver_environment(environ: dict[str, str] | os._Environ[str]) -> None:
    """The Ray settings the daemon's driver needs, unless the daemon's environment sets them itself.

    Ray's handler of fatal signals also catches SIGTERM (the daemon's graceful shutdown then ends in an abort now
    and then): it is disabled. A head that does not answer is waited for :data:`RECONNECT_S` instead of 60 s, so the
    daemon outlives it: health says the cluster stopped answering and runs wait. A head restarted as a new cluster
    (without GCS fault tolerance) still ends the driver: Ray cannot join another cluster from a running driver.
    """
    environ.setdefault("RAY_DISABLE_FAILURE_SIGNAL_HANDLER", "1")
    environ.setdefault("RAY_gcs_rpc_server_reconnect_timeout_s", str(RECONNECT_S))


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
    """How often Ray resubmits a task whose Ray worker process or node died."""


@dataclass(kw_only=True)
class RayWorker(RemoteWorker):
    """A run's Ray task (its worker runs wherever Ray put it), and what was asked of it."""

    ref: Any
    """The task's ``ray.ObjectRef``."""


class RayExecutor:
    """Runs each run as a Ray task on a cluster and reports its events and endings.

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
        self._remote: Any = None
        """The task function, once connected (``ray.remote(run_task)``)."""
        self._problem = (
            f"connecting to the Ray cluster at {options.address}: no answer yet "
            f"(is it up? `ray status --address {options.address}` tells)"
        )
        self._answered = 0.0
        self._resources: dict[str, float] = {}
        self._closed = threading.Event()
        self._thread = threading.Thread(target=self._keep_connected, name="ray-cluster", daemon=True)
        self._thread.start()

    # -- the cluster -------------------------------------------------------------------------------------------

    def _keep_connected(self) -> None:
        """Connect, then read the cluster's resources every :data:`HEALTH_S` seconds, until closed.

        Ray's processes of a :data:`LOCAL` instance die with the thread that started them: this one returns only
        when the daemon closes the executor, after shutting Ray down.
        """
        driver_environment(os.environ)
        ray: Any = import_module("ray")  # some of its functions lack annotations: mypy --strict refuses those

        while not self._closed.is_set():
            try:
                if not ray.is_initialized():
                    self._connect(ray)
                resources = ray.cluster_resources()
            except Exception as exc:  # whatever Ray raises, the reason goes to status and runs wait
                problem = f"cannot reach the Ray cluster at {self.options.address}: {exc}"
                if problem != self._problem:  # once, not every HEALTH_S
                    log.warning("%s", problem)
                self._problem = problem
            else:
                self._resources, self._answered, self._problem = dict(resources), time.monotonic(), ""
            self._closed.wait(HEALTH_S)
        self._problem = "the executor is closed"
        ray.shutdown()

    def _connect(self, ray: Any) -> None:
        o = self.options
        if o.address == LOCAL:
            temp = None if o.temp_dir is None else str(o.temp_dir)
            ray.init(address=LOCAL, num_cpus=o.cpus, _temp_dir=temp, include_dashboard=False, log_to_driver=False)
        else:
            ray.init(address=o.address, log_to_driver=False)
        self._remote = ray.remote(run_task)
        log.info("connected to the Ray cluster at %s: %s", o.address, ray.cluster_resources())

    def health(self) -> str:
        """:data:`HEALTHY` while the cluster answers; else why not (connecting, unreachable, silent)."""
        if self._problem:
            return self._problem
        if time.monotonic() - self._answered > STALE_S:
            return f"the Ray cluster at {self.options.address} stopped answering (for over {STALE_S:g} s)"
        return HEALTHY

    async def close(self) -> None:
        """Disconnect from the cluster (a :data:`LOCAL` instance stops) once the workers have ended.

        A connection still being tried is abandoned: Ray retries an unreachable address for minutes.
        """
        self._closed.set()
        if self._remote is not None:
            await asyncio.to_thread(self._thread.join, 60)

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
        if self._remote is None or self.health() != HEALTHY:
            raise OSError(f"the Ray cluster cannot take runs now: {self.health()}")
        on_gpu = self._resources.get("GPU", 0) > 0
        (run_dir / STOP_FILE).unlink(missing_ok=True)
        (run_dir / EVENTS_FILE).unlink(missing_ok=True)
        task = self._remote.options(
            num_cpus=1, num_gpus=1 if on_gpu else 0, max_retries=self.options.retries, name=f"stratcast-run-{run}"
        )
        home = None if self.home is None else str(self.home)
        try:
            ref = task.remote(str(run_dir), on_gpu, memory_gib, home)
        except Exception as exc:  # a submit Ray refuses fails this run, not the daemon
            raise OSError(f"Ray refused the task: {exc}") from exc
        w = RayWorker(run=run, device=device, run_dir=run_dir, ref=ref)
        self.workers[run] = w
        w.tasks.append(asyncio.create_task(self._watch(w)))
        return w

    async def _watch(self, w: RayWorker) -> None:
        """Relay the worker's events until its task ends, then report how it ended."""
        events = Tail(w.run_dir / EVENTS_FILE)
        done = asyncio.wrap_future(w.ref.future())
        while not done.done():
            await asyncio.wait([done], timeout=POLL_S)
            self._relay(w.run, events)
        ending = self._ending(w, done)
        self._relay(w.run, events)  # what the worker wrote last, before it ended
        self.workers.pop(w.run, None)
        await self.on_exit(w.run, ending)

    def _relay(self, run: int, events: Tail) -> None:
        for line in events.lines():
            relay(self.on_event, run, line)

    def _ending(self, w: RayWorker, done: asyncio.Future[Any]) -> Ending:
        """How the task ended: the worker's exit code through ``classify``, or why Ray lost it."""
        from ray.exceptions import RayTaskError

        try:
            return classify(int(done.result()), w)
        except RayTaskError as exc:  # the task itself raised: the worker could not start, say why
            return Ending("failed", f"its Ray task failed: {exc.cause!r}; see `stratcast logs {w.run}`", "task error")
        except Exception as exc:  # cancelled on a kill, or lost with its node after every retry
            if w.kill_requested:
                return classify(-signal.SIGKILL, w)
            lost = type(exc).__name__
            return Ending(
                "failed",
                f"its Ray task was lost ({lost}) after {self.options.retries} retries; "
                f"`stratcast resume {w.run}` continues from its checkpoint",
                lost,
            )

    def stop(self, run: int, *, shutdown: bool = False) -> bool:
        """Ask a run's task to stop its worker (it checkpoints and exits); false when it is not running."""
        return request_stop(self.workers.get(run), shutdown, "task")

    def kill(self, run: int, *, shutdown: bool = False) -> bool:
        """End a run's task and its worker now; false when it is not running.

        A kill on request (``shutdown`` false) ends the run for good, even while the daemon shuts down.
        """
        import ray

        if (w := kill_requested(self.workers, run, shutdown)) is None:
            return False
        with contextlib.suppress(Exception):  # a task that already ended is fine
            ray.cancel(w.ref, force=True)
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
