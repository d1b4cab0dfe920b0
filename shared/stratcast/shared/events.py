"""Events: one msgspec tagged union of everything that happened, for the worker's lines and the daemon's PUB socket.

Every event is a past-tense struct whose tag, under ``event``, names its kind. The kinds come in two groups of one
family:

* **What a worker reports** (:data:`WorkerEvent`), one JSON line each on the worker's stdout::

    {"event": "started", "pid": 4242, "device": "cuda:0", "resume": "RUN_DIR/checkpoints/step-00000120.pt"}
    {"event": "plan", "micro_batch": 512, "batch_size": 1024, "budget": 7247757312, "predicted_peak": 6012954214,
     "measured_peak": 6006243328, "probes": [{"micro_batch": 256, "peak": 3154116608}, ...], "oom_probes": [],
     "source": "probe", "levers": ["Batch 1024 is predicted at ...", ...], "device": "cuda:0", "seconds": 0.8}
    {"event": "progress", "step": 130, "max_steps": 1000, "epoch": 0.4, "train_loss": 0.21, "val_loss": null,
     "best_val_loss": 0.19, "windows_per_s": 52000.0, "eta_s": 31.2, "learning_rate": 0.00093, "micro_batch": 512}
    {"event": "memory", "allocated": 1073741824, "reserved": 2147483648, "peak": 1610612736, "oom_count": 0,
     "rss": 912261120}
    {"event": "checkpoint", "path": "RUN_DIR/checkpoints/step-00000200.pt", "step": 200}
    {"event": "oom", "time": 1763900000.5, "step": 201, "phase": "forward/backward", "old_micro_batch": 1024,
     "new_micro_batch": 512, "allocated": 7516192768, "reserved": 8053063680, "rss": 912261120,
     "error": "CUDA out of memory. Tried to allocate ..."}
    {"event": "warning", "kind": "loss", "message": "loss=mae on a panel that is 80% zeros: ..."}
    {"event": "cutoff", "cutoff": 3, "value": 1.25}
    {"event": "finished", "out": "RUN_DIR/out", "metrics": {...the content of metrics.json...}}
    {"event": "stopped", "path": "RUN_DIR/checkpoints/step-00000214.pt", "step": 214}
    {"event": "failed", "exit": 3, "error": "DataError: ..."}

  The worker writes them with :func:`encode_line`; the daemon's runner reads each line with :func:`decode_line`
  (fields it does not know are ignored, so a newer worker's extra fields do not break an older daemon; a line
  that is no worker event, a daemon-only kind included, is refused). NaN losses travel as ``null``.

* **What the daemon publishes** (:data:`AnyEvent`, worker events it relays included): each published event is
  the ``data`` of an :class:`Event` envelope that adds the daemon's ``session``, a ``seq`` that grows by one per
  event, the daemon's ``time`` and the ``run`` it is about. Its ZeroMQ topic is its tag (:func:`event_kind`)::

    [b"progress", {"session": "9f2c41d07a1b33e0", "seq": 1234, "time": 1718000000.25, "run": 7,
                   "data": {"event": "progress", "step": 130, "max_steps": 1000, ...}}]

docs/protocol.md lists every kind with its fields. This module imports no torch: worker, daemon and clients share
it.
"""

from __future__ import annotations

from typing import Any

import msgspec

from stratcast.shared.protocol import ProtocolError, RunInfo, ScheduleInfo


class _Event(msgspec.Struct, frozen=True, kw_only=True, tag_field="event"):
    """Base of every event: the tag field is ``event``, as in the lines the worker always wrote.

    (Each event says ``frozen=True`` again: mypy does not see that a msgspec Struct inherits it.)
    """


class WorkerStarted(_Event, tag="started", frozen=True):
    """The worker read its job and knows its device; training has not started."""

    pid: int
    device: str
    resume: str | None
    """The checkpoint it resumes from; None for a fresh start."""


class ProbeMeasured(msgspec.Struct, frozen=True, kw_only=True):
    """One probe step of a memory plan and the peak it reached (bytes)."""

    micro_batch: int
    peak: int


class PlanChosen(_Event, tag="plan", frozen=True):
    """The run's memory plan (the engine's ``RunPlan``), sent on every start and resume.

    Its sequences are lists, so that :func:`event_fields` gives what a JSON reader of the line would.

    Sizes are bytes; ``budget``, the peaks and ``probes`` are null or empty for the ``cpu`` and ``fixed`` sources.
    ``micro_batch`` 0 means nothing fits: a :class:`RunFailed` with the out-of-memory exit follows.
    """

    micro_batch: int
    batch_size: int
    budget: int | None
    predicted_peak: int | None
    measured_peak: int | None
    probes: list[ProbeMeasured]
    oom_probes: list[int]
    """Micro-batches whose probe ran out of memory."""
    source: str
    """``probe`` (measured now), ``cache`` (measured before), ``cpu`` (nothing measured) or ``fixed`` (set)."""
    levers: list[str]
    """Whether bf16 autocast or activation checkpointing would make the whole batch fit."""
    device: str
    seconds: float


class ProgressReported(_Event, tag="progress", frozen=True):
    """A training progress report: the trainer makes it (NaN losses travel as null)."""

    step: int
    max_steps: int
    epoch: float
    train_loss: float | None
    """None when the loss was NaN."""
    val_loss: float | None
    """None except at validation checks (or when the loss was NaN)."""
    best_val_loss: float | None
    windows_per_s: float
    eta_s: float
    learning_rate: float
    micro_batch: int
    """The micro-batch in use (halved after an OOM, grown back later)."""
    val_score: float | None = None
    """At validation checks: the point forecast in the data's units, shrunk toward zero at each step by the
    least-squares weight in [0, 1] (as the default forecast's combination treats the zero forecast), its RMSE over a
    zero forecast's on the same validation targets: 1 when the model adds nothing to forecasting zero, below 1 by
    what it adds. Unlike ``val_loss`` it compares across runs that chose other losses, heads or scalers: a study's
    median and Hyperband pruners compare trials by it."""


class MemorySampled(_Event, tag="memory", frozen=True):
    """The worker's memory in bytes: CUDA allocator figures for its device (zeros on the CPU) and its RSS."""

    allocated: int
    reserved: int
    peak: int
    """Since the start of the latest training step, which resets it."""
    oom_count: int
    rss: int


class CheckpointSaved(_Event, tag="checkpoint", frozen=True):
    """A training checkpoint is safely on disk."""

    path: str
    step: int


class RanOutOfMemory(_Event, tag="oom", frozen=True):
    """An out-of-memory error and what training did about it (the trainer makes it).

    A ``forward/backward`` one is retried with ``new_micro_batch`` (0: nothing smaller was left, the run ends); an
    ``optimizer`` one ends the run so that it resumes from its last checkpoint.
    """

    time: float
    step: int
    phase: str
    old_micro_batch: int
    new_micro_batch: int
    allocated: int
    reserved: int
    rss: int
    error: str


class WarningGiven(_Event, tag="warning", frozen=True):
    """Something about the run the user should act on (the engine's ``RunWarning``)."""

    kind: str
    message: str


class CutoffScored(_Event, tag="cutoff", frozen=True):
    """A study's backtest finished a cutoff: its objective's value there (only for a job's ``report_cutoffs``).

    What a study's Wilcoxon pruner compares trials by, cutoff by cutoff; a resumed backtest reports its finished
    cutoffs again.
    """

    cutoff: int
    """The cutoff's index in the backtest, from 0 (the oldest)."""
    value: float
    """The job's ``report_cutoffs`` objective at that cutoff (``backtest-top-k``: the top picks' profit per
    period after cost)."""


class RunFinished(_Event, tag="finished", frozen=True):
    """The run finished; its outputs are in ``out``."""

    out: str
    metrics: dict[str, Any]
    """The content of ``metrics.json``."""


class RunStopped(_Event, tag="stopped", frozen=True):
    """A stop request ended training with the checkpoint at ``path``."""

    path: str
    step: int


class RunFailed(_Event, tag="failed", frozen=True):
    """The run failed; the worker exits with ``exit`` (the worker's ``WorkerExit``)."""

    exit: int
    error: str
    """The error's first line."""


# -- what only the daemon publishes -------------------------------------------------------------------------


class RunUpdated(_Event, tag="run", frozen=True):
    """A run was created or its record changed (state, reason, progress saved, checkpoint, ...)."""

    run: RunInfo


class RunRemoved(_Event, tag="run_removed", frozen=True):
    """The envelope's run was forgotten and its folder deleted."""


class LogAppended(_Event, tag="log", frozen=True):
    """New text of a running run's log; ``offset`` is where ``text`` starts (a hint: read with ``read_logs``)."""

    text: str
    offset: int


# -- readings that telemetry events carry ---------------------------------------------------------------------


class GpuProcess(msgspec.Struct, frozen=True, kw_only=True, omit_defaults=True):
    """A process holding memory on a GPU, as NVML sees it (a host PID)."""

    pid: int
    used: int | None
    """Bytes of GPU memory; None where the driver does not say."""
    session: int | None = None
    """Its session id on the daemon's machine (None where it cannot be read). A worker leads a session of its own,
    so the other ranks of a data-parallel run (``--gpus-per-run``) carry their worker's pid here."""


class GpuSample(msgspec.Struct, frozen=True, kw_only=True):
    """One reading of one GPU; a field the GPU does not support is None."""

    time: float
    """Unix time of the sample."""
    index: int
    """NVML index (PCI bus order: workers need ``CUDA_DEVICE_ORDER=PCI_BUS_ID`` to agree)."""
    name: str
    uuid: str
    memory_used: int | None
    """Bytes in use (NVML's v1 figure: total minus free, reserved memory included)."""
    memory_total: int | None
    """Bytes."""
    utilization: int | None
    """Percent of the last sample period in which a kernel ran."""
    temperature: int | None
    """Degrees Celsius."""
    power_w: float | None
    power_limit_w: float | None
    """The enforced power limit."""
    processes: list[GpuProcess] = []
    """Compute and graphics processes on the GPU, by PID (a list, not a tuple: ``to_dict`` keeps tuples)."""

    def to_dict(self) -> dict[str, Any]:
        """The sample as plain JSON-ready data."""
        return _to_dict(self)


class HostSample(msgspec.Struct, frozen=True, kw_only=True):
    """One reading of the machine, the daemon and its workers."""

    time: float
    cpu_percent: float
    """Busy share of all cores since the previous sample, 0 to 100."""
    memory_used: int
    """Bytes not available to new processes (total minus available)."""
    memory_total: int
    daemon_rss: int
    """Resident bytes of the daemon process."""
    workers_rss: dict[int, int] = {}
    """Resident bytes of each watched worker, by PID."""

    def to_dict(self) -> dict[str, Any]:
        """The sample as plain JSON-ready data (PIDs as string keys)."""
        return _to_dict(self)


def _to_dict(sample: msgspec.Struct) -> dict[str, Any]:
    """A reading as plain JSON-ready data, map keys as strings (as they come out of JSON)."""
    as_dict: dict[str, Any] = msgspec.to_builtins(sample, str_keys=True)
    return as_dict


class TelemetrySampled(_Event, tag="telemetry", frozen=True):
    """GPU, host and worker memory readings, a few times a second."""

    gpus: list[GpuSample]
    """One reading of each GPU that answered (none without a driver)."""
    host: HostSample
    runs: dict[int, MemorySampled] = {}
    """The latest allocator figures of each running run's worker, by run id (runs that sent none are absent)."""


class ScheduleUpdated(_Event, tag="schedule", frozen=True):
    """A schedule was added or changed (paused, resumed, fired)."""

    schedule: ScheduleInfo


class ScheduleRemoved(_Event, tag="schedule_removed", frozen=True):
    """A schedule was deleted (its runs stay)."""

    schedule: int


class NoticeGiven(_Event, tag="notice", frozen=True):
    """Something about the daemon for people to read: a GPU lost or back, no driver, a schedule's run skipped."""

    message: str


class QueuePaused(_Event, tag="queue_paused", frozen=True):
    """The queue starts no new runs until resumed (running runs go on)."""


class QueueResumed(_Event, tag="queue_resumed", frozen=True):
    """The queue starts queued runs again."""


class ShutdownStarted(_Event, tag="shutdown", frozen=True):
    """The daemon is checkpointing its running runs and will exit; the queue is kept for its next start."""


class HeartbeatSent(_Event, tag="heartbeat", frozen=True):
    """The daemon is alive: one every ``HEARTBEAT_S`` seconds; none for three means it is gone."""


WorkerEvent = (
    WorkerStarted
    | PlanChosen
    | ProgressReported
    | MemorySampled
    | CheckpointSaved
    | RanOutOfMemory
    | WarningGiven
    | CutoffScored
    | RunFinished
    | RunStopped
    | RunFailed
)
"""What a worker may tell its daemon."""

AnyEvent = (
    WorkerEvent
    | RunUpdated
    | RunRemoved
    | LogAppended
    | TelemetrySampled
    | ScheduleUpdated
    | ScheduleRemoved
    | NoticeGiven
    | QueuePaused
    | QueueResumed
    | ShutdownStarted
    | HeartbeatSent
)
"""Every event: the worker's and the daemon's own. The daemon relays ``plan``, ``progress``, ``oom``, ``warning``
and ``cutoff`` from its workers and publishes the rest of the worker's kinds only through their effect on the run."""


class Event(msgspec.Struct, kw_only=True):
    """One event on the PUB socket: the envelope that numbers events, around the event itself."""

    session: str
    """The daemon's session, new at each daemon start."""
    seq: int
    """One more than the previous event's, across all kinds: a gap means events were lost."""
    time: float
    """The daemon's Unix time when it published the event."""
    run: int | None = None
    """The run the event is about; None for daemon-wide events."""
    data: AnyEvent

    @property
    def topic(self) -> str:
        """The event's ZeroMQ topic: its kind."""
        return event_kind(self.data)


_encoder = msgspec.json.Encoder()
_line_decoder = msgspec.json.Decoder(WorkerEvent)
_event_decoder = msgspec.json.Decoder(Event)


def encode_line(event: WorkerEvent) -> bytes:
    """``event`` as one JSON line of a worker, newline included."""
    return _encoder.encode(event) + b"\n"


def decode_line(line: bytes) -> WorkerEvent:
    """The event of one worker line.

    Raises:
        msgspec.DecodeError: when the line is not JSON, or not a worker event of a known kind with valid fields
            (:class:`msgspec.ValidationError` is a subclass).
    """
    return _line_decoder.decode(line)


def encode_event(event: Event) -> list[bytes]:
    """``[topic, body]`` frames for the PUB socket."""
    return [event.topic.encode("ascii"), _encoder.encode(event)]


def decode_event(frames: list[bytes]) -> Event:
    """Parse ``[topic, body]`` frames from the SUB socket.

    Raises:
        ProtocolError: for a wrong frame count or an invalid body (an event of an unknown kind included).
    """
    if len(frames) != 2:
        raise ProtocolError(f"an event has 2 frames, got {len(frames)}")
    try:
        return _event_decoder.decode(frames[1])
    except (msgspec.ValidationError, msgspec.DecodeError, RecursionError) as exc:
        raise ProtocolError(f"invalid event: {exc}") from None


def event_kind(event: AnyEvent) -> str:
    """The event's tag: ``progress``, ``plan``, ... (its topic, and its name in the run's history and events)."""
    return str(event.__struct_config__.tag)


def event_fields(event: AnyEvent) -> dict[str, Any]:
    """The event's fields as plain JSON values, without its tag: what the daemon stores."""
    fields: dict[str, Any] = msgspec.to_builtins(event)
    del fields["event"]
    return fields


def event_types() -> tuple[type[_Event], ...]:
    """Every kind of :data:`AnyEvent`, in the union's order."""
    return AnyEvent.__args__


TOPICS: tuple[str, ...] = tuple(str(t.__struct_config__.tag) for t in event_types())
"""Every event topic (each kind's tag)."""
