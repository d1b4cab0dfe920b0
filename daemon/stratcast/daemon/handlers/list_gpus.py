"""``list_gpus``: each GPU's latest telemetry, with the daemon's runs named."""

from __future__ import annotations

from typing import Any

from stratcast.daemon.handlers.context import DaemonContext
from stratcast.shared.protocol import ListGpus


async def handle(d: DaemonContext, req: ListGpus) -> dict[str, Any]:
    """Latest samples; each process gets the id of the run it belongs to (None: not the daemon's).

    A data-parallel run's other ranks are known by their session: their worker's pid.
    """
    by_pid = {w.pid: run for run, w in d.runner.workers.items() if w.pid is not None}
    gpus = []
    for g in d.telemetry.latest_gpus():
        procs = [{**p, "run": by_pid.get(p["pid"], by_pid.get(p.get("session")))} for p in g.get("processes", [])]
        gpus.append({**g, "processes": procs})
    return {"gpus": gpus, "notice": d.telemetry.notice}
