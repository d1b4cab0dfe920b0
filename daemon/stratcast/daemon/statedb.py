"""The daemon's state file: one SQLite database, its tables, and how a row maps to a protocol struct.

The file is opened in WAL mode with ``synchronous=FULL``: every transaction commits before :meth:`StateFile._tx`
returns, and a commit is on disk when it returns, so the daemon may announce a state change as soon as a
:class:`~stratcast.daemon.store.Store` call is back. Five tables:

* ``runs``: one row per run (:class:`~stratcast.shared.protocol.RunInfo`); ids come from ``AUTOINCREMENT`` and
  are never reused, even after a run is removed.
* ``schedules``: one row per schedule (:class:`~stratcast.shared.protocol.ScheduleInfo`).
* ``studies``: one row per daemon study (:class:`~stratcast.shared.protocol.StudyInfo`); its trials are runs
  whose ``study`` and ``trial`` columns name it, and its Optuna side lives in the study's own storage.
* ``events``: an append-only history per run (state changes, OOMs, checkpoints), removed with its run.
* ``meta``: JSON values by key: ``schema_version``, ``queue_paused``, ...

Structured columns (a run's job, placement, progress, memory; an event's data) hold JSON written and read with
msgspec, and every row read back is validated into its protocol struct.

The connection is opened with ``check_same_thread=False`` and every transaction holds one lock, so a thread
executor may read (or write) beside the daemon's event-loop thread.
"""

from __future__ import annotations

import sqlite3
import threading
from collections.abc import Collection, Iterator
from contextlib import contextmanager
from pathlib import Path
from types import TracebackType
from typing import Any, Self, TypeVar

import msgspec

from stratcast.shared.protocol import RUN_STATES, RunInfo, ScheduleInfo, StudyInfo

SCHEMA_VERSION = 4
"""Version of the table layout below; a file with a newer one is refused, an older one is migrated
(:data:`MIGRATIONS`). 2: the ``studies`` table and the runs' ``study`` and ``trial`` columns; 3: the studies'
``final_run``; 4: the schedules' ``study`` and ``last_study_id`` (re-tuning schedules)."""

_SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS schedules (
    id INTEGER PRIMARY KEY AUTOINCREMENT, name TEXT NOT NULL, cron TEXT, every_s INTEGER,
    timezone TEXT NOT NULL, job TEXT NOT NULL, placement TEXT NOT NULL, paused INTEGER NOT NULL DEFAULT 0,
    next_run REAL, last_run REAL, last_run_id INTEGER REFERENCES runs(id) ON DELETE SET NULL,
    study TEXT, last_study_id INTEGER REFERENCES studies(id) ON DELETE SET NULL
);
CREATE TABLE IF NOT EXISTS runs (
    id INTEGER PRIMARY KEY AUTOINCREMENT, name TEXT NOT NULL, state TEXT NOT NULL, reason TEXT NOT NULL,
    job TEXT NOT NULL, placement TEXT NOT NULL, created REAL NOT NULL, started REAL, finished REAL,
    device TEXT, pid INTEGER, attempts INTEGER NOT NULL, exit TEXT NOT NULL, checkpoint TEXT,
    progress TEXT NOT NULL, memory TEXT NOT NULL,
    schedule INTEGER REFERENCES schedules(id) ON DELETE SET NULL, out TEXT NOT NULL,
    study INTEGER REFERENCES studies(id) ON DELETE SET NULL, trial INTEGER
);
CREATE TABLE IF NOT EXISTS studies (
    id INTEGER PRIMARY KEY AUTOINCREMENT, name TEXT NOT NULL, state TEXT NOT NULL, reason TEXT NOT NULL,
    spec TEXT NOT NULL, created REAL NOT NULL, finished REAL, asked INTEGER NOT NULL,
    elapsed_s REAL NOT NULL, active_since REAL, final_run INTEGER REFERENCES runs(id) ON DELETE SET NULL
);
CREATE INDEX IF NOT EXISTS runs_study ON runs(study);
CREATE INDEX IF NOT EXISTS runs_state ON runs(state);
CREATE TABLE IF NOT EXISTS events (
    id INTEGER PRIMARY KEY AUTOINCREMENT, time REAL NOT NULL,
    run INTEGER REFERENCES runs(id) ON DELETE CASCADE, kind TEXT NOT NULL, data TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS events_run ON events(run, id);
"""
MIGRATIONS: dict[int, tuple[str, ...]] = {
    2: (
        """CREATE TABLE studies (
            id INTEGER PRIMARY KEY AUTOINCREMENT, name TEXT NOT NULL, state TEXT NOT NULL, reason TEXT NOT NULL,
            spec TEXT NOT NULL, created REAL NOT NULL, finished REAL, asked INTEGER NOT NULL,
            elapsed_s REAL NOT NULL, active_since REAL
        )""",
        "ALTER TABLE runs ADD COLUMN study INTEGER REFERENCES studies(id) ON DELETE SET NULL",
        "ALTER TABLE runs ADD COLUMN trial INTEGER",
        "CREATE INDEX runs_study ON runs(study)",
    ),
    3: ("ALTER TABLE studies ADD COLUMN final_run INTEGER REFERENCES runs(id) ON DELETE SET NULL",),
    4: (
        "ALTER TABLE schedules ADD COLUMN study TEXT",
        "ALTER TABLE schedules ADD COLUMN last_study_id INTEGER REFERENCES studies(id) ON DELETE SET NULL",
    ),
}
"""The statements that bring a file of version ``v - 1`` to version ``v``, by ``v``."""
RUN_COLUMNS = tuple(f for f in RunInfo.__struct_fields__ if f != "id")
"""The ``runs`` columns a change may name: every :class:`RunInfo` field but ``id``."""
SCHEDULE_COLUMNS = tuple(f for f in ScheduleInfo.__struct_fields__ if f != "id")
"""The ``schedules`` columns a change may name: every :class:`ScheduleInfo` field but ``id``."""
RUN_JSON = frozenset({"job", "placement", "progress", "memory"})
"""The ``runs`` columns that hold JSON."""
SCHEDULE_JSON = frozenset({"job", "placement", "study"})
"""The ``schedules`` columns that hold JSON (``study`` is NULL for a schedule of runs)."""
STUDY_COLUMNS = tuple(f for f in StudyInfo.__struct_fields__ if f != "id")
"""The ``studies`` columns a change may name: every :class:`StudyInfo` field but ``id``."""
STUDY_JSON = frozenset({"spec"})
"""The ``studies`` columns that hold JSON."""
encode = msgspec.json.Encoder().encode
"""A value (plain data or a protocol struct) as the JSON bytes a structured column holds."""
_T = TypeVar("_T")


class StoreError(RuntimeError):
    """The state file cannot be used: unreadable, corrupt, or written by a newer stratcastd."""


class StateFile:
    """One open state file: its pragmas checked, its tables created when new, and one transaction at a time.

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

    def close(self) -> None:
        """Close the file (every change is already committed); closing twice is harmless."""
        with self._lock:
            self._db.close()
            self._closed = True

    def __enter__(self) -> Self:
        return self

    def __exit__(self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None) -> None:
        self.close()

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
                write_meta(db, "schema_version", SCHEMA_VERSION)
                return
            for target in range(version + 1, SCHEMA_VERSION + 1):
                for statement in MIGRATIONS[target]:
                    db.execute(statement)
                write_meta(db, "schema_version", target)

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


def run_from_row(row: sqlite3.Row) -> RunInfo:
    """A validated RunInfo from a ``runs`` row."""
    return validated(_decode_row(row, RUN_JSON), RunInfo)


def schedule_from_row(row: sqlite3.Row) -> ScheduleInfo:
    """A validated ScheduleInfo from a ``schedules`` row (``paused`` is stored as 0/1)."""
    data = _decode_row(row, SCHEDULE_JSON)
    data["paused"] = bool(data["paused"])
    return validated(data, ScheduleInfo)


def study_from_row(row: sqlite3.Row) -> StudyInfo:
    """A validated StudyInfo from a ``studies`` row."""
    return validated(_decode_row(row, STUDY_JSON), StudyInfo)


def _decode_row(row: sqlite3.Row, json_columns: frozenset[str]) -> dict[str, Any]:
    """The row as plain data, its JSON columns decoded (a NULL one stays None)."""
    return {
        key: msgspec.json.decode(row[key]) if key in json_columns and row[key] is not None else row[key]
        for key in row.keys()  # noqa: SIM118
    }


def validated(obj: Any, kind: type[_T]) -> _T:
    """``obj`` (plain data or a struct) checked against ``kind``; a mismatch is a ValueError."""
    try:
        return msgspec.convert(msgspec.to_builtins(obj), kind)
    except msgspec.ValidationError as exc:
        raise ValueError(f"invalid {kind.__name__}: {exc}") from None


def update_row(
    db: sqlite3.Connection, table: str, row_id: int, values: dict[str, Any], json_columns: frozenset[str]
) -> None:
    """``UPDATE`` the given columns (names already checked against the table's fields)."""
    if not values:
        return
    encoded = [encode(v) if k in json_columns else v for k, v in values.items()]
    assignments = ", ".join(f'"{k}" = ?' for k in values)
    db.execute(f"UPDATE {table} SET {assignments} WHERE id = ?", [*encoded, row_id])


def write_meta(db: sqlite3.Connection, key: str, value: Any) -> None:
    """Store a JSON-encodable ``value`` under ``key`` in ``meta``."""
    db.execute(
        "INSERT INTO meta (key, value) VALUES (?, ?) ON CONFLICT (key) DO UPDATE SET value = excluded.value",
        (key, encode(value)),
    )


def check_fields(fields: dict[str, Any], allowed: tuple[str, ...], kind: str) -> None:
    """Raise ValueError for a field name not in ``allowed`` or an unknown ``state``."""
    unknown = sorted(set(fields) - set(allowed))
    if unknown:
        raise ValueError(f"unknown {kind} field(s) {', '.join(unknown)}; fields: {', '.join(allowed)}")
    if "state" in fields:
        check_states([fields["state"]])


def check_states(states: Collection[str]) -> None:
    """Raise ValueError for a run state that does not exist."""
    bad = [s for s in states if s not in RUN_STATES]
    if bad:
        raise ValueError(f"unknown run state(s) {', '.join(map(str, bad))}; states: {', '.join(RUN_STATES)}")


def rowid(cur: sqlite3.Cursor) -> int:
    """The id of the row an ``INSERT`` just added."""
    row_id = cur.lastrowid
    assert row_id is not None  # an INSERT always sets it
    return row_id
