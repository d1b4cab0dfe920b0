"""``remove_run``: forget a run that is not running and delete its folder."""

from __future__ import annotations

import asyncio
import shutil
from typing import Any

from stratcast.daemon.handlers.common import BadState
from stratcast.daemon.handlers.context import DaemonContext
from stratcast.shared.events import RunRemoved
from stratcast.shared.protocol import RemoveRun


async def handle(d: DaemonContext, req: RemoveRun) -> dict[str, Any]:
    """Delete the record, then the folder (in a thread: it can be large)."""
    run = d.db.get_run(req.run)
    if run.state == "running":
        raise BadState(f"run {run.id} is running: stop or kill it first")
    d.db.remove_run(run.id)
    d.publish(RunRemoved(), run.id)
    d.kick()
    await asyncio.to_thread(shutil.rmtree, run.out, True)
    return {"removed": run.id}
