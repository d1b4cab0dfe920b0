"""``release_run``: let a held run start again."""

from __future__ import annotations

from typing import Any

from stratcast.daemon.handlers.common import require
from stratcast.daemon.handlers.context import DaemonContext
from stratcast.shared.protocol import ReleaseRun, to_builtins


async def handle(d: DaemonContext, req: ReleaseRun) -> dict[str, Any]:
    """``held`` -> ``queued``."""
    run = d.db.get_run(req.run)
    require(run, ("held",), "release")
    return {"run": to_builtins(d.update_run(run.id, state="queued", reason="released"))}
