"""The Ray executor's driver: a process of its own that holds the daemon's connection to the cluster.

Ray ends a driver's process when it cannot go on: a head restarted as a new cluster (``WrongClusterID``), a lost head
past its reconnect timeout. So the daemon does not connect to Ray itself; it starts this process
(``python -m stratcast.daemon.executors.raydriver``), which connects, submits the daemon's runs as tasks
(:func:`~stratcast.daemon.executors.ray.run_task`), cancels them, and reports the cluster's resources and each
task's end. When the driver ends, the daemon says why, starts another, and submits the runs that were in flight
again (their tasks ended with the driver's job; each resumes from its checkpoint).

They speak JSON lines: the daemon writes :data:`Command` on the driver's stdin, the driver writes :data:`Report`
on its stdout, which carries nothing else (the driver points its own stdout at its stderr, so what Ray prints goes
to the daemon's log). The driver exits when its stdin closes
(shutting a ``local`` Ray instance down), and dies with the daemon (Linux's parent-death signal).
"""

from __future__ import annotations

import argparse
import contextlib
import os
import queue
import sys
import threading
import time
from importlib import import_module
from typing import Any

import msgspec


class SubmitTask(msgspec.Struct, tag="submit", kw_only=True):
    """Run ``run``'s worker on the run folder ``run_dir`` as a Ray task."""

    run: int
    run_dir: str
    on_gpu: bool
    memory_gib: float | None
    home: str | None
    retries: int


class CancelTask(msgspec.Struct, tag="cancel", kw_only=True):
    """End ``run``'s task now (its worker dies with it)."""

    run: int


Command = SubmitTask | CancelTask
"""What the daemon asks of its driver."""


class ClusterHealth(msgspec.Struct, tag="health", kw_only=True):
    """The cluster answered (``problem`` empty, its ``resources``), or why it could not be reached."""

    problem: str = ""
    resources: dict[str, float] = msgspec.field(default_factory=dict)


class TaskEnded(msgspec.Struct, tag="ended", kw_only=True):
    """``run``'s task ended: the worker's exit ``code``, or why there is none."""

    run: int
    code: int | None = None
    """The worker's exit code (negative: the signal that ended it)."""
    error: str | None = None
    """The task itself raised (the worker could not start): the exception."""
    lost: str | None = None
    """The task was cancelled or lost (with its node, after Ray's retries): the exception's type."""


Report = ClusterHealth | TaskEnded
"""What the driver tells the daemon."""

TOKEN_HINT = "a cluster with token authentication needs RAY_AUTH_MODE=token in the daemon's environment"
"""Said with a failed connection when the daemon's environment does not set Ray's authentication mode."""
EXIT_UNREACHABLE = 3
"""The driver's exit code when the cluster did not answer its connection."""
HEALTH_S = 2.0
"""How often the driver reads the cluster's resources."""
POLL_S = 0.2
"""How often the driver looks for ended tasks and new commands."""

RECONNECT_S = 7 * 24 * 3600
"""How long the driver waits for a lost cluster head before giving up (Ray's own default, 60 s, ends the driver
when the head is away a minute)."""


def driver_environment(environ: dict[str, str] | os._Environ[str]) -> None:
    """The Ray settings the driver needs, unless the daemon's environment sets them itself.

    Ray's handler of fatal signals also catches SIGTERM (the daemon's graceful shutdown then ends in an abort now
    and then): it is disabled. A head that does not answer is waited for :data:`RECONNECT_S` instead of 60 s, so the
    driver outlives it: health says the cluster stopped answering and runs wait. A head restarted as a new cluster
    (without GCS fault tolerance) still ends the driver: Ray cannot join another cluster from a running driver.
    """
    environ.setdefault("RAY_DISABLE_FAILURE_SIGNAL_HANDLER", "1")
    environ.setdefault("RAY_gcs_rpc_server_reconnect_timeout_s", str(RECONNECT_S))


_encoder = msgspec.json.Encoder()
_commands = msgspec.json.Decoder(Command)
_reports = msgspec.json.Decoder(Report)


def encode(message: Command | Report) -> bytes:
    """One JSON line."""
    return _encoder.encode(message) + b"\n"


def decode_command(line: bytes) -> Command:
    """A daemon's command.

    Raises:
        msgspec.DecodeError: for a line that is not one.
    """
    return _commands.decode(line)


def decode_report(line: bytes) -> Report:
    """A driver's report.

    Raises:
        msgspec.DecodeError: for a line that is not one.
    """
    return _reports.decode(line)


class Driver:
    """The driver's state: the connection, the tasks in flight, and the channel back to the daemon."""

    def __init__(self, address: str, cpus: int | None, temp_dir: str | None) -> None:
        self.address, self.cpus, self.temp_dir = address, cpus, temp_dir
        self.ray: Any = None
        self.remote: Any = None
        self.tasks: dict[int, Any] = {}
        """Each run's ``ObjectRef``."""
        self.commands: queue.Queue[Command | None] = queue.Queue()
        self._channel = os.fdopen(os.dup(1), "wb")
        os.dup2(2, 1)  # what Ray prints on stdout (a raylet's last words) goes to the log, not into the reports
        self._out = threading.Lock()
        self._closed = threading.Event()

    def send(self, report: Report) -> None:
        """Write a report to the daemon (from any thread)."""
        with self._out:
            self._channel.write(encode(report))
            self._channel.flush()

    def read_commands(self) -> None:
        """Put the daemon's commands on :attr:`commands` until its end of the pipe closes (then None)."""
        for line in sys.stdin.buffer:
            try:
                self.commands.put(decode_command(line))
            except msgspec.DecodeError as exc:
                print(f"stratcast ray driver: ignored a bad command ({exc}): {line[:200]!r}", file=sys.stderr)
        self.commands.put(None)
        self._closed.set()  # the health reads stop

    def connect(self) -> bool:
        """Connect to the cluster (a ``local`` one starts here, tied to this thread); whether it answered.

        One try per process: a driver whose ``ray.init`` failed keeps some of Ray's state, so the daemon starts a
        fresh one to try again (:data:`EXIT_UNREACHABLE`).
        """
        from stratcast.daemon.executors.ray import LOCAL, run_task

        ray = self.ray = import_module("ray")  # some of its functions lack annotations: mypy --strict refuses those
        try:
            if self.address == LOCAL:
                ray.init(
                    address=LOCAL, num_cpus=self.cpus, _temp_dir=self.temp_dir, include_dashboard=False,
                    log_to_driver=False,
                )  # fmt: skip
            else:
                ray.init(address=self.address, log_to_driver=False)
        except Exception as exc:  # whatever Ray raises, the reason goes to the daemon and runs wait
            hint = "" if os.environ.get("RAY_AUTH_MODE") else f"; {TOKEN_HINT}"
            self.unreachable(f"{exc}{hint}")
            return False
        self.remote = ray.remote(run_task)
        return True

    def unreachable(self, why: str) -> None:
        """Tell the daemon the cluster cannot be reached, and why."""
        self.send(ClusterHealth(problem=f"cannot reach the Ray cluster at {self.address}: {why}"))

    def watch_health(self) -> None:
        """Once connected: report the cluster's resources every :data:`HEALTH_S` seconds.

        A read that blocks (a lost head) makes them stale; the daemon then says the cluster stopped answering.
        """
        while not self._closed.is_set():
            try:
                resources = self.ray.cluster_resources()
            except Exception as exc:
                self.unreachable(str(exc))
            else:
                self.send(ClusterHealth(resources={str(k): float(v) for k, v in resources.items()}))
            self._closed.wait(HEALTH_S)

    def serve(self) -> None:
        """Carry out commands and report ended tasks until the daemon closes the pipe."""
        while True:
            try:
                command = self.commands.get(timeout=POLL_S)
            except queue.Empty:
                self.report_ended()
                continue
            if command is None:
                return
            if isinstance(command, SubmitTask):
                self.submit(command)
            else:
                self.cancel(command.run)
            self.report_ended()

    def submit(self, c: SubmitTask) -> None:
        """Submit ``c``'s task; a refusal ends it at once with the reason."""
        task = self.remote.options(
            num_cpus=1, num_gpus=1 if c.on_gpu else 0, max_retries=c.retries, name=f"stratcast-run-{c.run}"
        )
        try:
            self.tasks[c.run] = task.remote(c.run_dir, c.on_gpu, c.memory_gib, c.home)
        except Exception as exc:  # a submit Ray refuses fails this run, not the driver
            self.send(TaskEnded(run=c.run, error=f"Ray refused the task: {exc}"))

    def cancel(self, run: int) -> None:
        """Cancel ``run``'s task (a task that already ended is fine)."""
        ref = self.tasks.get(run)
        if ref is not None:
            with contextlib.suppress(Exception):
                self.ray.cancel(ref, force=True)

    def report_ended(self) -> None:
        """Report every task that ended since the last look."""
        if not self.tasks:
            return
        runs = {ref: run for run, ref in self.tasks.items()}
        ready, _ = self.ray.wait(list(runs), num_returns=len(runs), timeout=0)
        for ref in ready:
            run = runs[ref]
            del self.tasks[run]
            self.send(self.ending(run, ref))

    def ending(self, run: int, ref: Any) -> TaskEnded:
        """How ``run``'s ended task ended."""
        from ray.exceptions import RayTaskError

        try:
            return TaskEnded(run=run, code=int(self.ray.get(ref)))
        except RayTaskError as exc:  # the task itself raised: the worker could not start
            return TaskEnded(run=run, error=repr(exc.cause))
        except Exception as exc:  # cancelled, or lost with its node after every retry
            return TaskEnded(run=run, lost=type(exc).__name__)

    def close(self) -> None:
        """Stop the health reads and let go of the cluster (a ``local`` instance stops)."""
        self._closed.set()
        if self.ray is not None:
            with contextlib.suppress(Exception):
                self.ray.shutdown()


def main(argv: list[str] | None = None) -> int:
    """Run the driver until the daemon closes its stdin."""
    p = argparse.ArgumentParser(prog="stratcast-ray-driver", description=__doc__)
    p.add_argument("--address", required=True)
    p.add_argument("--cpus", type=int)
    p.add_argument("--temp-dir")
    args = p.parse_args(argv)
    driver_environment(os.environ)
    driver = Driver(args.address, args.cpus, args.temp_dir)
    threading.Thread(target=driver.read_commands, name="commands", daemon=True).start()
    began = time.monotonic()
    if not driver.connect():  # without Ray's shutdown and exit hooks: after a failed init they may abort
        sys.stdout.flush()
        os._exit(EXIT_UNREACHABLE)
    threading.Thread(target=driver.watch_health, name="health", daemon=True).start()
    try:
        print(f"stratcast ray driver: connected in {time.monotonic() - began:.1f} s", file=sys.stderr)
        driver.serve()
    finally:
        driver.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
