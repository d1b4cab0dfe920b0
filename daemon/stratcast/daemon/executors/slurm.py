"""The ``slurm`` executor: each run is a Slurm job submitted through submitit (the optional extra ``stratcast[slurm]``).

The daemon stays the scheduler: admission plans runs against ``--slurm-max-jobs`` slots and this executor submits
each admitted run as one job (``sbatch`` through submitit, ``--slurm-gpus-per-job`` GPUs, Slurm sets the job's
``CUDA_VISIBLE_DEVICES``). The job (:class:`SlurmTask`, on whichever node Slurm picks) starts the same worker
command as the local executor in the run's folder, on storage every node shares (``--shared-dir``); events, stop
and resume go through that folder as for the ``ray`` executor (:mod:`stratcast.daemon.executors.remote`). submitit
keeps its own files (job scripts, pickles, its logs) in ``SHARED/submitit``.

- time limit: Slurm sends the job SIGUSR2 :func:`signal_delay_s` seconds before its limit (90 s, or half of a
  shorter limit); submitit calls :meth:`SlurmTask.checkpoint`, which stops the worker (SIGTERM: it checkpoints and
  exits) and has the job requeued; the requeued job resumes from the checkpoint. The worker ignores that signal,
  which Slurm sends to every process of the job: the checkpoint is the task's to ask for;
- kill: ``job.cancel()`` (``scancel``); the worker dies with its task (Linux's parent-death signal);
- ending: the job's result is the worker's exit code, which
  :func:`~stratcast.daemon.executors.base.classify` maps to the run's state;
- a job that ends without a result (its process or node killed, cancelled from outside) is submitted again, up to
  :attr:`SlurmOptions.retries` times, and resumes from its checkpoint; the run keeps its attempt count;
- jobs outlive a daemon that crashed: the run folder names its job (:data:`JOB_FILE`), and the next start of the
  run stops that job (its worker checkpoints; a job that does not end is cancelled) and waits for it to end before
  it submits a new one.

``--slurm-cluster local`` runs the same jobs with submitit's local executor (processes on this machine, the same
signal and requeue path): the tests, and a box without Slurm. With ``slurm``, a background check runs ``sinfo``
every :data:`HEALTH_S` seconds: until it answers, :meth:`SlurmExecutor.health` says why and runs wait.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import os
import signal
import subprocess
import threading
import time
from collections.abc import Callable
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
from stratcast.daemon.worker import EXIT_STOPPED

log = logging.getLogger("stratcastd")

CLUSTERS = ("slurm", "local")
"""``--slurm-cluster``: a Slurm cluster (``sbatch`` on this machine's PATH), or submitit's local executor."""
HEALTH_S = 10.0
"""How often ``sinfo`` is asked whether the cluster answers."""
SINFO_TIMEOUT_S = 20.0
"""An ``sinfo`` that has not answered in this long counts as an unreachable cluster."""
SIGNAL_S = 90
"""Seconds before the time limit at which a job is told to checkpoint (at most half of its limit)."""
CHECKPOINT_S = 75.0
"""How long the job waits for its worker to checkpoint and exit after the time-limit signal, before killing it."""
REQUEUES = 100
"""How often a job may reach its time limit and be requeued (submitit's ``max_num_timeout``)."""
JOB_FILE = "slurm-job"
"""In the run folder while its job runs: the job's id, so that a daemon restarted after a crash ends that job before
it submits the run again (two workers must never write one run folder)."""
LEFTOVER_S = 120.0
"""How long a start waits for the job a crashed daemon left running to end after cancelling it."""


@dataclass(frozen=True)
class SlurmOptions:
    """Which cluster runs the jobs, and what each job asks of it."""

    cluster: str = "slurm"
    """One of :data:`CLUSTERS`."""
    partition: str | None = None
    """The Slurm partition (None: the cluster's default)."""
    time_min: float = 240.0
    """Each job's time limit in minutes (rounded up to whole minutes for Slurm); it is requeued when reached."""
    gpus_per_job: int = 1
    """GPUs per job (0: the worker trains on the CPU)."""
    max_jobs: int = 4
    """How many jobs run at once: the slots admission plans against."""
    retries: int = 3
    """How often a job lost without a result (its process or node killed) is submitted again."""


def signal_delay_s(time_min: float) -> int:
    """Seconds before a ``time_min``-minute limit at which the job gets the checkpoint signal."""
    return int(min(SIGNAL_S, time_min * 60 / 2))


def sbatch_parameters(options: SlurmOptions) -> dict[str, Any]:
    """The ``sbatch`` options of every job (submitit's ``SlurmExecutor`` parameters), but its name."""
    parameters: dict[str, Any] = {
        "time": max(1, math.ceil(options.time_min)),
        "signal_delay_s": signal_delay_s(options.time_min),
        "ntasks_per_node": 1,
    }
    if options.gpus_per_job:  # a cluster without GPUs refuses any --gpus-per-node, 0 included
        parameters["gpus_per_node"] = options.gpus_per_job
    if options.partition is not None:
        parameters["partition"] = options.partition
    return parameters


_worker: subprocess.Popen[bytes] | None = None
"""Inside a job: the worker :class:`SlurmTask` started (a process handle does not pickle with the task)."""


@dataclass(frozen=True)
class SlurmTask:
    """Inside a job: run the worker of ``run_dir`` until it exits and return its exit code (negative: a signal).

    submitit pickles it into the job and calls it there; :meth:`checkpoint` is submitit's hook for the time-limit
    (or preemption) signal.
    """

    run_dir: str
    on_gpu: bool
    memory_gib: float | None
    home: str | None

    def __call__(self) -> int:
        """Start the worker (it resumes when the folder has a checkpoint) and wait for it."""
        global _worker
        folder = Path(self.run_dir)
        gpu = os.environ.get("CUDA_VISIBLE_DEVICES", "") if self.on_gpu else ""  # Slurm's pick for this job
        home = None if self.home is None else Path(self.home)
        _worker = start_worker(folder, gpu, self.memory_gib, home, ignore=(_checkpoint_signal(),))
        return wait_worker(_worker, folder)

    def checkpoint(self) -> Any:
        """The job is about to reach its time limit: stop the worker (it checkpoints) and requeue this task.

        Returns submitit's ``DelayedSubmission`` of the same task (the requeued job resumes from the checkpoint),
        or None when the worker had already ended otherwise than stopped: then the job ends with its result.
        """
        proc = _worker
        if proc is not None and proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(timeout=CHECKPOINT_S)
            except subprocess.TimeoutExpired:  # it checkpoints from time to time anyway
                proc.kill()
                proc.wait()
        if proc is not None and proc.returncode not in (EXIT_STOPPED, -signal.SIGTERM, -signal.SIGKILL):
            return None
        utils = import_module("submitit.core.utils")
        return utils.DelayedSubmission(self)


def _checkpoint_signal() -> signal.Signals:
    """The signal submitit asks Slurm to send before the time limit (``SUBMITIT_PREEMPT_SIGNAL``, SIGUSR2)."""
    environment = import_module("submitit.core.job_environment")
    sig: signal.Signals = environment.JobEnvironment._usr_sig()
    return sig


@dataclass(kw_only=True)
class SlurmWorker(RemoteWorker):
    """A run's job (its worker runs wherever Slurm put it), and what was asked of it."""

    job: Any
    """The submitit ``Job``; a new one when the daemon submitted the run again."""


class SlurmExecutor:
    """Runs each run as a Slurm job through submitit and reports its events and endings.

    Args:
        on_event: Called with each event a worker reports.
        on_exit: Called once when a run's job has ended.
        home: Where submitit's files go (``HOME/submitit``) and the workers' home: a folder every node reaches.
        options: The cluster and what each job asks of it.
    """

    name = "slurm"

    def __init__(self, on_event: OnEvent, on_exit: OnExit, home: Path, options: SlurmOptions) -> None:
        self.on_event, self.on_exit = on_event, on_exit
        self.home, self.options = home, options
        self.workers: dict[int, SlurmWorker] = {}
        self._submitter: Any = None
        """submitit's executor, once the cluster answered."""
        self._lock = threading.Lock()
        self._closed = threading.Event()
        self._problem = "" if options.cluster == "local" else "asking Slurm (`sinfo`) whether it answers"
        if options.cluster == "slurm":
            threading.Thread(target=self._check, name="slurm-health", daemon=True).start()

    # -- the cluster -------------------------------------------------------------------------------------------

    def _check(self) -> None:
        """Ask ``sinfo`` every :data:`HEALTH_S` seconds whether the cluster answers, until closed."""
        while not self._closed.is_set():
            problem = _sinfo_problem()
            if problem and problem != self._problem:  # once, not every HEALTH_S
                log.warning("%s", problem)
            self._problem = problem
            self._closed.wait(HEALTH_S)

    def health(self) -> str:
        """:data:`HEALTHY` while the cluster answers (always for ``local``); else why not."""
        return self._problem or HEALTHY

    def slots(self) -> int:
        """``--slurm-max-jobs``: how many jobs run at once."""
        return self.options.max_jobs

    async def close(self) -> None:
        """Stop the health check; the jobs have ended."""
        self._closed.set()

    def _executor(self) -> Any:
        """The submitit executor for the cluster, made once (it refuses to be made where Slurm is not installed)."""
        if self._submitter is None:
            submitit: Any = import_module("submitit")
            o = self.options
            folder = self.home / "submitit" / "%j"
            if o.cluster == "local":
                ex = submitit.LocalExecutor(folder=folder, max_num_timeout=REQUEUES)
                ex.update_parameters(
                    timeout_min=o.time_min, gpus_per_node=o.gpus_per_job, signal_delay_s=signal_delay_s(o.time_min)
                )
            else:
                ex = submitit.SlurmExecutor(folder=folder, max_num_timeout=REQUEUES)
                ex.update_parameters(**sbatch_parameters(o))
            self._submitter = ex
        return self._submitter

    def _submit(self, w: SlurmWorker, memory_gib: float | None) -> Any:
        """Submit ``w``'s run as a job (``sbatch``: it may take a while; called off the event loop)."""
        task = SlurmTask(str(w.run_dir), self.options.gpus_per_job > 0, memory_gib, str(self.home))
        with self._lock:
            ex = self._executor()
            if self.options.cluster == "slurm":
                ex.update_parameters(job_name=f"stratcast-run-{w.run}")
            job = ex.submit(task)
        (w.run_dir / JOB_FILE).write_text(str(job.job_id))
        return job

    def _end_leftover(self, run_dir: Path) -> None:
        """End the job a crashed daemon left running in ``run_dir``, and wait for it (off the event loop).

        The stop file asks its task to stop the worker (it checkpoints); a job still there after
        :data:`LEFTOVER_S` seconds is cancelled.
        """
        try:
            job_id = (run_dir / JOB_FILE).read_text().strip()
        except FileNotFoundError:  # the last job ended while the daemon watched it
            return
        local = self.options.cluster == "local"
        folder = self.home / "submitit"

        def alive() -> bool:
            return _local_job_alive(job_id, folder) if local else _slurm_job_alive(job_id)

        if alive():
            log.info("%s: stopping job %s, left running by the daemon before", run_dir, job_id)
            (run_dir / STOP_FILE).touch()
            if not _ended(alive, LEFTOVER_S):
                _cancel_job(job_id, local)
                if not _ended(alive, LEFTOVER_S):
                    log.warning("%s: job %s did not end within %g s of its cancel", run_dir, job_id, LEFTOVER_S)
        (run_dir / JOB_FILE).unlink(missing_ok=True)

    # -- runs --------------------------------------------------------------------------------------------------

    async def start(
        self, run: int, run_dir: Path, device: str, memory_gib: float | None, ranks: int = 1
    ) -> SlurmWorker:
        """Submit ``run``'s job; it resumes when ``run_dir`` has checkpoints.

        Raises:
            OSError: when the cluster cannot take jobs now, or refuses this one, or for ``ranks`` above 1.
        """
        if ranks > 1:
            raise OSError(f"the Slurm executor runs each run on one GPU, not {ranks}: use the local executor")
        if (health := self.health()) != HEALTHY:
            raise OSError(f"Slurm cannot take runs now: {health}")
        w = SlurmWorker(run=run, device=device, run_dir=run_dir, job=None)
        try:
            await asyncio.to_thread(self._end_leftover, run_dir)
            (run_dir / STOP_FILE).unlink(missing_ok=True)
            (run_dir / EVENTS_FILE).unlink(missing_ok=True)
            w.job = await asyncio.to_thread(self._submit, w, memory_gib)
        except Exception as exc:  # sbatch refused it, or submitit could not be set up: this run fails, not the daemon
            raise OSError(f"Slurm refused the job: {exc}") from exc
        log.info("run %d: submitted as job %s", run, w.job.job_id)
        self.workers[run] = w
        w.tasks.append(asyncio.create_task(self._watch(w, memory_gib)))
        return w

    async def _watch(self, w: SlurmWorker, memory_gib: float | None) -> None:
        """Relay the worker's events until its job ends, submitting a lost job again; then report how it ended."""
        events = Tail(w.run_dir / EVENTS_FILE)
        lost = 0
        while True:
            while not await asyncio.to_thread(w.job.done):
                self._relay(w.run, events)
                await asyncio.sleep(POLL_S)
            self._relay(w.run, events)  # what the worker wrote last, before it ended
            ending, why = await asyncio.to_thread(self._ending, w)  # submitit waits for a late result file
            if ending is not None or lost >= self.options.retries:
                break
            lost += 1
            log.warning("run %d: job %s ended without a result (%s); submitting it again", w.run, w.job.job_id, why)
            try:
                w.job = await asyncio.to_thread(self._submit, w, memory_gib)
            except Exception as exc:  # the run fails with the reason; the daemon goes on
                why = f"submitting it again failed: {exc}"
                break
        if ending is None:
            ending = Ending(
                "failed",
                f"its Slurm job was lost ({why}) after {lost} resubmissions; "
                f"`stratcast resume {w.run}` continues from its checkpoint",
                "lost",
            )
        (w.run_dir / JOB_FILE).unlink(missing_ok=True)
        self.workers.pop(w.run, None)
        await self.on_exit(w.run, ending)

    def _relay(self, run: int, events: Tail) -> None:
        for line in events.lines():
            relay(self.on_event, run, line)

    def _ending(self, w: SlurmWorker) -> tuple[Ending | None, str]:
        """How the job ended: the worker's exit code through ``classify``; or None and why when it left no result."""
        utils = import_module("submitit.core.utils")
        if w.kill_requested:
            return classify(-signal.SIGKILL, w), ""
        try:
            code = w.job.result()
        except utils.FailedJobError as exc:  # the task itself raised: the worker could not start, say why
            last = str(exc).strip().splitlines()[-1:] or [type(exc).__name__]
            reason = f"its Slurm job {w.job.job_id} failed: {last[0]}; see `stratcast logs {w.run}`"
            return Ending("failed", reason, "job error"), ""
        except utils.UncompletedJobError as exc:
            if w.stop_requested:  # stopped while its job went away: the checkpoint is there to resume from
                return classify(EXIT_STOPPED, w), ""
            return None, str(exc).strip().splitlines()[0]
        return classify(int(code), w), ""

    def stop(self, run: int, *, shutdown: bool = False) -> bool:
        """Ask a run's job to stop its worker (it checkpoints and exits); false when it is not running."""
        return request_stop(self.workers.get(run), shutdown, "job")

    def kill(self, run: int, *, shutdown: bool = False) -> bool:
        """Cancel a run's job (its worker dies with it); false when it is not running.

        A kill on request (``shutdown`` false) ends the run for good, even while the daemon shuts down.
        """
        if (w := kill_requested(self.workers, run, shutdown)) is None:
            return False
        threading.Thread(target=_cancel, args=(w.job,), name=f"cancel-run-{run}", daemon=True).start()  # scancel
        return True

    async def wait_all(self, timeout: float) -> None:
        """Wait for every job to end (after stops), cancelling those still running after ``timeout`` seconds."""
        await wait_for_workers(self.workers, self.kill, timeout, grace=30)


def _sinfo_problem() -> str:
    """'' when ``sinfo`` answers; else why the Slurm cluster cannot be reached."""
    try:
        subprocess.run(["sinfo", "--noheader", "--format=%a"], capture_output=True, timeout=SINFO_TIMEOUT_S, check=True)
    except FileNotFoundError:
        return "no Slurm here: `sinfo` is not on PATH (serve on a Slurm login node, or use --slurm-cluster local)"
    except subprocess.TimeoutExpired:
        return f"Slurm does not answer: `sinfo` took over {SINFO_TIMEOUT_S:g} s"
    except subprocess.CalledProcessError as exc:
        said = exc.stderr.decode(errors="replace").strip().splitlines()[-1:] or [f"exit {exc.returncode}"]
        return f"Slurm does not answer: `sinfo` failed: {said[0]}"
    return ""


def _cancel(job: Any) -> None:
    """Cancel a submitit job; one that already ended is fine."""
    with contextlib.suppress(Exception):
        job.cancel(check=False)


def _ended(alive: Callable[[], bool], timeout: float) -> bool:
    """Wait up to ``timeout`` seconds until ``alive()`` is false; whether it became so."""
    deadline = time.monotonic() + timeout
    while alive():
        if time.monotonic() > deadline:
            return False
        time.sleep(1.0)
    return True


def _cancel_job(job_id: str, local: bool) -> None:
    """Cancel a job known by its id only: SIGINT to a local job's controller (it ends its task), else ``scancel``."""
    with contextlib.suppress(OSError, ValueError, subprocess.SubprocessError):
        if local:
            os.kill(int(job_id), signal.SIGINT)
        else:
            subprocess.run(["scancel", job_id], capture_output=True, timeout=SINFO_TIMEOUT_S, check=False)


def _local_job_alive(job_id: str, folder: Path) -> bool:
    """Whether the local job ``job_id`` still runs: its id is its controller's pid, whose command names ``folder``.

    A pid that is no longer such a controller (the job ended, the pid was reused) is not the job.
    """
    try:
        cmdline = Path(f"/proc/{int(job_id)}/cmdline").read_bytes().split(b"\0")
    except (OSError, ValueError):
        return False
    return b"submitit.local._local" in cmdline and any(str(folder).encode() in part for part in cmdline)


def _slurm_job_alive(job_id: str) -> bool:
    """Whether ``squeue`` lists the Slurm job (pending, running, completing); False when it cannot tell."""
    try:
        listed = subprocess.run(
            ["squeue", "--noheader", "--jobs", job_id, "--format=%T"],
            capture_output=True,
            timeout=SINFO_TIMEOUT_S,
            check=False,
        )
    except (OSError, subprocess.SubprocessError):
        return False
    return listed.returncode == 0 and bool(listed.stdout.strip())
