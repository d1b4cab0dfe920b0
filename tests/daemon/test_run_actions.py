"""Run actions on an in-process daemon with a fake runner: what each does to a run's state."""

import asyncio

from stratcast.daemon.handlers import resume_run, stop_run
from stratcast.shared.protocol import ResumeRun, StopRun
from tests.daemon.test_admission import daemon_with, submit


def test_resume_undoes_the_stop_of_a_run_that_had_not_started(tmp_path):
    d, _ = daemon_with(tmp_path, [])
    d.db.set_meta("queue_paused", True)  # the run stays queued
    run = submit(d)
    assert asyncio.run(stop_run.handle(d, StopRun(run=run.id)))["run"]["state"] == "held"
    assert asyncio.run(resume_run.handle(d, ResumeRun(run=run.id)))["run"]["state"] == "queued"
