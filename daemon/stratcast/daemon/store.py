"""The daemon's durable state: runs, schedules, their event history and daemon settings, in one SQLite file.

The file is opened in WAL mode with ``synchronous=FULL``: every mutating method commits before it returns, and a
commit is on disk when it returns, so the daemon may announce a state change as soon as the call is back. Four
tables:

* ``runs``: one row per run (:class:`~stratcast.shared.protocol.RunInfo`); ids come from ``AUTOINCREMENT`` and
  are never reused, even after a run is removed.
* ``schedules``: one row per schedule (:class:`~stratcast.shared.protocol.ScheduleInfo`).
* ``events``: an append-only history per run (state changes, OOMs, checkpoints), removed with its run.
* ``meta``: JSON values by key: ``schema_version``, ``queue_paused``, ...

Structured columns (a run's job, placement, progress, memory; an event's data) hold JSON written and read with
msgspec, and every row read back is validated into its protocol struct.

The daemon uses the store from its event-loop thread; the connection is opened with ``check_same_thread=False``
and every call holds one lock, so a thread executor may read (or write) too.
"""

from __future__ import annotations

import sqlite3
import threading
import time
from collections.abc import Collection, Iterator
from contextlib import contextmanager
from pathlib import Path
from types import TracebackType
from typing import Any, TypeVar

import msgspec

from stratcast.shared.protocol import RUN_STATES, JobSpec, Placement, RunInfo, ScheduleInfo

SCHEMA_VERSION = 1
"""Version of the table layout below; a file with a newer one is refused."""
INTERRUPTED_REASON = "the daemon stopped while it ran"
"""Reason given to runs that :meth:`Store.recover` marks ``interrupted``."""

_SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS schedules (
    id INTEGER PRIMARY KEY AUTOINCREMENT, name TEXT NOT NULL, cron TEXT, every_s INTEGER,
    timezone TEXT NOT NULL, job TEXT NOT NULL, placement TEXT NOT NULL, paused INTEGER NOT NULL DEFAULT 0,
    next_run REAL, last_run REAL, last_run_id INTEGER REFERENCES runs(id) ON DELETE SET NULL
);
CREATE TABLE IF NOT EXISTS runs (
    id INTEGER PRIMARY KEY AUTOINCREMENT, name TEXT NOT NULL, state TEXT NOT NULL, reason TEXT NOT NULL,
    job TEXT NOT NULL, placement TEXT NOT NULL, created REAL NOT NULL, started REAL, finished REAL,
    device TEXT, pid INTEGER, attempts INTEGER NOT NULL, exit TEXT NOT NULL, checkpoint TEXT,
    progress TEXT NOT NULL, memory TEXT NOT NULL,
    schedule INTEGER REFERENCES schedules(id) ON DELETE SET NULL, out TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS runs_state ON runs(state);
CREATE TABLE IF NOT EXISTS events (
    id INTEGER PRIMARY KEY AUTOINCREMENT, time REAL NOT NULL,
    run INTEGER REFERENCES runs(id) ON DELETE CASCADE, kind TEXT NOT NULL, data TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS events_run ON events(run, id);
"""
_RUN_COLUMNS = tuple(f for f in RunInfo.__struct_fields__ if f != "id")
_SCHEDULE_COLUMNS = tuple(f for f in ScheduleInfo.__struct_fields__ if f != "id")
_RUN_JSON = frozenset({"job", "placement", "progress", "memory"})
_SCHEDULE_JSON = frozenset({"job", "placement"})
_encoder = msgspec.json.Encoder()
_T = TypeVar("_T")


class StoreError(RuntimeError):
    """The state file cannot be used: unreadable, corrupt, or written by a newer stratcastd."""


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
        lister = "`stratcast ls` lists runs" if self.kind == "run" else f"`stratcast {self.kind} ls` lists them"
        return f"no {self.kind} {self.id}; {lister}"


class Store:
    """Runs, schedules, events and settings of one daemon, durable at every commit.

    Args:
        path: The SQLite file (created when missing; its folder must exist).

    Raises:
        StoreError: when the file cannot be opened, is not a stratcast database, is corrupt, or has a newer
            schema than this code knows. The daemon never deletes the file; the message says what to do.
    """

    def __init__(self, path: Path) -> None:
        self.path = path
        self._lock = threading.Lock()
        self._closed = False
        try:
            self._db = sqlite3.connect(path, check_same_thread=False, isolation_level=None)
        except sqlite3.Error as exc:
            raise self._error(exc) from None
        self._db.row_factory = sqlite3.Row
        try:
            self._open()
        except BaseException:
            self._db.close()
            raise

    # -- runs ------------------------------------------------------------------------------------------------

    def add_run(
        self,
        job: JobSpec,
        placement: Placement,
        *,
        runs_dir: Path,
        schedule: int | None = None,
        now: float | None = None,
    ) -> RunInfo:
        """Queue a new run (``held`` when ``placement.hold``); returns it with its id, name and folder.

        Raises:
            NotFound: when ``schedule`` names no schedule.
        """
        state = "held" if placement.hold else "queued"
        created = time.time() if now is None else now
        with self._tx() as db:
            if schedule is not None:
                self._require(db, "schedule", schedule)
            cur = db.execute(
                "INSERT INTO runs (name, state, reason, job, placement, created, attempts, exit, progress, memory,"
                " schedule, out) VALUES ('', ?, '', ?, ?, ?, 0, '', '{}', '{}', ?, '')",
                (state, _encoder.encode(job), _encoder.encode(placement), created, schedule),
            )
            run_id = _rowid(cur)
            name = placement.name or f"{job.model}-{run_id}"
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
        _check_states(states)
        query, args = "SELECT * FROM runs", list(states)
        if args:
            query += f" WHERE state IN ({', '.join('?' * len(args))})"
        with self._tx() as db:
            rows = db.execute(query + " ORDER BY id DESC", args).fetchall()
        return [_run_from_row(row) for row in rows]

    def get_runs(self, run_ids: Collection[int]) -> list[RunInfo]:
        """The runs of ``run_ids`` that exist, newest first (removed ones are left out)."""
        ids = sorted(set(run_ids))
        if not ids:
            return []
        with self._tx() as db:
            query = f"SELECT * FROM runs WHERE id IN ({', '.join('?' * len(ids))}) ORDER BY id DESC"
            rows = db.execute(query, ids).fetchall()
        return [_run_from_row(row) for row in rows]

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
        _check_fields(fields, _RUN_COLUMNS, "run")
        with self._tx() as db:
            old = self._run(db, run_id)
            new = _validated(msgspec.structs.replace(old, **fields), RunInfo)
            _update(db, "runs", run_id, {name: getattr(new, name) for name in fields}, _RUN_JSON)
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
    ) -> ScheduleInfo:
        """Record a new schedule (not paused, never run yet) and return it with its id."""
        with self._tx() as db:
            cur = db.execute(
                "INSERT INTO schedules (name, cron, every_s, timezone, job, placement, next_run)"
                " VALUES (?, ?, ?, ?, ?, ?, ?)",
                (name, cron, every_s, timezone, _encoder.encode(job), _encoder.encode(placement), next_run),
            )
            return self._schedule(db, _rowid(cur))

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
        return [_schedule_from_row(row) for row in rows]

    def update_schedule(self, schedule_id: int, **fields: Any) -> ScheduleInfo:
        """Change some fields of a schedule and return it.

        Raises:
            NotFound: when there is no such schedule.
            ValueError: for an unknown field or a value of the wrong type.
        """
        _check_fields(fields, _SCHEDULE_COLUMNS, "schedule")
        with self._tx() as db:
            new = _validated(msgspec.structs.replace(self._schedule(db, schedule_id), **fields), ScheduleInfo)
            _update(db, "schedules", schedule_id, {name: getattr(new, name) for name in fields}, _SCHEDULE_JSON)
            return new

    def remove_schedule(self, schedule_id: int) -> None:
        """Delete a schedule; the runs it enqueued stay.

        Raises:
            NotFound: when there is no such schedule.
        """
        with self._tx() as db:
            if db.execute("DELETE FROM schedules WHERE id = ?", (schedule_id,)).rowcount == 0:
                raise NotFound("schedule", schedule_id)

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
            _set_meta(db, key, value)

    # -- lifetime --------------------------------------------------------------------------------------------

    def close(self) -> None:
        """Close the file (every change is already committed); closing twice is harmless."""
        with self._lock:
            self._db.close()
            self._closed = True

    def __enter__(self) -> Store:
        return self

    def __exit__(self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None) -> None:
        self.close()

    # -- internals -------------------------------------------------------------------------------------------

    def _open(self) -> None:
        """Set the pragmas, check what the file holds, create the tables of a new file."""
        with self._tx(begin=False) as db:
            mode = db.execute("PRAGMA journal_mode = WAL").fetchone()[0]
            if mode != "wal":
                raise StoreError(f"state database {self.path} cannot use WAL mode (got {mode!r})")
            db.execute("PRAGMA synchronous = FULL")
            db.execute("PRAGMA foreign_keys = ON")
            db.execute("PRAGMA busy_timeout = 5000")
        with self._tx() as db:
            version = self._schema_version(db)
            if version is None:
                for statement in filter(str.strip, _SCHEMA.split(";")):
                    db.execute(statement)
                _set_meta(db, "schema_version", SCHEMA_VERSION)

    def _schema_version(self, db: sqlite3.Connection) -> int | None:
        """The file's schema version; None for an empty file."""
        tables = {row[0] for row in db.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
        if not tables:
            return None
        row = db.execute("SELECT value FROM meta WHERE key = 'schema_version'").fetchone() if "meta" in tables else None
        if row is None:
            raise StoreError(
                f"{self.path} is an SQLite file but not a stratcast state database; move it away or use another --home"
            )
        version = int(msgspec.json.decode(row[0]))
        if version > SCHEMA_VERSION:
            raise StoreError(
                f"state database {self.path} has schema version {version}, newer than this stratcastd knows "
                f"({SCHEMA_VERSION}); upgrade stratcast, or move the file away to start with an empty state"
            )
        return version

    @contextmanager
    def _tx(self, *, begin: bool = True) -> Iterator[sqlite3.Connection]:
        """Hold the lock for one transaction: commit on success, roll back on error.

        A constraint violation (such as a link to a missing schedule) becomes a ValueError; other SQLite failures
        become a :class:`StoreError` naming the file.
        """
        with self._lock:
            if self._closed:
                raise StoreError(f"state database {self.path} is closed")
            try:
                if begin:
                    self._db.execute("BEGIN IMMEDIATE")
                try:
                    yield self._db
                except BaseException:
                    if self._db.in_transaction:
                        self._db.rollback()
                    raise
                if self._db.in_transaction:
                    self._db.commit()
            except sqlite3.IntegrityError as exc:
                raise ValueError(f"the change breaks a rule of the state database: {exc}") from None
            except sqlite3.Error as exc:
                raise self._error(exc) from None

    def _error(self, exc: sqlite3.Error) -> StoreError:
        """A StoreError for an SQLite failure on this file, saying what to do."""
        if isinstance(exc, sqlite3.OperationalError):
            return StoreError(f"cannot use the state database {self.path}: {exc}")
        return StoreError(
            f"state database {self.path} is unreadable ({exc}); stratcastd never deletes it: "
            f"move it away (e.g. `mv {self.path} {self.path}.broken`) and start again with an empty state"
        )

    def _run(self, db: sqlite3.Connection, run_id: int) -> RunInfo:
        row = db.execute("SELECT * FROM runs WHERE id = ?", (run_id,)).fetchone()
        if row is None:
            raise NotFound("run", run_id)
        return _run_from_row(row)

    def _schedule(self, db: sqlite3.Connection, schedule_id: int) -> ScheduleInfo:
        row = db.execute("SELECT * FROM schedules WHERE id = ?", (schedule_id,)).fetchone()
        if row is None:
            raise NotFound("schedule", schedule_id)
        return _schedule_from_row(row)

    @staticmethod
    def _require(db: sqlite3.Connection, kind: str, row_id: int) -> None:
        """Raise NotFound unless the row exists (``kind`` is ``run`` or ``schedule``: table names)."""
        if db.execute(f"SELECT 1 FROM {kind}s WHERE id = ?", (row_id,)).fetchone() is None:
            raise NotFound(kind, row_id)

    @staticmethod
    def _event(db: sqlite3.Connection, run: int | None, kind: str, data: dict[str, Any], when: float) -> None:
        db.execute(
            "INSERT INTO events (time, run, kind, data) VALUES (?, ?, ?, ?)", (when, run, kind, _encoder.encode(data))
        )


def _run_from_row(row: sqlite3.Row) -> RunInfo:
    """A validated RunInfo from a ``runs`` row."""
    return _validated(_decode_row(row, _RUN_JSON), RunInfo)


def _schedule_from_row(row: sqlite3.Row) -> ScheduleInfo:
    """A validated ScheduleInfo from a ``schedules`` row (``paused`` is stored as 0/1)."""
    data = _decode_row(row, _SCHEDULE_JSON)
    data["paused"] = bool(data["paused"])
    return _validated(data, ScheduleInfo)


def _decode_row(row: sqlite3.Row, json_columns: frozenset[str]) -> dict[str, Any]:
    return {key: msgspec.json.decode(row[key]) if key in json_columns else row[key] for key in row.keys()}  # noqa: SIM118


def _validated(obj: Any, kind: type[_T]) -> _T:
    """``obj`` (plain data or a struct) checked against ``kind``; a mismatch is a ValueError."""
    try:
        return msgspec.convert(msgspec.to_builtins(obj), kind)
    except msgspec.ValidationError as exc:
        raise ValueError(f"invalid {kind.__name__}: {exc}") from None


def _update(
    db: sqlite3.Connection, table: str, row_id: int, values: dict[str, Any], json_columns: frozenset[str]
) -> None:
    """``UPDATE`` the given columns (names already checked against the table's fields)."""
    if not values:
        return
    encoded = [_encoder.encode(v) if k in json_columns else v for k, v in values.items()]
    assignments = ", ".join(f'"{k}" = ?' for k in values)
    db.execute(f"UPDATE {table} SET {assignments} WHERE id = ?", [*encoded, row_id])


def _set_meta(db: sqlite3.Connection, key: str, value: Any) -> None:
    db.execute(
        "INSERT INTO meta (key, value) VALUES (?, ?) ON CONFLICT (key) DO UPDATE SET value = excluded.value",
        (key, _encoder.encode(value)),
    )


def _check_fields(fields: dict[str, Any], allowed: tuple[str, ...], kind: str) -> None:
    unknown = sorted(set(fields) - set(allowed))
    if unknown:
        raise ValueError(f"unknown {kind} field(s) {', '.join(unknown)}; fields: {', '.join(allowed)}")
    if "state" in fields:
        _check_states([fields["state"]])


def _check_states(states: Collection[str]) -> None:
    bad = [s for s in states if s not in RUN_STATES]
    if bad:
        raise ValueError(f"unknown run state(s) {', '.join(map(str, bad))}; states: {', '.join(RUN_STATES)}")


def _rowid(cur: sqlite3.Cursor) -> int:
    row_id = cur.lastrowid
    assert row_id is not None  # an INSERT always sets it
    return row_id
