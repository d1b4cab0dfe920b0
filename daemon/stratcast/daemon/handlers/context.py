"""The daemon as request handlers and dispatch see it: exactly what they use, typed, and nothing else.

``stratcast.daemon.server.Daemon`` satisfies :class:`DaemonContext` structurally (mypy checks it where the daemon
passes itself to ``handle_request`` and ``enqueue_from_schedule``), so handlers never import the server module
and a test can hand them any object with these members.
"""

from __future__ import annotations

from collections.abc import Container, Mapping, Sequence
from typing import TYPE_CHECKING, Any, Protocol

if TYPE_CHECKING:
    import asyncio

    from stratcast.daemon.executors.base import Worker
    from stratcast.daemon.queue import DeviceView
    from stratcast.daemon.schedules import Timetable
    from stratcast.daemon.store import Store
    from stratcast.daemon.studies import StudyManager
    from stratcast.daemon.telemetry import Telemetry
    from stratcast.shared.events import AnyEvent
    from stratcast.shared.paths import Home
    from stratcast.shared.protocol import RunInfo


class RunControl(Protocol):
    """What handlers do to workers: see them, stop them, kill them (starting one is the admission loop's job).

    The daemon's executor (:class:`stratcast.daemon.executors.base.Executor`) is one.
    """

    @property
    def name(self) -> str:
        """The executor's name (``local``)."""

    def health(self) -> str:
        """``ok``, or why the executor cannot start runs now."""

    @property
    def workers(self) -> Mapping[int, Worker]:
        """The live workers by run id."""

    def stop(self, run: int) -> bool:
        """SIGTERM ``run``'s worker so it checkpoints and exits; False when it has none."""

    def kill(self, run: int) -> bool:
        """SIGKILL ``run``'s worker; False when it has none."""


class DaemonContext(Protocol):
    """The daemon's state and services that requests read and change."""

    @property
    def db(self) -> Store:
        """The open store: every change is committed here before it is published."""

    @property
    def home(self) -> Home:
        """The daemon's folders and endpoints."""

    @property
    def session(self) -> str:
        """This daemon process's id; clients see a restart as a new session."""

    @property
    def started(self) -> float:
        """When the daemon started (epoch seconds)."""

    @property
    def seq(self) -> int:
        """The sequence number of the last published event."""

    @property
    def notices(self) -> Sequence[str]:
        """What the user should know about the daemon (a GPU lost or back)."""

    @property
    def validation(self) -> asyncio.Semaphore:
        """Held while a job is checked (it loads the data): two at a time."""

    @property
    def shutting_down(self) -> asyncio.Event:
        """Set once the daemon begins to shut down."""

    @property
    def studies(self) -> StudyManager:
        """The Optuna studies the daemon runs."""

    @property
    def runner(self) -> RunControl:
        """The executor and its workers."""

    @property
    def telemetry(self) -> Telemetry:
        """GPU and host samples."""

    @property
    def timetable(self) -> Timetable:
        """The schedules' fire times."""

    @property
    def peers(self) -> Container[tuple[str, bytes]]:
        """The clients (channel name, identity) that completed the handshake."""

    def greet(self, peer: tuple[str, bytes]) -> None:
        """Remember a client that completed the handshake."""

    def publish(self, event: AnyEvent, run: int | None = None) -> None:
        """Publish ``event`` about ``run`` (None: the daemon), after the state it describes is committed."""

    def run_changed(self, run: RunInfo) -> RunInfo:
        """Announce a run's new record and let the queue reconsider."""

    def update_run(self, run_id: int, **fields: Any) -> RunInfo:
        """Commit a change to a run, then announce it."""

    def kick(self) -> None:
        """Ask the admission loop to look at the queue now."""

    def devices(self, runs: list[RunInfo]) -> list[DeviceView]:
        """The devices runs can go to: the GPUs and the CPU."""

    def request_shutdown(self) -> None:
        """Begin a graceful shutdown, or force it when one is under way."""
