"""A live copy of a daemon's state by the Clone pattern, and helpers that follow events and logs."""

from __future__ import annotations

import collections
from collections.abc import Generator, Iterator, Mapping, Sequence
from typing import Any, assert_never

from stratcast.shared.client import HEARTBEAT_TIMEOUT_S, DaemonClient, OutOfSync, RequestFailed
from stratcast.shared.events import (
    CheckpointSaved,
    CutoffScored,
    Event,
    HeartbeatSent,
    LogAppended,
    MemorySampled,
    NoticeGiven,
    PlanChosen,
    ProgressReported,
    QueuePaused,
    QueueResumed,
    RanOutOfMemory,
    RunFailed,
    RunFinished,
    RunRemoved,
    RunStopped,
    RunUpdated,
    ScheduleRemoved,
    ScheduleUpdated,
    ShutdownStarted,
    TelemetrySampled,
    WarningGiven,
    WorkerStarted,
    event_fields,
)
from stratcast.shared.protocol import (
    ReadLogs,
    RunInfo,
    ScheduleInfo,
    ShowRun,
    Snapshot,
    convert,
)

LIVE_STATES = frozenset({"queued", "held", "running"})
"""States in which a run may still write to its log."""
HISTORY = 600
"""Telemetry samples kept per series by a :class:`Mirror` (about two per column of a wide chart)."""


class Mirror:
    """A live copy of the daemon's runs, schedules and telemetry: load a snapshot, then apply events in order.

    It owns no socket, so the CLI (:func:`follow_events`) and the TUI (``zmq.asyncio``) drive it alike.
    """

    def __init__(self) -> None:
        self.session: str | None = None
        """The daemon session the mirror reflects; None before the first snapshot."""
        self.seq = 0
        """The last event reflected."""
        self.runs: dict[int, RunInfo] = {}
        self.schedules: dict[int, ScheduleInfo] = {}
        self.gpus: list[dict[str, Any]] = []
        """Latest GPU samples (``list_gpus`` rows)."""
        self.host: dict[str, Any] = {}
        """Latest host sample."""
        self.gpu_history: dict[int, collections.deque[dict[str, Any]]] = {}
        """GPU samples by index, oldest first, at most :data:`HISTORY` each."""
        self.host_history: collections.deque[dict[str, Any]] = collections.deque(maxlen=HISTORY)
        self.run_history: dict[int, collections.deque[dict[str, Any]]] = {}
        """Each run's samples: ``kind`` progress (a progress report) or memory (allocator figures)."""
        self.queue_paused = False
        self.notices: list[str] = []
        self.shutting_down = False

    def load(self, snapshot: Mapping[str, Any]) -> None:
        """Replace everything with a ``snapshot`` result."""
        self.session = snapshot["session"]
        self.seq = int(snapshot["seq"])
        self.runs = {r.id: r for r in (convert(r, RunInfo) for r in snapshot.get("runs", []))}
        self.schedules = {s.id: s for s in (convert(s, ScheduleInfo) for s in snapshot.get("schedules", []))}
        self.gpus = list(snapshot.get("gpus", []))
        telemetry = snapshot.get("telemetry", {})
        self.gpu_history = {int(k): _ring(v) for k, v in telemetry.get("gpus", {}).items()}
        self.host_history = _ring(telemetry.get("host", []))
        self.host = self.host_history[-1] if self.host_history else {}
        self.run_history = {int(k): _ring(v) for k, v in telemetry.get("runs", {}).items()}
        self.queue_paused = bool(snapshot.get("queue_paused", False))
        self.notices = list(snapshot.get("notices", []))
        self.shutting_down = False

    def apply(self, event: Event) -> bool:
        """Apply one event; False when the loaded snapshot already reflects it.

        Raises:
            OutOfSync: nothing loaded yet, a new daemon session, or a gap in ``seq``: load a new snapshot.
        """
        if self.session is None:
            raise OutOfSync("no snapshot loaded")
        if event.session != self.session:
            raise OutOfSync(f"new daemon session {event.session} (was {self.session})")
        if event.seq <= self.seq:
            return False
        if event.seq != self.seq + 1:
            raise OutOfSync(f"missed events {self.seq + 1}..{event.seq - 1}")
        self.seq = event.seq
        self._apply(event)
        return True

    def _apply(self, event: Event) -> None:
        """Change the copy as ``event`` says."""
        match event.data:
            case RunUpdated(run=run):
                self.runs[run.id] = run
            case RunRemoved():
                self.runs.pop(_run_of(event), None)
            case ProgressReported() as progress:
                self._on_progress(_run_of(event), event.time, progress)
            case TelemetrySampled() as sample:
                self._on_telemetry(event.time, sample)
            case ScheduleUpdated(schedule=schedule):
                self.schedules[schedule.id] = schedule
            case ScheduleRemoved(schedule=schedule_id):
                self.schedules.pop(schedule_id, None)
            case NoticeGiven(message=message):
                self.notices.append(message)
            case QueuePaused() | QueueResumed():
                self.queue_paused = isinstance(event.data, QueuePaused)
            case ShutdownStarted():
                self.shutting_down = True
            case HeartbeatSent() | LogAppended() | PlanChosen() | RanOutOfMemory() | WarningGiven() | CutoffScored():
                pass  # nothing kept: the runs' records change by their own events
            case WorkerStarted() | MemorySampled() | CheckpointSaved() | RunFinished() | RunStopped() | RunFailed():
                pass  # a worker's own report: the daemon publishes its effect on the run instead
            case _:
                assert_never(event.data)  # mypy: a new event kind must be handled here

    def _on_progress(self, run_id: int, when: float, progress: ProgressReported) -> None:
        fields = event_fields(progress)
        self._run_sample(run_id, {"time": when, "kind": "progress", **fields})
        if (run := self.runs.get(run_id)) is not None:
            run.progress = fields

    def _on_telemetry(self, when: float, sample: TelemetrySampled) -> None:
        self.gpus = [gpu.to_dict() for gpu in sample.gpus]
        for gpu, as_dict in zip(sample.gpus, self.gpus, strict=True):
            self.gpu_history.setdefault(gpu.index, _ring([])).append(as_dict)
        self.host = sample.host.to_dict()
        self.host_history.append(self.host)
        for run_id, memory in sample.runs.items():
            fields = event_fields(memory)
            self._run_sample(run_id, {"time": when, "kind": "memory", **fields})
            if (run := self.runs.get(run_id)) is not None:
                run.memory = fields

    def _run_sample(self, run_id: int, sample: dict[str, Any]) -> None:
        """Keep a run's sample as the daemon's history does (``kind``: progress or memory)."""
        self.run_history.setdefault(run_id, _ring([])).append(sample)


def _run_of(event: Event) -> int:
    """The run an event about one run is about.

    Raises:
        OutOfSync: the daemon sent such an event without its run (a bug): take a new snapshot.
    """
    if event.run is None:
        raise OutOfSync(f"a {event.topic} event without its run")
    return event.run


def follow_events(
    client: DaemonClient, mirror: Mirror, *, idle_timeout_s: float = HEARTBEAT_TIMEOUT_S
) -> Generator[Event | None, None, None]:
    """Keep ``mirror`` in step with the daemon: yield each event once applied, and None after each snapshot.

    Subscribes first, then snapshots (the Clone pattern); on a gap or a new daemon session it snapshots again.
    Ends only when the caller stops iterating.

    Raises:
        DaemonUnavailable: the daemon stopped answering or sent no heartbeat for ``idle_timeout_s``.
    """
    source = client.subscribe(idle_timeout_s)
    try:
        mirror.load(client.call(Snapshot()))
        yield None
        while True:
            event = source.recv()
            if event is None:
                continue
            try:
                fresh = mirror.apply(event)
            except OutOfSync:
                mirror.load(client.call(Snapshot()))
                yield None
                continue
            if fresh:
                yield event
    finally:
        source.close()


def read_log(client: DaemonClient, run: int, offset: int = 0) -> Iterator[tuple[str, int]]:
    """Chunks of a run's log from ``offset`` to its current end, each with the offset that follows it."""
    while True:
        result = client.call(ReadLogs(run=run, offset=offset))
        text, after, size = result["text"], int(result["offset"]), int(result["size"])
        if text or after != offset:
            yield text, after
        if after <= offset or after >= size:
            return
        offset = after


def follow_logs(
    client: DaemonClient, runs: Sequence[int], *, offset: int = 0, idle_timeout_s: float = HEARTBEAT_TIMEOUT_S
) -> Generator[tuple[int, str], None, None]:
    """``(run, text)`` from each run's log, as it grows, until every run has left the queued/held/running states.

    ``log`` events only say when to read: the text itself is read by offset (``read_logs``), so a dropped
    event loses nothing; heartbeats trigger a read too, and a gap in ``seq`` re-checks the runs' states.

    Raises:
        RequestFailed: a run does not exist.
        DaemonUnavailable: the daemon stopped answering.
    """
    offsets = dict.fromkeys(runs, offset)
    source = client.subscribe(idle_timeout_s)
    try:
        live = _live(client, runs)
        yield from _read_all(client, runs, offsets)
        last: tuple[str, int] | None = None
        while live:
            event = source.recv()
            if event is None:
                continue
            # the first event too: a run may have ended before the subscription reached the daemon
            gap = last is None or (event.session, event.seq) != (last[0], last[1] + 1)
            last = (event.session, event.seq)
            wake, ended = _wake(event, live)
            if gap:
                wake, ended = set(live), live - _live(client, sorted(live), missing_ok=True)
            live -= ended
            yield from _read_all(client, sorted(wake | ended), offsets)
    finally:
        source.close()


def _live(client: DaemonClient, runs: Sequence[int], *, missing_ok: bool = False) -> set[int]:
    """The runs that may still write to their logs (``missing_ok``: a removed run has ended)."""
    live = set()
    for run in runs:
        try:
            state = client.call(ShowRun(run=run))["run"]["state"]
        except RequestFailed as exc:
            if not (missing_ok and exc.code == "not_found"):
                raise
            continue
        if state in LIVE_STATES:
            live.add(run)
    return live


def _wake(event: Event, live: set[int]) -> tuple[set[int], set[int]]:
    """Runs to read after ``event``, and runs that ended with it."""
    match event.data:
        case HeartbeatSent():
            return set(live), set()
        case LogAppended() if event.run in live:
            return {event.run}, set()
        case RunUpdated(run=run) if run.id in live and run.state not in LIVE_STATES:
            return set(), {run.id}
        case RunRemoved() if event.run in live:
            return set(), {event.run}
    return set(), set()


def _read_all(client: DaemonClient, runs: Sequence[int], offsets: dict[int, int]) -> Iterator[tuple[int, str]]:
    for run in runs:
        try:
            for text, after in read_log(client, run, offsets[run]):
                offsets[run] = after
                if text:
                    yield run, text
        except RequestFailed as exc:
            if exc.code != "not_found":  # a queued run has no log yet; a removed one has none any more
                raise


def _ring(samples: Sequence[dict[str, Any]]) -> collections.deque[dict[str, Any]]:
    return collections.deque(samples, maxlen=HISTORY)
