"""The daemon's durable state: runs, schedules, their event history and daemon settings.

:class:`Store` is what the daemon and its handlers call: add, read, change and remove runs and schedules, append
and count a run's events, keep settings, and :meth:`Store.recover` after a crash. Every mutating method commits
before it returns, and a commit is on disk when it returns, so the daemon may announce a state change as soon as
the call is back. The file under it (tables, pragmas, schema version, transactions, rows to protocol structs) is
:mod:`stratcast.daemon.statedb`'s.

The daemon uses the store from its event-loop thread; every call holds one lock, so a thread executor may read
(or write) too.
"""

from __future__ import annotations

import sqlite3
import time
from collections.abc import Collection
from pathlib import Path
from typing import Any

import msgspec

from stratcast.daemon.statedb import (
    RUN_COLUMNS,
    RUN_JSON,
    SCHEDULE_COLUMNS,
    SCHEDULE_JSON,
    STUDY_COLUMNS,
    STUDY_JSON,
    StateFile,
    check_fields,
    check_states,
    encode,
    rowid,
    run_from_row,
    schedule_from_row,
    study_from_row,
    update_row,
    validated,
    write_meta,
)
from stratcast.shared.protocol import JobSpec, Placement, RunInfo, ScheduleInfo, StudyInfo, StudySpec

INTERRUPTED_REASON = "the daemon stopped while it ran"
"""Reason given to runs that :meth:`Store.recover` marks ``interrupted``."""


class NotFound(KeyError):
    """No run (or schedule) with this id.

    Attributes:
        kind: ``"run"`` or ``"schedule"``.
        id: The id asked for.
    """

    def __init__(self, kind: str, id: int) -> None:
        super().__init__(kind, id)
        self.kind = kind
        self.id = id

    def __str__(self) -> str:
        listers = {"run": "`stratcast ls` lists runs", "study": "`stratcast studies` lists studies"}
        lister = listers.get(self.kind, f"`stratcast {self.kind} ls` lists them")
        return f"no {self.kind} {self.id}; {lister}"


class Store(StateFile):
    """Runs, schedules, events and settings of one daemon, durable at every commit.

    Args:
        path: The SQLite file (created when missing; its folder must exist).

    Raises:
        StoreError: when the file cannot be opened, is not a stratcast database, is corrupt, or has a newer
            schema than this code knows. The daemon never deletes the file; the message says what to do.
    """

    # -- runs ------------------------------------------------------------------------------------------------

    def add_run(
        self,
        job: JobSpec,
        placement: Placement,
        *,
        runs_dir: Path,
        schedule: int | None = None,
        study: int | None = None,
        trial: int | None = None,
        now: float | None = None,
    ) -> RunInfo:
        """Queue a new run (``held`` when ``placement.hold``); returns it with its id, name and folder.

        A study's trial (``study`` and ``trial``) is named ``study-ID/tN`` unless the placement names it.

        Raises:
            NotFound: when ``schedule`` or ``study`` names no schedule or study.
        """
        state = "held" if placement.hold else "queued"
        created = time.time() if now is None else now
        with self._tx() as db:
            if schedule is not None:
                self._require(db, "schedule", schedule)
            if study is not None:
                self._require(db, "study", study)
            cur = db.execute(
                "INSERT INTO runs (name, state, reason, job, placement, created, attempts, exit, progress, memory,"
                " schedule, out, study, trial) VALUES ('', ?, '', ?, ?, ?, 0, '', '{}', '{}', ?, '', ?, ?)",
                (state, encode(job), encode(placement), created, schedule, study, trial),
            )
            run_id = rowid(cur)
            default = f"study-{study}/t{trial}" if study is not None else f"{job.saved or job.model}-{run_id}"
            name = placement.name or default
            db.execute("UPDATE runs SET name = ?, out = ? WHERE id = ?", (name, str(runs_dir / str(run_id)), run_id))
            self._event(db, run_id, "state", {"to": state}, created)
            return self._run(db, run_id)

    def get_run(self, run_id: int) -> RunInfo:
        """The run ``run_id``.

        Raises:
            NotFound: when there is no such run.
        """
        with self._tx() as db:
            return self._run(db, run_id)

    def list_runs(self, states: Collection[str] = ()) -> list[RunInfo]:
        """Runs, newest first; only those in ``states`` when it is not empty.

        Raises:
            ValueError: for a state that does not exist.
        """
        check_states(states)
        query, args = "SELECT * FROM runs", list(states)
        if args:
            query += f" WHERE state IN ({', '.join('?' * len(args))})"
        with self._tx() as db:
            rows = db.execute(query + " ORDER BY id DESC", args).fetchall()
        return [run_from_row(row) for row in rows]

    def get_runs(self, run_ids: Collection[int]) -> list[RunInfo]:
        """The runs of ``run_ids`` that exist, newest first (removed ones are left out)."""
        ids = sorted(set(run_ids))
        if not ids:
            return []
        with self._tx() as db:
            query = f"SELECT * FROM runs WHERE id IN ({', '.join('?' * len(ids))}) ORDER BY id DESC"
            rows = db.execute(query, ids).fetchall()
        return [run_from_row(row) for row in rows]

    def update_run(self, run_id: int, *, now: float | None = None, **fields: Any) -> RunInfo:
        """Change some fields of a run and return it; a change of ``state`` is also recorded as an event.

        Args:
            run_id: The run to change.
            now: Time of the state-change event (default: now).
            **fields: New values by :class:`~stratcast.shared.protocol.RunInfo` field name (not ``id``).

        Raises:
            NotFound: when there is no such run.
            ValueError: for an unknown field, an unknown state, or a value of the wrong type.
        """
        check_fields(fields, RUN_COLUMNS, "run")
        with self._tx() as db:
            old = self._run(db, run_id)
            new = validated(msgspec.structs.replace(old, **fields), RunInfo)
            update_row(db, "runs", run_id, {name: getattr(new, name) for name in fields}, RUN_JSON)
            if new.state != old.state:
                change = {"from": old.state, "to": new.state, "reason": new.reason}
                self._event(db, run_id, "state", change, time.time() if now is None else now)
            return new

    def remove_run(self, run_id: int) -> None:
        """Forget a run and its events (schedules that last enqueued it keep no link to it).

        Raises:
            NotFound: when there is no such run.
        """
        with self._tx() as db:
            if db.execute("DELETE FROM runs WHERE id = ?", (run_id,)).rowcount == 0:
                raise NotFound("run", run_id)

    def recover(self, now: float | None = None) -> list[RunInfo]:
        """After a daemon restart, mark every ``running`` run ``interrupted`` (with an event); returns them.

        ``pid`` and ``device`` are kept, so the daemon can look for a worker that outlived it.
        """
        when = time.time() if now is None else now
        with self._tx() as db:
            ids = [row["id"] for row in db.execute("SELECT id FROM runs WHERE state = 'running' ORDER BY id")]
            for run_id in ids:
                db.execute(
                    "UPDATE runs SET state = 'interrupted', reason = ? WHERE id = ?", (INTERRUPTED_REASON, run_id)
                )
                change = {"from": "running", "to": "interrupted", "reason": INTERRUPTED_REASON}
                self._event(db, run_id, "state", change, when)
            return [self._run(db, run_id) for run_id in ids]

    # -- events ----------------------------------------------------------------------------------------------

    def add_event(self, run: int | None, kind: str, data: dict[str, Any], *, now: float | None = None) -> None:
        """Append an event to ``run``'s history (``None``: a daemon-wide event).

        Raises:
            NotFound: when ``run`` names no run.
        """
        with self._tx() as db:
            if run is not None:
                self._require(db, "run", run)
            self._event(db, run, kind, data, time.time() if now is None else now)

    def events(self, run: int, limit: int = 200) -> list[dict[str, Any]]:
        """The newest ``limit`` events of ``run``, oldest first (none for an unknown run).

        Each is a dict with ``id``, ``time``, ``run``, ``kind`` and ``data``.
        """
        with self._tx() as db:
            rows = db.execute(
                "SELECT * FROM (SELECT * FROM events WHERE run = ? ORDER BY id DESC LIMIT ?) ORDER BY id",
                (run, limit),
            ).fetchall()
        return [{**dict(row), "data": msgspec.json.decode(row["data"])} for row in rows]

    def count_events(self, run: int, kind: str, *, since: Collection[str] = (), **data: str) -> int:
        """How many events of ``kind`` ``run`` has whose data holds each of ``data``'s values.

        ``since``: count only those after the run's last event of one of these kinds.
        """
        query, args = "SELECT COUNT(*) FROM events WHERE run = ? AND kind = ?", [run, kind]
        if since:
            marks = ", ".join("?" * len(since))
            query += f" AND id > COALESCE((SELECT MAX(id) FROM events WHERE run = ? AND kind IN ({marks})), 0)"
            args += [run, *since]
        for key, value in data.items():
            query += " AND json_extract(data, ?) = ?"
            args += [f"$.{key}", value]
        with self._tx() as db:
            count: int = db.execute(query, args).fetchone()[0]
        return count

    # -- schedules -------------------------------------------------------------------------------------------

    def add_schedule(
        self,
        *,
        name: str,
        cron: str | None,
        every_s: int | None,
        timezone: str,
        job: JobSpec,
        placement: Placement,
        next_run: float | None,
        study: StudySpec | None = None,
    ) -> ScheduleInfo:
        """Record a new schedule (not paused, never run yet) and return it with its id.

        ``study``: a re-tuning schedule's study (``job`` and ``placement`` are then its own).
        """
        with self._tx() as db:
            cur = db.execute(
                "INSERT INTO schedules (name, cron, every_s, timezone, job, placement, next_run, study)"
                " VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                (
                    name,
                    cron,
                    every_s,
                    timezone,
                    encode(job),
                    encode(placement),
                    next_run,
                    None if study is None else encode(study),
                ),
            )
            return self._schedule(db, rowid(cur))

    def get_schedule(self, schedule_id: int) -> ScheduleInfo:
        """The schedule ``schedule_id``.

        Raises:
            NotFound: when there is no such schedule.
        """
        with self._tx() as db:
            return self._schedule(db, schedule_id)

    def list_schedules(self) -> list[ScheduleInfo]:
        """Every schedule, oldest first."""
        with self._tx() as db:
            rows = db.execute("SELECT * FROM schedules ORDER BY id").fetchall()
        return [schedule_from_row(row) for row in rows]

    def update_schedule(self, schedule_id: int, **fields: Any) -> ScheduleInfo:
        """Change some fields of a schedule and return it.

        Raises:
            NotFound: when there is no such schedule.
            ValueError: for an unknown field or a value of the wrong type.
        """
        check_fields(fields, SCHEDULE_COLUMNS, "schedule")
        with self._tx() as db:
            new = validated(msgspec.structs.replace(self._schedule(db, schedule_id), **fields), ScheduleInfo)
            update_row(db, "schedules", schedule_id, {name: getattr(new, name) for name in fields}, SCHEDULE_JSON)
            return new

    def remove_schedule(self, schedule_id: int) -> None:
        """Delete a schedule; the runs it enqueued stay.

        Raises:
            NotFound: when there is no such schedule.
        """
        with self._tx() as db:
            if db.execute("DELETE FROM schedules WHERE id = ?", (schedule_id,)).rowcount == 0:
                raise NotFound("schedule", schedule_id)

    # -- studies ---------------------------------------------------------------------------------------------

    def add_study(self, spec: StudySpec, *, now: float | None = None) -> StudyInfo:
        """Record a new study, running, none of its trials asked yet; named ``spec.name`` or ``stratcast-study-ID``."""
        created = time.time() if now is None else now
        with self._tx() as db:
            cur = db.execute(
                "INSERT INTO studies (name, state, reason, spec, created, asked, elapsed_s, active_since)"
                " VALUES ('', 'running', '', ?, ?, 0, 0.0, ?)",
                (encode(spec), created, created),
            )
            study_id = rowid(cur)
            db.execute(
                "UPDATE studies SET name = ? WHERE id = ?", (spec.name or f"stratcast-study-{study_id}", study_id)
            )
            return self._study(db, study_id)

    def get_study(self, study_id: int) -> StudyInfo:
        """The study ``study_id``.

        Raises:
            NotFound: when there is no such study.
        """
        with self._tx() as db:
            return self._study(db, study_id)

    def list_studies(self) -> list[StudyInfo]:
        """Every study, newest first."""
        with self._tx() as db:
            rows = db.execute("SELECT * FROM studies ORDER BY id DESC").fetchall()
        return [study_from_row(row) for row in rows]

    def update_study(self, study_id: int, **fields: Any) -> StudyInfo:
        """Change some fields of a study and return it.

        Raises:
            NotFound: when there is no such study.
            ValueError: for an unknown field or a value of the wrong type.
        """
        unknown = sorted(set(fields) - set(STUDY_COLUMNS))
        if unknown:
            raise ValueError(f"unknown study field(s) {', '.join(unknown)}; fields: {', '.join(STUDY_COLUMNS)}")
        with self._tx() as db:
            new = validated(msgspec.structs.replace(self._study(db, study_id), **fields), StudyInfo)
            update_row(db, "studies", study_id, {name: getattr(new, name) for name in fields}, STUDY_JSON)
            return new

    def remove_study(self, study_id: int) -> None:
        """Forget a study (its runs stay, no longer linked; its Optuna storage is left alone).

        Raises:
            NotFound: when there is no such study.
        """
        with self._tx() as db:
            if db.execute("DELETE FROM studies WHERE id = ?", (study_id,)).rowcount == 0:
                raise NotFound("study", study_id)

    def study_runs(self, study_id: int) -> list[RunInfo]:
        """The runs of a study's trials, oldest first."""
        with self._tx() as db:
            rows = db.execute("SELECT * FROM runs WHERE study = ? ORDER BY id", (study_id,)).fetchall()
        return [run_from_row(row) for row in rows]

    # -- settings --------------------------------------------------------------------------------------------

    def get_meta(self, key: str, default: Any = None) -> Any:
        """The JSON value stored under ``key``, or ``default``."""
        with self._tx() as db:
            row = db.execute("SELECT value FROM meta WHERE key = ?", (key,)).fetchone()
        return default if row is None else msgspec.json.decode(row["value"])

    def set_meta(self, key: str, value: Any) -> None:
        """Store a JSON-encodable ``value`` under ``key``.

        Raises:
            ValueError: for ``schema_version``, which only the store itself writes.
        """
        if key == "schema_version":
            raise ValueError("schema_version is managed by the store and cannot be set")
        with self._tx() as db:
            write_meta(db, key, value)

    # -- internals -------------------------------------------------------------------------------------------

    def _run(self, db: sqlite3.Connection, run_id: int) -> RunInfo:
        row = db.execute("SELECT * FROM runs WHERE id = ?", (run_id,)).fetchone()
        if row is None:
            raise NotFound("run", run_id)
        return run_from_row(row)

    def _study(self, db: sqlite3.Connection, study_id: int) -> StudyInfo:
        row = db.execute("SELECT * FROM studies WHERE id = ?", (study_id,)).fetchone()
        if row is None:
            raise NotFound("study", study_id)
        return study_from_row(row)

    def _schedule(self, db: sqlite3.Connection, schedule_id: int) -> ScheduleInfo:
        row = db.execute("SELECT * FROM schedules WHERE id = ?", (schedule_id,)).fetchone()
        if row is None:
            raise NotFound("schedule", schedule_id)
        return schedule_from_row(row)

    @staticmethod
    def _require(db: sqlite3.Connection, kind: str, row_id: int) -> None:
        """Raise NotFound unless the row exists (``kind`` is ``run``, ``schedule`` or ``study``)."""
        table = "studies" if kind == "study" else f"{kind}s"
        if db.execute(f"SELECT 1 FROM {table} WHERE id = ?", (row_id,)).fetchone() is None:
            raise NotFound(kind, row_id)

    @staticmethod
    def _event(db: sqlite3.Connection, run: int | None, kind: str, data: dict[str, Any], when: float) -> None:
        db.execute("INSERT INTO events (time, run, kind, data) VALUES (?, ?, ?, ?)", (when, run, kind, encode(data)))
