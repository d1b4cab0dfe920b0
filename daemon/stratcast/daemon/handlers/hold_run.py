"""``hold_run``: keep a queued run from starting."""

from __future__ import annotations

from typing import Any

from stratcast.daemon.handlers.common import require
from stratcast.daemon.handlers.context import DaemonContext
from stratcast.shared.protocol import HoldRun, to_builtins


async def handle(d: DaemonContext, req: HoldRun) -> dict[str, Any]:
    """``queued`` -> ``held``."""
    run = d.db.get_run(req.run)
    require(run, ("queued",), "hold")
    return {"run": to_builtins(d.update_run(run.id, state="held", reason="held"))}
