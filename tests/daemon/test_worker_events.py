"""The worker's event lines as the daemon reads them: one typed event per line, a bad line logged and skipped."""

import asyncio
import json
import logging
import sys

import pytest

from stratcast.daemon.executors.local import LocalExecutor, LocalWorker
from stratcast.shared.events import (
    CheckpointSaved,
    MemorySampled,
    PlanChosen,
    ProbeMeasured,
    ProgressReported,
    RanOutOfMemory,
    RunFailed,
    RunFinished,
    RunStopped,
    WarningGiven,
    WorkerEvent,
    WorkerStarted,
    decode_line,
    encode_line,
    event_fields,
)

PROGRESS = ProgressReported(
    step=10,
    max_steps=100,
    epoch=0.5,
    train_loss=0.2,
    val_loss=None,
    best_val_loss=None,
    windows_per_s=900.0,
    eta_s=1.5,
    learning_rate=0.001,
    micro_batch=32,
)
EVERY_KIND: list[WorkerEvent] = [
    WorkerStarted(pid=42, device="cpu", resume=None),
    PlanChosen(
        micro_batch=256,
        batch_size=1024,
        budget=7,
        predicted_peak=6,
        measured_peak=5,
        probes=[ProbeMeasured(micro_batch=64, peak=3)],
        oom_probes=[512],
        source="probe",
        levers=["use bf16"],
        device="cuda:0",
        seconds=0.8,
    ),
    PROGRESS,
    MemorySampled(allocated=1, reserved=2, peak=3, oom_count=0, rss=4),
    CheckpointSaved(path="/r/checkpoints/step-00000010.pt", step=10),
    RanOutOfMemory(
        time=1.5,
        step=11,
        phase="forward/backward",
        old_micro_batch=64,
        new_micro_batch=32,
        allocated=1,
        reserved=2,
        rss=3,
        error="CUDA out of memory",
    ),
    WarningGiven(kind="loss", message="use loss=mse"),
    RunFinished(out="/r/out", metrics={"run": {"steps": 100}}),
    RunStopped(path="/r/checkpoints/step-00000012.pt", step=12),
    RunFailed(exit=3, error="DataError: no rows"),
]


@pytest.mark.parametrize("event", EVERY_KIND, ids=lambda e: type(e).__name__)
def test_every_worker_event_comes_back_from_its_line_as_it_was_sent(event):
    line = encode_line(event)
    assert line.endswith(b"\n") and line.count(b"\n") == 1
    assert decode_line(line) == event
    # the line keeps the format the worker always wrote: the event's name under "event", then its fields
    assert json.loads(line) == {"event": type(event).__struct_config__.tag, **event_fields(event)}


def test_a_nan_loss_goes_as_null_and_comes_back_as_none():
    line = encode_line(ProgressReported(**{**event_fields(PROGRESS), "train_loss": float("nan")}))
    assert json.loads(line)["train_loss"] is None
    event = decode_line(line)
    assert isinstance(event, ProgressReported) and event.train_loss is None


async def watch(lines: list[bytes], run: int, on_event=None):
    """The events a runner hands on from a process that writes ``lines``, and how that process ended."""
    got, ended = [], []

    async def on_exit(run, ending):
        ended.append((run, ending.state))

    runner = LocalExecutor(on_event or (lambda run, event: got.append((run, event))), on_exit)
    script = f"import sys; sys.stdout.buffer.write(bytes.fromhex({b''.join(lines).hex()!r}))"
    proc = await asyncio.create_subprocess_exec(sys.executable, "-c", script, stdout=asyncio.subprocess.PIPE)
    await runner._watch(LocalWorker(run=run, proc=proc, device="cpu"))
    return got, ended


def test_a_bad_worker_line_is_logged_with_its_run_and_skipped_and_the_lines_after_it_still_arrive(caplog):
    bad = [
        b"not json at all\n",
        b"[1, 2]\n",
        b'{"event": "exploded", "step": 1}\n',
        b'{"event": "progress", "step": "ten"}\n',
        b'{"step": 10}\n',
        b'{"event": "heartbeat"}\n',  # a kind only the daemon publishes
        b'{"event": "run_removed"}\n',
    ]
    good = [encode_line(PROGRESS), encode_line(CheckpointSaved(path="/c.pt", step=10))]
    with caplog.at_level(logging.WARNING, logger="stratcastd"):
        got, ended = asyncio.run(watch([good[0], *bad, good[1]], run=7))
    assert got == [(7, PROGRESS), (7, CheckpointSaved(path="/c.pt", step=10))]
    assert ended == [(7, "succeeded")]
    skipped = [r.getMessage() for r in caplog.records if "run 7" in r.getMessage()]
    assert len(skipped) == len(bad) and all("skipped" in message for message in skipped)


def test_a_failure_handling_one_event_is_logged_and_the_runs_ending_still_recorded(caplog):
    seen = []

    def on_event(run, event):
        seen.append(event)
        if isinstance(event, ProgressReported):
            raise KeyError("a bug in the daemon's handling")

    lines = [encode_line(PROGRESS), encode_line(CheckpointSaved(path="/c.pt", step=10))]
    with caplog.at_level(logging.ERROR, logger="stratcastd"):
        _, ended = asyncio.run(watch(lines, run=7, on_event=on_event))
    assert seen == [PROGRESS, CheckpointSaved(path="/c.pt", step=10)]
    assert ended == [(7, "succeeded")]
    assert any("run 7" in r.getMessage() and "ProgressReported" in r.getMessage() for r in caplog.records)
