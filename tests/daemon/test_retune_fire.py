"""A re-tuning schedule's firing: its study's name, and a timed firing skipped while its previous study lasts."""

import asyncio
import datetime as dt
import json
import sqlite3

from stratcast.daemon.handlers.run_schedule_now import enqueue_from_schedule, firing_name
from stratcast.shared.protocol import JobSpec, Placement, StudySpec
from tests.daemon.fakes import daemon_with


def retuning(d, name="weekly retune", timezone="Europe/Zurich", **kw):
    spec = StudySpec(models=["mlp"], trials=2, job=JobSpec(data="/x.parquet", model="mlp"), save_as="w", **kw)
    return d.db.add_schedule(
        name=name,
        cron=None,
        every_s=3600,
        timezone=timezone,
        job=spec.job,
        placement=Placement(),
        next_run=None,
        study=spec,
    )


def test_a_firing_is_named_for_its_minute_in_the_schedules_zone_and_never_reuses_a_name(tmp_path, monkeypatch):
    d, _ = daemon_with(tmp_path, monkeypatch, [])
    s = retuning(d, name="weekly retune/EU")
    now = dt.datetime(2026, 12, 7, 0, 30, tzinfo=dt.UTC).timestamp()
    assert firing_name(d, s, now) == "weekly-retune-EU-20261207-0130"  # Zurich is UTC+1 in December
    assert s.study is not None
    d.db.add_study(StudySpec(models=["mlp"], job=s.job, name="weekly-retune-EU-20261207-0130"))
    assert firing_name(d, s, now) == "weekly-retune-EU-20261207-0130-2"
    own = d.db.add_schedule(
        name="ignored",
        cron=None,
        every_s=60,
        timezone="UTC",
        job=s.job,
        placement=Placement(),
        next_run=None,
        study=StudySpec(models=["mlp"], job=s.job, save_as="w", name="nightly"),
    )
    assert firing_name(d, own, now) == "nightly-20261207-0030"  # the study's own name comes first


def test_a_timed_firing_while_the_previous_study_lasts_is_skipped_with_its_reason(tmp_path, monkeypatch, caplog):
    d, _ = daemon_with(tmp_path, monkeypatch, [])
    s = retuning(d)
    assert s.study is not None
    previous = d.db.add_study(s.study)  # running
    d.db.update_schedule(s.id, last_study_id=previous.id)
    assert asyncio.run(enqueue_from_schedule(d, s.id, timed=True)) is None
    assert f"its previous study {previous.id} is still running; not starting another" in caplog.text
    after = d.db.get_schedule(s.id)
    assert after.last_run is not None and after.last_study_id == previous.id  # fired, nothing started
    final = d.db.add_run(s.job, Placement(), runs_dir=d.home.runs, study=previous.id)  # its best, queued
    d.db.update_study(previous.id, state="finished", final_run=final.id)
    assert asyncio.run(enqueue_from_schedule(d, s.id, timed=True)) is None
    assert f"still training its best (run {final.id} is queued)" in caplog.text
    assert [study.id for study in d.db.list_studies()] == [previous.id]
    with sqlite3.connect(d.home.database) as raw:
        rows = raw.execute("SELECT data FROM events WHERE kind = 'schedule_skipped' AND run IS NULL").fetchall()
    assert [json.loads(data) for (data,) in rows] == [{"schedule": s.id, "study": previous.id}] * 2


def test_a_stopped_previous_study_says_how_to_let_it_finish(tmp_path, monkeypatch, caplog):
    d, _ = daemon_with(tmp_path, monkeypatch, [])
    s = retuning(d)
    assert s.study is not None
    previous = d.db.update_study(d.db.add_study(s.study).id, state="stopped")
    d.db.update_schedule(s.id, last_study_id=previous.id)
    assert asyncio.run(enqueue_from_schedule(d, s.id, timed=True)) is None
    assert f"is stopped (`stratcast study resume {previous.id}` lets it finish)" in caplog.text
