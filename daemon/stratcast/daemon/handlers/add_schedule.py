"""``add_schedule``: a cron or interval schedule that enqueues a job."""

from __future__ import annotations

import asyncio
import time
from typing import Any

from stratcast.daemon.handlers.context import DaemonContext
from stratcast.daemon.handlers.submit import check_job, check_placement
from stratcast.daemon.schedules import first_fire, make_trigger
from stratcast.shared.events import ScheduleUpdated
from stratcast.shared.protocol import AddSchedule, to_builtins


async def handle(d: DaemonContext, req: AddSchedule) -> dict[str, Any]:
    """Validate the timetable and the job, store the schedule, then start timing it."""
    trigger = make_trigger(req.cron, req.every_s, req.timezone)
    check_placement(d, req.placement)
    async with d.validation:
        await asyncio.to_thread(check_job, req.job, d.home.state)
    s = d.db.add_schedule(
        name=req.name or f"{req.job.saved or req.job.model}-schedule",
        cron=req.cron,
        every_s=req.every_s,
        timezone=req.timezone,
        job=req.job,
        placement=req.placement,
        next_run=first_fire(trigger, time.time()),
    )
    d.timetable.put(s)
    d.publish(ScheduleUpdated(schedule=s))
    return {"schedule": to_builtins(s)}
