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
            return _crontab(cron, tz)
        except ValueError as exc:
            raise ScheduleError(
                f"bad cron expression {cron!r} ({exc}); use five fields: min hour day month weekday"
            ) from None
    assert every_s is not None
    if every_s < 1:
        raise ScheduleError(f"interval must be at least 1 second, got {every_s}")
    return IntervalTrigger(seconds=every_s, timezone=tz)


WEEKDAYS = ("sun", "mon", "tue", "wed", "thu", "fri", "sat", "sun")
"""Crontab weekday numbers (0 and 7 are Sunday) as names: APScheduler numbers weekdays from Monday = 0, so
``CronTrigger.from_crontab("0 22 * * 0")`` would fire on Mondays."""


def _crontab(expr: str, tz: ZoneInfo) -> CronTrigger:
    """A trigger for a five-field crontab expression with crontab's own weekday numbering."""
    fields = expr.split()
    if len(fields) != 5:
        raise ValueError(f"expected 5 fields, got {len(fields)}")
    minute, hour, day, month, weekday = fields
    return CronTrigger(minute=minute, hour=hour, day=day, month=month, day_of_week=_weekdays(weekday), timezone=tz)


def _weekdays(field: str) -> str:
    """Translate a crontab weekday field (``0``, ``1-5``, ``*/2``, ``mon,3``) into APScheduler's names."""
    out = []
    for item in field.split(","):
        base, _, step = item.partition("/")
        if step:
            lo, hi = (0, 6) if base == "*" else _bounds(base)
            out += [WEEKDAYS[d] for d in range(lo, hi + 1, int(step))]
        elif base == "*" or not any(c.isdigit() for c in base):
            out.append(base)  # every day, or names APScheduler reads as they are
        elif "-" in base:  # spelled out: APScheduler's ranges run Monday to Sunday, crontab's from Sunday
            lo, hi = _bounds(base)
            out += [WEEKDAYS[d] for d in range(lo, hi + 1)]
        else:
            out.append(WEEKDAYS[_day(base)])
    return ",".join(out)


def _bounds(text: str) -> tuple[int, int]:
    lo, _, hi = text.partition("-")
    return _day(lo), _day(hi or lo)


def _day(text: str) -> int:
    value = int(text)
    if not 0 <= value <= 7:
        raise ValueError(f"weekday {value} is not between 0 and 7")
    return value


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
