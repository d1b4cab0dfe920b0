"""``list_runs``: runs, newest first."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from stratcast.shared.protocol import ListRuns, to_builtins

if TYPE_CHECKING:
    from stratcast.daemon.server import Daemon


async def handle(d: Daemon, req: ListRuns) -> dict[str, Any]:
    """Every run, or those in ``req.states``."""
    return {"runs": to_builtins(d.db.list_runs(req.states))}
