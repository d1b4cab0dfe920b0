import sqlite3
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from stratcast.daemon.statedb import SCHEMA_VERSION, StoreError
from stratcast.daemon.store import INTERRUPTED_REASON, NotFound, Store
from stratcast.shared.protocol import JobSpec, Placement, StudySpec


@pytest.fixture
def db(tmp_path: Path) -> Path:
    return tmp_path / "stratcast.db"


@pytest.fixture
def store(db: Path):
    with Store(db) as opened:
        yield opened


def job(**kw) -> JobSpec:
    return JobSpec(data="/data/returns.parquet", **kw)


def add(store: Store, tmp_path: Path, placement: Placement | None = None, **kw):
    return store.add_run(job(**kw), placement or Placement(), runs_dir=tmp_path / "runs", now=100.0)


def add_schedule(store: Store, name: str = "nightly"):
    return store.add_schedule(
        name=name,
        cron="0 2 * * *",
        every_s=None,
        timezone="Europe/London",
        job=job(model="nhits", sets=["lr=0.01"]),
        placement=Placement(priority=2, memory_gib=4.0),
        next_run=500.0,
    )


def test_add_run_round_trips_job_and_placement(store, tmp_path):
    placement = Placement(name="big", priority=3, after=[], gpu=1, memory_gib=6.5)
    run = add(store, tmp_path, placement, model="tide", horizon=13, sets=["lr=0.001", "hidden=64"])
    assert store.get_run(run.id) == run
    assert run.job == job(model="tide", horizon=13, sets=["lr=0.001", "hidden=64"])
    assert run.placement == placement
    assert (run.name, run.state, run.created, run.attempts) == ("big", "queued", 100.0, 0)


def test_add_run_names_the_run_after_its_model_and_id_and_puts_it_under_runs_dir(store, tmp_path):
    first, second = add(store, tmp_path, model="nhits"), add(store, tmp_path)
    assert (first.name, second.name) == (f"nhits-{first.id}", f"dlinear-{second.id}")
    assert first.out == str(tmp_path / "runs" / str(first.id))


def test_a_held_placement_queues_the_run_held(store, tmp_path):
    assert add(store, tmp_path, Placement(hold=True)).state == "held"


def test_run_ids_are_never_reused_after_removal(store, tmp_path):
    ids = [add(store, tmp_path).id for _ in range(3)]
    store.remove_run(ids[2])
    store.remove_run(ids[1])
    assert add(store, tmp_path).id == ids[2] + 1


def test_update_run_changes_only_the_given_fields(store, tmp_path):
    run = add(store, tmp_path)
    new = store.update_run(run.id, state="running", device="cuda:1", pid=4242, attempts=1, progress={"step": 10})
    assert new == store.get_run(run.id)
    assert (new.state, new.device, new.pid, new.attempts, new.progress) == ("running", "cuda:1", 4242, 1, {"step": 10})
    assert (new.job, new.placement, new.name, new.created) == (run.job, run.placement, run.name, run.created)


def test_update_run_records_each_state_change_as_an_event(store, tmp_path):
    run = add(store, tmp_path)
    store.update_run(run.id, state="running", now=101.0)
    store.update_run(run.id, progress={"step": 1})
    store.update_run(run.id, state="failed", reason="exit 1", now=102.0)
    changes = [(e["time"], e["data"]) for e in store.events(run.id) if e["kind"] == "state"]
    assert changes == [
        (100.0, {"to": "queued"}),
        (101.0, {"from": "queued", "to": "running", "reason": ""}),
        (102.0, {"from": "running", "to": "failed", "reason": "exit 1"}),
    ]


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        ({"colour": "red"}, "unknown run field"),
        ({"id": 9}, "unknown run field"),
        ({"state": "paused"}, "unknown run state"),
        ({"attempts": "three"}, "invalid RunInfo"),
        ({"job": {"data": 1}}, "invalid RunInfo"),
    ],
)
def test_update_run_rejects_bad_fields_and_changes_nothing(store, tmp_path, fields, message):
    run = add(store, tmp_path)
    with pytest.raises(ValueError, match=message):
        store.update_run(run.id, **fields)
    assert store.get_run(run.id) == run


def test_update_run_to_a_missing_schedule_is_a_value_error(store, tmp_path):
    run = add(store, tmp_path)
    with pytest.raises(ValueError, match="FOREIGN KEY"):
        store.update_run(run.id, schedule=99)


def test_list_runs_is_newest_first_and_filters_by_state(store, tmp_path):
    a, b, c = (add(store, tmp_path) for _ in range(3))
    store.update_run(b.id, state="running")
    assert [r.id for r in store.list_runs()] == [c.id, b.id, a.id]
    assert [r.id for r in store.list_runs(["queued"])] == [c.id, a.id]
    assert [r.id for r in store.list_runs({"running", "held"})] == [b.id]
    with pytest.raises(ValueError, match="unknown run state"):
        store.list_runs(["done"])


def test_get_runs_returns_the_runs_asked_for_that_still_exist(store, tmp_path):
    runs = [add(store, tmp_path) for _ in range(4)]
    store.remove_run(runs[1].id)
    found = store.get_runs([runs[0].id, runs[1].id, runs[3].id, runs[3].id])
    assert [r.id for r in found] == [runs[3].id, runs[0].id]
    assert store.get_runs([]) == []


def test_not_found_is_a_key_error_that_says_how_to_list(store, tmp_path):
    with pytest.raises(KeyError) as err:
        store.get_run(7)
    assert isinstance(err.value, NotFound)
    assert (err.value.kind, err.value.id) == ("run", 7)
    assert str(err.value) == "no run 7; `stratcast ls` lists runs"
    for call in (lambda: store.update_run(7, state="held"), lambda: store.remove_run(7)):
        with pytest.raises(NotFound, match="no run 7"):
            call()
    with pytest.raises(NotFound, match="no schedule 3; `stratcast schedule ls` lists them"):
        store.get_schedule(3)


def test_events_returns_the_newest_ones_oldest_first(store, tmp_path):
    run = add(store, tmp_path)
    for step in range(5):
        store.add_event(run.id, "checkpoint", {"step": step}, now=200.0 + step)
    events = store.events(run.id, limit=3)
    assert [e["data"] for e in events] == [{"step": 2}, {"step": 3}, {"step": 4}]
    assert events[-1] == {
        "id": events[-1]["id"],
        "time": 204.0,
        "run": run.id,
        "kind": "checkpoint",
        "data": {"step": 4},
    }


def test_add_event_accepts_daemon_events_but_not_unknown_runs(store, tmp_path):
    store.add_event(None, "gpu_lost", {"index": 1})
    with pytest.raises(NotFound):
        store.add_event(5, "oom", {})


def test_removing_a_run_removes_its_events(store, tmp_path):
    run = add(store, tmp_path)
    store.add_event(run.id, "oom", {"batch": 64})
    store.remove_run(run.id)
    assert store.events(run.id) == []


def test_schedules_round_trip_update_and_remove(store):
    schedule = add_schedule(store)
    assert store.get_schedule(schedule.id) == schedule
    assert (schedule.paused, schedule.last_run, schedule.placement.memory_gib) == (False, None, 4.0)
    updated = store.update_schedule(schedule.id, paused=True, next_run=900.0)
    assert updated == store.get_schedule(schedule.id)
    assert (updated.paused, updated.next_run, updated.cron) == (True, 900.0, "0 2 * * *")
    other = add_schedule(store, "hourly")
    assert [s.id for s in store.list_schedules()] == [schedule.id, other.id]
    store.remove_schedule(schedule.id)
    assert [s.id for s in store.list_schedules()] == [other.id]
    with pytest.raises(ValueError, match="unknown schedule field"):
        store.update_schedule(other.id, state="queued")


def test_removing_a_schedule_keeps_its_runs(store, tmp_path):
    schedule = add_schedule(store)
    run = store.add_run(schedule.job, schedule.placement, runs_dir=tmp_path, schedule=schedule.id)
    store.update_schedule(schedule.id, last_run=1.0, last_run_id=run.id)
    store.remove_schedule(schedule.id)
    assert store.get_run(run.id).schedule is None
    with pytest.raises(NotFound, match="no schedule"):
        store.add_run(job(), Placement(), runs_dir=tmp_path, schedule=schedule.id)


def test_removing_a_run_clears_the_schedule_link_to_it(store, tmp_path):
    schedule = add_schedule(store)
    run = store.add_run(schedule.job, schedule.placement, runs_dir=tmp_path, schedule=schedule.id)
    store.update_schedule(schedule.id, last_run_id=run.id)
    store.remove_run(run.id)
    assert store.get_schedule(schedule.id).last_run_id is None


def test_meta_values_round_trip_as_json(store):
    assert store.get_meta("queue_paused", False) is False
    store.set_meta("queue_paused", True)
    store.set_meta("limits", {"cpu_slots": 2, "gpus": [0, 1]})
    assert store.get_meta("queue_paused") is True
    assert store.get_meta("limits") == {"cpu_slots": 2, "gpus": [0, 1]}
    with pytest.raises(ValueError, match="schema_version"):
        store.set_meta("schema_version", 99)


def test_every_change_is_visible_after_reopening_the_file(db, tmp_path):
    with Store(db) as store:
        kept, gone = add(store, tmp_path), add(store, tmp_path)
        store.update_run(kept.id, state="running", pid=11, memory={"peak": 123})
        store.add_event(kept.id, "oom", {"batch": 32})
        store.remove_run(gone.id)
        schedule = add_schedule(store)
        store.set_meta("queue_paused", True)
        expected_runs, expected_events = store.list_runs(), store.events(kept.id)
    with Store(db) as store:
        assert store.list_runs() == expected_runs
        assert store.events(kept.id) == expected_events
        assert store.list_schedules() == [schedule]
        assert store.get_meta("queue_paused") is True
        assert add(store, tmp_path).id == gone.id + 1


def test_the_file_is_in_wal_mode_with_full_sync(db, store):
    raw = sqlite3.connect(db)
    try:
        assert raw.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    finally:
        raw.close()
    assert store._db.execute("PRAGMA synchronous").fetchone()[0] == 2  # FULL
    assert store._db.execute("PRAGMA foreign_keys").fetchone()[0] == 1


def test_recover_marks_running_runs_interrupted_with_an_event(db, tmp_path):
    with Store(db) as store:
        running, queued = add(store, tmp_path), add(store, tmp_path)
        store.update_run(running.id, state="running", device="cuda:0", pid=77)
    with Store(db) as store:
        recovered = store.recover(now=300.0)
        assert [r.id for r in recovered] == [running.id]
        after = store.get_run(running.id)
        assert recovered[0] == after
        assert (after.state, after.reason, after.device, after.pid) == ("interrupted", INTERRUPTED_REASON, "cuda:0", 77)
        assert store.get_run(queued.id).state == "queued"
        assert store.events(running.id)[-1]["data"] == {
            "from": "running",
            "to": "interrupted",
            "reason": INTERRUPTED_REASON,
        }
        assert store.recover() == []


def test_a_corrupt_file_raises_store_error_naming_it_and_is_kept(db):
    db.write_bytes(b"this is not an SQLite database, just some bytes " * 100)
    with pytest.raises(StoreError, match=r"stratcast\.db.*never deletes it: move it away"):
        Store(db)
    assert db.read_bytes().startswith(b"this is not an SQLite database")


def test_a_file_from_a_newer_stratcastd_is_refused(db):
    Store(db).close()
    raw = sqlite3.connect(db)
    with raw:
        raw.execute("UPDATE meta SET value = ? WHERE key = 'schema_version'", (str(SCHEMA_VERSION + 1),))
    raw.close()
    with pytest.raises(StoreError, match=f"schema version {SCHEMA_VERSION + 1}, newer than this stratcastd knows"):
        Store(db)


def test_an_sqlite_file_of_another_program_is_refused(db):
    raw = sqlite3.connect(db)
    with raw:
        raw.execute("CREATE TABLE photos (id INTEGER)")
    raw.close()
    with pytest.raises(StoreError, match="not a stratcast state database"):
        Store(db)


def test_a_missing_folder_raises_store_error(tmp_path):
    with pytest.raises(StoreError, match="cannot use the state database"):
        Store(tmp_path / "nowhere" / "stratcast.db")


def test_a_closed_store_says_so(db):
    store = Store(db)
    store.close()
    store.close()
    with pytest.raises(StoreError, match="is closed"):
        store.list_runs()


def test_another_thread_can_read_the_store(store, tmp_path):
    run = add(store, tmp_path)
    with ThreadPoolExecutor(max_workers=2) as pool:
        found = list(pool.map(store.get_run, [run.id] * 8))
    assert found == [run] * 8


def back_to_version_3(raw: sqlite3.Connection) -> None:
    """Take today's layout back to version 3's: schedules that hold no study."""
    raw.execute("ALTER TABLE schedules DROP COLUMN study")
    raw.execute("ALTER TABLE schedules DROP COLUMN last_study_id")


def test_a_version_1_file_is_migrated_keeping_its_runs(db, tmp_path):
    with Store(db) as store:  # today's layout, taken back to version 1's: no studies, no study or trial columns
        add(store, tmp_path, Placement(name="old-1"))
    raw = sqlite3.connect(db)
    with raw:
        back_to_version_3(raw)
        raw.execute("DROP INDEX runs_study")
        raw.execute("ALTER TABLE runs DROP COLUMN study")
        raw.execute("ALTER TABLE runs DROP COLUMN trial")
        raw.execute("DROP TABLE studies")
        raw.execute("UPDATE meta SET value = '1' WHERE key = 'schema_version'")
    raw.close()
    with Store(db) as store:
        assert store.get_meta("schema_version") == SCHEMA_VERSION == 4
        old = store.get_run(1)
        assert old.name == "old-1" and old.study is None and old.trial is None
        study = store.add_study(StudySpec(models=["mlp"], job=job()))
        run = store.add_run(job(), Placement(), runs_dir=tmp_path, study=study.id, trial=4)
        assert (run.name, run.study, run.trial) == (f"study-{study.id}/t4", study.id, 4)
        assert [r.id for r in store.study_runs(study.id)] == [run.id]
        assert store.get_study(study.id).name == f"stratcast-study-{study.id}"
        store.remove_study(study.id)
        assert store.get_run(run.id).study is None  # the run stays, unlinked
        with pytest.raises(NotFound, match="stratcast studies"):
            store.get_study(study.id)


def test_a_version_2_file_is_migrated_keeping_its_studies(db, tmp_path):
    with Store(db) as store:  # today's layout, taken back to version 2's: no final_run
        study = store.add_study(StudySpec(models=["mlp"], job=job(), name="kept"))
        trial = store.add_run(job(), Placement(), runs_dir=tmp_path, study=study.id, trial=0)
        store.update_study(study.id, state="finished", asked=1)
    raw = sqlite3.connect(db)
    with raw:
        back_to_version_3(raw)
        raw.execute("ALTER TABLE studies DROP COLUMN final_run")
        raw.execute("UPDATE meta SET value = '2' WHERE key = 'schema_version'")
    raw.close()
    with Store(db) as store:
        assert store.get_meta("schema_version") == SCHEMA_VERSION == 4
        old = store.get_study(study.id)
        assert (old.name, old.state, old.asked, old.final_run) == ("kept", "finished", 1, None)
        assert [r.id for r in store.study_runs(study.id)] == [trial.id]
        final = store.add_run(job(), Placement(name=f"study-{study.id}/best"), runs_dir=tmp_path, study=study.id)
        assert store.update_study(study.id, final_run=final.id).final_run == final.id
        store.remove_run(final.id)
        assert store.get_study(study.id).final_run is None  # a removed final run leaves no dangling id


def test_a_version_3_file_is_migrated_keeping_its_schedules(db, tmp_path):
    with Store(db) as store:  # today's layout, taken back to version 3's: schedules hold no study
        old = add_schedule(store)
        run = add(store, tmp_path)
        store.update_schedule(old.id, last_run=600.0, last_run_id=run.id)
    raw = sqlite3.connect(db)
    with raw:
        back_to_version_3(raw)
        raw.execute("UPDATE meta SET value = '3' WHERE key = 'schema_version'")
    raw.close()
    with Store(db) as store:
        assert store.get_meta("schema_version") == SCHEMA_VERSION == 4
        kept = store.get_schedule(old.id)
        assert (kept.name, kept.job, kept.last_run_id, kept.study, kept.last_study_id) == (
            "nightly",
            old.job,
            run.id,
            None,
            None,
        )
        spec = StudySpec(models=["mlp", "nhits"], trials=2, job=job(model="mlp"), save_as="weekly")
        tuning = store.add_schedule(
            name="retune",
            cron=None,
            every_s=7 * 86400,
            timezone="UTC",
            job=spec.job,
            placement=spec.placement,
            next_run=None,
            study=spec,
        )
        study = store.add_study(spec)
        assert store.update_schedule(tuning.id, last_study_id=study.id).last_study_id == study.id
        assert store.get_schedule(tuning.id).study == spec
        store.remove_study(study.id)
        assert store.get_schedule(tuning.id).last_study_id is None  # a removed study leaves no dangling id
        assert [s.study for s in store.list_schedules()] == [None, spec]
