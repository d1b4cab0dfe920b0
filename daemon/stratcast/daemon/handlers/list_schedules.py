"""``list_schedules``: every schedule."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from stratcast.shared.protocol import ListSchedules, to_builtins

if TYPE_CHECKING:
    from stratcast.daemon.server import Daemon


async def handle(d: Daemon, req: ListSchedules) -> dict[str, Any]:
    """All schedules with their next and last fire times."""
    return {"schedules": to_builtins(d.db.list_schedules())}
