"""``stop_run``: checkpoint at the next step boundary and exit, freeing the GPU; a queued run is held."""

from __future__ import annotations

from typing import Any

from stratcast.daemon.handlers.common import STOPPING, require
from stratcast.daemon.handlers.context import DaemonContext
from stratcast.shared.protocol import StopRun, to_builtins


async def handle(d: DaemonContext, req: StopRun) -> dict[str, Any]:
    """SIGTERM the worker (it checkpoints and exits: the run becomes ``stopped``); hold a queued run."""
    run = d.db.get_run(req.run)
    require(run, ("running", "queued"), "stop")
    if run.state == "queued":
        return {"run": to_builtins(d.update_run(run.id, state="held", reason="held (stopped before it started)"))}
    d.runner.stop(run.id)
    d.db.add_event(run.id, "stop_requested", {})
    return {"run": to_builtins(d.update_run(run.id, reason=f"stopping: {STOPPING}"))}
