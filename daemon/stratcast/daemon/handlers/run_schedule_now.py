"""``run_schedule_now`` and timed fires: enqueue a schedule's job, one instance at a time."""

from __future__ import annotations

import logging
import time
from typing import Any

from stratcast.daemon.handlers.common import BadState, HandlerError
from stratcast.daemon.handlers.context import DaemonContext
from stratcast.daemon.handlers.submit import queue_job
from stratcast.shared.events import NoticeGiven, ScheduleUpdated
from stratcast.shared.protocol import RunInfo, RunScheduleNow, to_builtins

log = logging.getLogger("stratcastd")


async def handle(d: DaemonContext, req: RunScheduleNow) -> dict[str, Any]:
    """Enqueue now, outside the timetable."""
    run = await enqueue_from_schedule(d, req.schedule, timed=False)
    return {"run": to_builtins(run)}


async def enqueue_from_schedule(d: DaemonContext, schedule_id: int, *, timed: bool) -> RunInfo | None:
    """Queue the schedule's job unless its previous run still waits or runs.

    A timed fire that cannot enqueue is recorded and skipped (the timetable goes on); ``run_schedule_now``
    raises instead so the user sees why.

    Raises:
        BadState: (not timed) when the previous run is still queued, held or running.
    """
    s = d.db.get_schedule(schedule_id)
    if s.last_run_id is not None:
        try:
            prev = d.db.get_run(s.last_run_id)
        except KeyError:
            prev = None
        if prev is not None and prev.state in ("queued", "held", "running"):
            why = f"schedule {s.id}: its previous run {prev.id} is still {prev.state}; not starting another"
            if not timed:
                raise BadState(why)
            d.db.add_event(prev.id, "schedule_skipped", {"schedule": s.id})
            _after_fire(d, schedule_id, skipped=why)
            return None
    try:
        run = await queue_job(d, s.job, s.placement, schedule=s.id)
    except HandlerError as exc:
        if not timed:
            raise
        _after_fire(d, schedule_id, skipped=f"schedule {s.id}: its job is no longer valid: {exc}")
        return None
    _after_fire(d, schedule_id, run_id=run.id)
    return run


def _after_fire(d: DaemonContext, schedule_id: int, *, run_id: int | None = None, skipped: str = "") -> None:
    fields: dict[str, Any] = {"last_run": time.time(), "next_run": d.timetable.next_run(schedule_id)}
    if run_id is not None:
        fields["last_run_id"] = run_id
    s = d.db.update_schedule(schedule_id, **fields)
    if skipped:
        log.warning(skipped)
        d.publish(NoticeGiven(message=skipped))
    d.publish(ScheduleUpdated(schedule=s))
