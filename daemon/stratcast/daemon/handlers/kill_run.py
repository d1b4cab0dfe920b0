"""``kill_run``: end a run now, without a checkpoint."""

from __future__ import annotations

import time
from typing import Any

from stratcast.daemon.handlers.common import require
from stratcast.daemon.handlers.context import DaemonContext
from stratcast.shared.protocol import KillRun, to_builtins


async def handle(d: DaemonContext, req: KillRun) -> dict[str, Any]:
    """SIGKILL a running worker (the run ends ``killed`` when it exits); a waiting run is killed at once."""
    run = d.db.get_run(req.run)
    require(run, ("running", "queued", "held", "stopped", "interrupted"), "kill")
    d.db.add_event(run.id, "kill_requested", {})
    if run.state == "running" and d.runner.kill(run.id):
        return {"run": to_builtins(d.update_run(run.id, reason="killing"))}
    return {"run": to_builtins(d.update_run(run.id, state="killed", reason="killed on request", finished=time.time()))}
