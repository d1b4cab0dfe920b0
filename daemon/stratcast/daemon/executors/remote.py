"""What the cluster executors (``ray``, ``slurm``) share: the worker inside a task, its events read from its folder.

The run folder lives on storage every node shares (``stratcastd serve --shared-dir``), so the task and the daemon
talk through files in it:

- events: the worker's stdout is appended to ``RUN_DIR/worker-events.jsonl`` (:data:`EVENTS_FILE`) by every attempt
  of the run's task; the executor reads the lines it gained (:class:`Tail`) and hands each to the daemon through the
  local executor's parsing (:func:`~stratcast.daemon.executors.local.relay`);
- stop: the executor creates ``RUN_DIR/stop-requested`` (:data:`STOP_FILE`); the task sees it within :data:`POLL_S`
  and sends the worker SIGTERM: it checkpoints and exits, as on one machine;
- resume: :func:`~stratcast.daemon.executors.local.launch` adds ``--resume`` when the folder has a checkpoint, so a
  retried or requeued task continues where the last attempt checkpointed.
"""

from __future__ import annotations

import ctypes
import logging
import os
import signal
import subprocess
from collections.abc import Callable, Collection
from dataclasses import dataclass
from pathlib import Path

from stratcast.daemon.executors.base import Started
from stratcast.daemon.executors.local import MAX_LINE, WORKER, launch, worker_env
from stratcast.shared.runfiles import RunFolder

log = logging.getLogger("stratcastd")

EVENTS_FILE = "worker-events.jsonl"
"""In the run folder: the worker's events, one JSON line each, appended by every attempt of its task."""
STOP_FILE = "stop-requested"
"""In the run folder: its presence asks the task to stop the worker (SIGTERM: it checkpoints and exits)."""
POLL_S = 0.2
"""How often a task looks for the stop file and the executor reads new events."""
PR_SET_PDEATHSIG = 1
"""Linux ``prctl`` option: the signal a process gets when the thread that started it ends."""


@dataclass(kw_only=True)
class RemoteWorker(Started):
    """A cluster run's task or job: its worker runs elsewhere, and the run folder on the shared path is the link."""

    run_dir: Path


def request_stop(w: RemoteWorker | None, shutdown: bool, what: str) -> bool:
    """Ask a cluster run's task (``what``: ``task``, ``job``) to stop its worker: create its :data:`STOP_FILE`.

    False when the run has no worker; the stop is recorded on ``w`` even when the shared folder cannot be written
    (a kill still ends it).
    """
    if w is None:
        return False
    w.stop_requested, w.shutdown = True, w.shutdown or shutdown
    try:
        (w.run_dir / STOP_FILE).touch()
    except OSError as exc:  # the shared folder is gone: a kill still ends it
        log.warning("run %d: cannot ask its %s to stop (%s)", w.run, what, exc)
    return True


class Tail:
    """The complete lines a growing file gained since the last read."""

    def __init__(self, path: Path) -> None:
        self.path, self.pos, self.rest = path, 0, b""

    def lines(self) -> list[bytes]:
        """The whole lines written since the last call (none while the file does not exist yet)."""
        try:
            with open(self.path, "rb") as f:
                f.seek(self.pos)
                data = f.read()
        except FileNotFoundError:  # the task has not started the worker yet
            return []
        self.pos += len(data)
        *lines, self.rest = (self.rest + data).split(b"\n")
        if len(self.rest) > MAX_LINE:  # a worker bug: drop the line, not the run
            log.warning("%s: skipped a worker event line over %d bytes", self.path, MAX_LINE)
            self.rest = b""
        return [line for line in lines if line.strip()]


def start_worker(
    folder: Path, gpu: str, memory_gib: float | None, home: Path | None, ignore: Collection[signal.Signals] = ()
) -> subprocess.Popen[bytes]:
    """Inside a task: start the worker of the run folder ``folder`` on GPU ``gpu`` ('' for the CPU).

    Its stdout (its events) is appended to :data:`EVENTS_FILE`, its stderr to the run's log. It dies with the
    process that starts it (a kill, a lost node), so a retried task never finds an old worker still writing the
    run's folder; the signals in ``ignore`` (a cluster's warning meant for the task) do not reach it.
    """
    cmd = launch(WORKER, folder, gpu, memory_gib)
    env = worker_env(os.environ, gpu, home)
    with open(folder / EVENTS_FILE, "ab") as out, open(RunFolder(folder).log, "ab") as err:
        return subprocess.Popen(
            cmd, stdin=subprocess.DEVNULL, stdout=out, stderr=err, env=env, preexec_fn=prepare_child(ignore)
        )


def wait_worker(proc: subprocess.Popen[bytes], folder: Path) -> int:
    """Inside a task: wait for the worker to exit and return its exit code (negative: the signal that ended it).

    The stop file makes it checkpoint and exit (SIGTERM, sent once).
    """
    stop, asked = folder / STOP_FILE, False
    while True:
        try:
            return proc.wait(timeout=POLL_S)
        except subprocess.TimeoutExpired:
            if not asked and stop.exists():
                proc.send_signal(signal.SIGTERM)
                asked = True


def prepare_child(ignore: Collection[signal.Signals]) -> Callable[[], None] | None:
    """What the worker runs before its command: ask Linux for SIGKILL when its parent ends, ignore ``ignore``.

    ``prctl`` is looked up here, in the parent, so the child calls one C function between fork and exec; an
    ignored signal stays ignored across exec.
    """
    try:
        prctl = ctypes.CDLL(None, use_errno=True).prctl
    except (OSError, AttributeError):
        prctl = None
    if prctl is None and not ignore:
        return None

    def prepare() -> None:
        for sig in ignore:
            signal.signal(sig, signal.SIG_IGN)
        if prctl is not None:
            prctl(PR_SET_PDEATHSIG, signal.SIGKILL)

    return prepare
