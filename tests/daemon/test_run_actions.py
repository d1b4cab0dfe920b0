"""Run actions on an in-process daemon with a fake runner: what each does to a run's state."""

import asyncio

import pytest

from stratcast.daemon.handlers import resume_run, stop_run
from stratcast.daemon.handlers.common import BadState
from stratcast.shared.protocol import ResumeRun, StopRun
from tests.daemon.fakes import daemon_with, submit


def test_resume_undoes_the_stop_of_a_run_that_had_not_started(tmp_path, monkeypatch):
    d, _ = daemon_with(tmp_path, monkeypatch, [])
    d.db.set_meta("queue_paused", True)  # the run stays queued
    run = submit(d)
    assert asyncio.run(stop_run.handle(d, StopRun(run=run.id)))["run"]["state"] == "held"
    assert asyncio.run(resume_run.handle(d, ResumeRun(run=run.id)))["run"]["state"] == "queued"


def test_an_action_on_a_run_in_the_wrong_state_says_which_states_it_works_on(tmp_path, monkeypatch):
    d, _ = daemon_with(tmp_path, monkeypatch, [])
    run = submit(d)
    d.db.update_run(run.id, state="succeeded")
    with pytest.raises(BadState) as info:
        asyncio.run(stop_run.handle(d, StopRun(run=run.id)))
    assert str(info.value) == f"cannot stop run {run.id}: it is succeeded; stop works on queued or running runs"
