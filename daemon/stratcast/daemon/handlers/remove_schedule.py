"""``remove_schedule``: delete a schedule; the runs it made stay."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from stratcast.shared.protocol import RemoveSchedule

if TYPE_CHECKING:
    from stratcast.daemon.server import Daemon


async def handle(d: Daemon, req: RemoveSchedule) -> dict[str, Any]:
    """Stop timing it, then forget it."""
    d.db.get_schedule(req.schedule)
    d.timetable.remove(req.schedule)
    d.db.remove_schedule(req.schedule)
    d.publish("schedule", {"removed": req.schedule})
    return {"removed": req.schedule}
