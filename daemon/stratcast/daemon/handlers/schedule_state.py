"""``pause_schedule`` and ``resume_schedule``: the two halves of one switch."""

from __future__ import annotations

import time
from typing import Any

from stratcast.daemon.handlers.context import DaemonContext
from stratcast.daemon.schedules import first_fire, make_trigger
from stratcast.shared.events import ScheduleUpdated
from stratcast.shared.protocol import PauseSchedule, ResumeSchedule, ScheduleInfo, to_builtins


async def pause(d: DaemonContext, req: PauseSchedule) -> dict[str, Any]:
    """No fires until resumed (missed times while paused are not made up)."""
    return _set(d, d.db.update_schedule(req.schedule, paused=True, next_run=None))


async def resume(d: DaemonContext, req: ResumeSchedule) -> dict[str, Any]:
    """Fire again from the next time on the timetable."""
    s = d.db.get_schedule(req.schedule)
    nxt = first_fire(make_trigger(s.cron, s.every_s, s.timezone), time.time())
    return _set(d, d.db.update_schedule(req.schedule, paused=False, next_run=nxt))


def _set(d: DaemonContext, s: ScheduleInfo) -> dict[str, Any]:
    d.timetable.put(s)
    d.publish(ScheduleUpdated(schedule=s))
    return {"schedule": to_builtins(s)}
