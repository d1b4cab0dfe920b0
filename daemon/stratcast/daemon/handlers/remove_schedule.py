"""``remove_schedule``: delete a schedule; the runs it made stay."""

from __future__ import annotations

from typing import Any

from stratcast.daemon.handlers.context import DaemonContext
from stratcast.shared.events import ScheduleRemoved
from stratcast.shared.protocol import RemoveSchedule


async def handle(d: DaemonContext, req: RemoveSchedule) -> dict[str, Any]:
    """Stop timing it, then forget it."""
    d.db.get_schedule(req.schedule)
    d.timetable.remove(req.schedule)
    d.db.remove_schedule(req.schedule)
    d.publish(ScheduleRemoved(schedule=req.schedule))
    return {"removed": req.schedule}
