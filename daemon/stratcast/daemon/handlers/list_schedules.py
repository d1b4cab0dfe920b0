"""``list_schedules``: every schedule."""

from __future__ import annotations

from typing import Any

from stratcast.daemon.handlers.context import DaemonContext
from stratcast.shared.protocol import ListSchedules, to_builtins


async def handle(d: DaemonContext, req: ListSchedules) -> dict[str, Any]:
    """All schedules with their next and last fire times."""
    return {"schedules": to_builtins(d.db.list_schedules())}
