"""What the cluster executors' daemon tests share: a small panel, a checkpointing job, its worker, its events."""

from __future__ import annotations

import time
from pathlib import Path

import msgspec
import psutil
import pytest

from stratcast.daemon.engine.data.synthetic import make_strategy_panel
from stratcast.daemon.executors.remote import EVENTS_FILE
from stratcast.shared.client import Client
from stratcast.shared.events import WorkerEvent, WorkerStarted, decode_line
from stratcast.shared.protocol import JobSpec, ShowRun

WAIT_S = 180.0


def small_panel(tmp_path_factory: pytest.TempPathFactory) -> str:
    """A 40-strategy panel of 60 weeks in a temporary folder: its path (a module's ``panel`` fixture)."""
    path = tmp_path_factory.mktemp("data") / "panel.parquet"
    make_strategy_panel(40, 60, seed=3).to_parquet(path, index=False)
    return str(path)


def job(panel: str, steps: int) -> JobSpec:
    sets = [f"max_steps={steps}", "batch_size=64", "val_size=0", "checkpoint_every_s=0.5"]
    return JobSpec(data=panel, model="dlinear", horizon=4, input_size=8, device="cpu", sets=sets)


def worker_process(run_dir: str) -> psutil.Process | None:
    """The worker subprocess of the run folder ``run_dir``, wherever its task or job started it."""
    for p in psutil.process_iter(["cmdline"]):
        cmd = p.info["cmdline"] or []
        if "stratcast.daemon.worker" in cmd and run_dir in cmd:
            return p
    return None


def worker_events(run_dir: str) -> list[WorkerEvent]:
    """The events of every attempt of the run's task or job since the run was last started."""
    path = Path(run_dir) / EVENTS_FILE
    lines = path.read_bytes().splitlines() if path.exists() else []  # the task may not have started yet
    events = []
    for line in lines:
        try:
            events.append(decode_line(line))
        except msgspec.DecodeError:  # an attempt killed mid-line
            continue
    return events


def starts(run_dir: str) -> list[WorkerStarted]:
    """The ``started`` events of every attempt since the run was last started."""
    return [e for e in worker_events(run_dir) if isinstance(e, WorkerStarted)]


def wait_checkpoint(client: Client, run: int, after: int = 0) -> None:
    """Wait until run ``run`` has more than ``after`` checkpoints."""
    deadline = time.monotonic() + WAIT_S
    while len(client.call(ShowRun(run=run))["checkpoints"]) <= after:
        assert time.monotonic() < deadline, f"run {run} wrote no checkpoint in {WAIT_S}s"
        time.sleep(0.2)
