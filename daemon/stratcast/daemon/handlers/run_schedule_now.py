"""``run_schedule_now`` and timed fires: enqueue a schedule's job (or start its study), one instance at a time."""

from __future__ import annotations

import datetime as dt
import logging
import re
import time
from typing import Any
from zoneinfo import ZoneInfo

import msgspec

from stratcast.daemon.handlers.common import BadState, HandlerError
from stratcast.daemon.handlers.context import DaemonContext
from stratcast.daemon.handlers.submit import queue_job
from stratcast.daemon.store import NotFound
from stratcast.daemon.studies import ACTIVE
from stratcast.shared.events import NoticeGiven, ScheduleUpdated
from stratcast.shared.protocol import RunInfo, RunScheduleNow, ScheduleInfo, StudyInfo, to_builtins

log = logging.getLogger("stratcastd")

BUSY = ("queued", "held", "running")
"""Run states in which a schedule's previous run (or study's final run) has not ended."""


async def handle(d: DaemonContext, req: RunScheduleNow) -> dict[str, Any]:
    """Enqueue now (a re-tuning schedule: start its study now), outside the timetable."""
    fired = await enqueue_from_schedule(d, req.schedule, timed=False)
    return {"study" if isinstance(fired, StudyInfo) else "run": to_builtins(fired)}


async def enqueue_from_schedule(d: DaemonContext, schedule_id: int, *, timed: bool) -> RunInfo | StudyInfo | None:
    """Queue the schedule's job unless its previous run still waits or runs (a study: :func:`start_study`).

    A timed fire that cannot enqueue is recorded and skipped (the timetable goes on); ``run_schedule_now``
    raises instead so the user sees why.

    Raises:
        BadState: (not timed) when the previous run is still queued, held or running.
    """
    s = d.db.get_schedule(schedule_id)
    if s.study is not None:
        return await start_study(d, s, timed=timed)
    if s.last_run_id is not None:
        try:
            prev = d.db.get_run(s.last_run_id)
        except KeyError:
            prev = None
        if prev is not None and prev.state in BUSY:
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


async def start_study(d: DaemonContext, s: ScheduleInfo, *, timed: bool) -> StudyInfo | None:
    """Start a re-tuning schedule's study afresh, named for the firing, unless its previous one has not ended.

    The previous study has not ended while it runs or is stopped, or while its final run (the kept best being
    trained and saved) waits or runs.

    Raises:
        BadState: (not timed) when the previous study has not ended.
        HandlerError: (not timed) when the study can no longer start (its data gone, ...).
    """
    assert s.study is not None
    busy = _study_busy(d, s.last_study_id)
    if busy:
        why = f"schedule {s.id}: its previous study {s.last_study_id} {busy}; not starting another"
        if not timed:
            raise BadState(why)
        d.db.add_event(None, "schedule_skipped", {"schedule": s.id, "study": s.last_study_id})
        _after_fire(d, s.id, skipped=why)
        return None
    spec = msgspec.structs.replace(s.study, name=firing_name(d, s, time.time()))
    try:
        info = await d.studies.submit(spec)
    except HandlerError as exc:
        if not timed:
            raise
        _after_fire(d, s.id, skipped=f"schedule {s.id}: its study can no longer start: {exc}")
        return None
    _after_fire(d, s.id, study_id=info.id)
    return info


def _study_busy(d: DaemonContext, study_id: int | None) -> str:
    """How the study has not ended (``is still running``, ...), or ``""`` when it has (or is gone)."""
    if study_id is None:
        return ""
    try:
        prev = d.db.get_study(study_id)
    except NotFound:
        return ""
    if prev.state == "stopped":
        return f"is stopped (`stratcast study resume {prev.id}` lets it finish)"
    if prev.state in ACTIVE:
        return f"is still {prev.state}"
    if prev.final_run is not None:
        try:
            final = d.db.get_run(prev.final_run)
        except NotFound:
            return ""
        if final.state in BUSY:
            return f"is still training its best (run {final.id} is {final.state})"
    return ""


def firing_name(d: DaemonContext, s: ScheduleInfo, now: float) -> str:
    """The Optuna study name of a firing: ``NAME-YYYYMMDD-HHMM`` in the schedule's time zone.

    ``NAME`` is the study's name, else the schedule's (characters an Optuna name here may not hold become ``-``);
    a name that a daemon study of the same storage already has gets ``-2``, ``-3``, ... so a firing never goes on
    with an earlier firing's trials.
    """
    assert s.study is not None
    base = re.sub(r"[^A-Za-z0-9_.-]+", "-", s.study.name or s.name).lstrip(".-")[:80] or f"schedule-{s.id}"
    stamp = dt.datetime.fromtimestamp(now, ZoneInfo(s.timezone)).strftime("%Y%m%d-%H%M")
    name = f"{base}-{stamp}"
    storage = s.study.storage or None
    taken = {other.name for other in d.db.list_studies() if (other.spec.storage or None) == storage}
    chosen, n = name, 2
    while chosen in taken:
        chosen, n = f"{name}-{n}", n + 1
    return chosen


def _after_fire(
    d: DaemonContext, schedule_id: int, *, run_id: int | None = None, study_id: int | None = None, skipped: str = ""
) -> None:
    fields: dict[str, Any] = {"last_run": time.time(), "next_run": d.timetable.next_run(schedule_id)}
    if run_id is not None:
        fields["last_run_id"] = run_id
    if study_id is not None:
        fields["last_study_id"] = study_id
    s = d.db.update_schedule(schedule_id, **fields)
    if skipped:
        log.warning(skipped)
        d.publish(NoticeGiven(message=skipped))
    d.publish(ScheduleUpdated(schedule=s))
