"""``list_runs``: runs, newest first."""

from __future__ import annotations

from typing import Any

from stratcast.daemon.handlers.context import DaemonContext
from stratcast.shared.protocol import ListRuns, to_builtins


async def handle(d: DaemonContext, req: ListRuns) -> dict[str, Any]:
    """Every run, or those in ``req.states``."""
    return {"runs": to_builtins(d.db.list_runs(req.states))}
