"""The worker's events: what a worker tells its daemon, one JSON line each on the worker's stdout.

Each line is one :data:`WorkerEvent`, a msgspec tagged union whose tag, under ``event``, names the kind::

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
    {"event": "finished", "out": "RUN_DIR/out", "metrics": {...the content of metrics.json...}}
    {"event": "stopped", "path": "RUN_DIR/checkpoints/step-00000214.pt", "step": 214}
    {"event": "failed", "exit": 3, "error": "DataError: ..."}

The worker writes them with :func:`encode_event`; the daemon's runner reads each line with :func:`decode_event`
(fields it does not know are ignored, so a newer worker's extra fields do not break an older daemon). When each
event is sent is the worker's business (:mod:`stratcast.daemon.worker`). NaN losses travel as ``null``.

These lines stay inside the daemon: what clients see are the daemon's own PUB events
(:mod:`stratcast.shared.protocol`). This module imports no torch, so the daemon reads events cheaply.
"""

from __future__ import annotations

from typing import Any

import msgspec


class _Event(msgspec.Struct, frozen=True, kw_only=True, tag_field="event"):
    """Base of the worker's events: the tag field is ``event``, as in the lines the worker always wrote.

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
    """The run's memory plan (a :class:`~stratcast.daemon.engine.runplan.RunPlan`), sent on every start and resume.

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
    """A training progress report (a :class:`~stratcast.daemon.engine.trainparts.Progress`)."""

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
    """An out-of-memory error (an :class:`~stratcast.daemon.engine.oom.OomEvent`) and what training did about it.

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
    """Something about the run the user should act on (a :class:`~stratcast.daemon.engine.advice.RunWarning`)."""

    kind: str
    message: str


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
    """The run failed; the worker exits with ``exit`` (a :class:`~stratcast.daemon.worker.WorkerExit`)."""

    exit: int
    error: str
    """The error's first line."""


WorkerEvent = (
    WorkerStarted
    | PlanChosen
    | ProgressReported
    | MemorySampled
    | CheckpointSaved
    | RanOutOfMemory
    | WarningGiven
    | RunFinished
    | RunStopped
    | RunFailed
)
"""Everything a worker tells its daemon."""

_encoder = msgspec.json.Encoder()
_decoder = msgspec.json.Decoder(WorkerEvent)


def encode_event(event: WorkerEvent) -> bytes:
    """``event`` as one JSON line, newline included."""
    return _encoder.encode(event) + b"\n"


def decode_event(line: bytes) -> WorkerEvent:
    """The event of one line.

    Raises:
        msgspec.DecodeError: when the line is not JSON, or not an event of a known kind with valid fields
            (:class:`msgspec.ValidationError` is a subclass).
    """
    return _decoder.decode(line)


def event_kind(event: WorkerEvent) -> str:
    """The event's tag: ``progress``, ``plan``, ... (the name it has in the run's history and events)."""
    return str(event.__struct_config__.tag)


def event_fields(event: WorkerEvent) -> dict[str, Any]:
    """The event's fields as plain JSON values, without its tag: what the daemon stores and publishes."""
    fields: dict[str, Any] = msgspec.to_builtins(event)
    del fields["event"]
    return fields
