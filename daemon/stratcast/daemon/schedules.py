"""Cron and interval schedules that enqueue runs, on APScheduler 3.x.

The schedules themselves live in the daemon's SQLite store (no pickled jobs anywhere); APScheduler only keeps
time, in memory. At start every schedule is re-added with the next fire time the store remembers, so a time
missed while the daemon was down fires once at start (``coalesce``: several missed times are one run). A fire
only enqueues a run into the daemon's own queue; ``max_instances=1`` and the daemon's own check (no new run while
the schedule's previous run is still queued or running) keep one instance of a schedule at a time.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Awaitable, Callable
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from apscheduler.job import Job
from apscheduler.schedulers.asyncio import AsyncIOScheduler
from apscheduler.triggers.base import BaseTrigger
from apscheduler.triggers.cron import CronTrigger
from apscheduler.triggers.interval import IntervalTrigger

from stratcast.shared.protocol import ScheduleInfo

Fire = Callable[[int], Awaitable[None]]


class ScheduleError(ValueError):
    """A cron expression, interval or time zone that cannot be used; the message says why."""


def make_trigger(cron: str | None, every_s: int | None, timezone: str) -> BaseTrigger:
    """The APScheduler trigger for a schedule.

    Raises:
        ScheduleError: for neither or both of ``cron`` and ``every_s``, a bad expression, a non-positive
            interval or an unknown time zone.
    """
    if (cron is None) == (every_s is None):
        raise ScheduleError("give exactly one of a cron expression (--cron) or an interval (--every)")
    try:
        tz = ZoneInfo(timezone)
    except (ZoneInfoNotFoundError, ValueError):
        raise ScheduleError(f"unknown time zone {timezone!r}; use an IANA name such as Europe/London or UTC") from None
    if cron is not None:
        try:
            return CronTrigger.from_crontab(cron, timezone=tz)
        except ValueError as exc:
            raise ScheduleError(
                f"bad cron expression {cron!r} ({exc}); use five fields: min hour day month weekday"
            ) from None
    assert every_s is not None
    if every_s < 1:
        raise ScheduleError(f"interval must be at least 1 second, got {every_s}")
    return IntervalTrigger(seconds=every_s, timezone=tz)


def first_fire(trigger: BaseTrigger, now: float) -> float | None:
    """The first fire time after ``now`` (epoch seconds)."""
    when = trigger.get_next_fire_time(None, dt.datetime.fromtimestamp(now, dt.UTC))
    return None if when is None else when.timestamp()


class Timetable:
    """The daemon's APScheduler: one job per schedule, each firing ``fire(schedule_id)``."""

    def __init__(self, fire: Fire) -> None:
        self.fire = fire
        self.scheduler = AsyncIOScheduler(timezone=dt.UTC)

    def start(self) -> None:
        """Start firing (call inside the running event loop)."""
        self.scheduler.start()

    def shutdown(self) -> None:
        """Stop firing."""
        if self.scheduler.running:
            self.scheduler.shutdown(wait=False)

    def put(self, s: ScheduleInfo) -> None:
        """Add or replace the job of schedule ``s``, due at its remembered ``next_run`` (missed: fires now)."""
        trigger = make_trigger(s.cron, s.every_s, s.timezone)
        self.remove(s.id)
        kwargs: dict[str, dt.datetime | None] = {}
        if s.paused:
            kwargs["next_run_time"] = None
        elif s.next_run is not None:
            kwargs["next_run_time"] = dt.datetime.fromtimestamp(s.next_run, dt.UTC)
        self.scheduler.add_job(
            self.fire,
            trigger,
            args=[s.id],
            id=str(s.id),
            coalesce=True,
            max_instances=1,
            misfire_grace_time=None,
            replace_existing=True,
            **kwargs,
        )

    def remove(self, schedule_id: int) -> None:
        """Forget the job of a schedule, if there is one."""
        if self.scheduler.get_job(str(schedule_id)) is not None:
            self.scheduler.remove_job(str(schedule_id))

    def next_run(self, schedule_id: int) -> float | None:
        """When the schedule fires next (epoch seconds), None when paused or unknown."""
        job: Job | None = self.scheduler.get_job(str(schedule_id))
        when = None if job is None else job.next_run_time
        return None if when is None else when.timestamp()
