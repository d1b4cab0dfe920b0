"""``add_schedule``: a cron or interval schedule that enqueues a job, or starts a study (re-tuning)."""

from __future__ import annotations

import asyncio
import time
from typing import Any

from stratcast.daemon.handlers.common import InvalidSpec
from stratcast.daemon.handlers.context import DaemonContext
from stratcast.daemon.handlers.submit import check_job, check_placement
from stratcast.daemon.schedules import first_fire, make_trigger
from stratcast.shared.events import ScheduleUpdated
from stratcast.shared.protocol import AddSchedule, Placement, StudySpec, to_builtins


async def handle(d: DaemonContext, req: AddSchedule) -> dict[str, Any]:
    """Validate the timetable and the job (or the study), store the schedule, then start timing it.

    Raises:
        InvalidSpec: for neither or both of a job and a study, or a re-tuning study that saves nothing.
    """
    trigger = make_trigger(req.cron, req.every_s, req.timezone)
    if (req.job is None) == (req.study is None):
        raise InvalidSpec("give exactly one of a job (a run to enqueue) or a study (to re-tune) to schedule")
    if req.study is not None:
        check_retuning(req.study, req.placement)
        await d.studies.check(req.study)
        job, placement = req.study.job, req.study.placement
        name = req.name or f"{req.study.save_as}-tune"
    else:
        assert req.job is not None
        job, placement = req.job, req.placement
        check_placement(d, placement)
        async with d.validation:
            await asyncio.to_thread(check_job, job, d.home.workspace)
        name = req.name or f"{job.saved or job.model}-schedule"
    s = d.db.add_schedule(
        name=name,
        cron=req.cron,
        every_s=req.every_s,
        timezone=req.timezone,
        job=job,
        placement=placement,
        next_run=first_fire(trigger, time.time()),
        study=req.study,
    )
    d.timetable.put(s)
    d.publish(ScheduleUpdated(schedule=s))
    return {"schedule": to_builtins(s)}


def check_retuning(spec: StudySpec, placement: Placement) -> None:
    """A re-tuning schedule's study saves its kept best as a moving saved model; its trials' placement is its own.

    Raises:
        InvalidSpec: without ``save_as``, with ``keep`` ``none``, or with a placement beside the study's.
    """
    if spec.save_as is None:
        raise InvalidSpec(
            "study.save_as: a re-tuning schedule saves each firing's best as a new version of a saved model; "
            "give --save-as NAME"
        )
    if spec.keep == "none":
        raise InvalidSpec(
            "study.keep: a re-tuning schedule keeps each firing's best (all-data or holdout), not none; "
            "drop --keep none"
        )
    if placement != Placement():
        raise InvalidSpec("placement: a re-tuning schedule's trials are placed by study.placement; give it there")
