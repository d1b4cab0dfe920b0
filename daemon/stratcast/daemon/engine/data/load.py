"""Data in: long-format strategy reports (parquet or CSV) to a dense :class:`Panel`, and back out.

Input is long format, one row per (series, period), with three columns found by name unless given:

* id: ``No.`` or ``unique_id`` (``--id-col``), ints or strings;
* time: ``week``, ``ds``, ``date``, ``time`` or ``t`` (``--time-col``), dates/timestamps (date strings are
  parsed, see :mod:`stratcast.daemon.engine.data._dates`) or integer positions;
* target: ``profit`` or ``y`` (``--target-col``), numbers.

Names are matched exactly, else in any case (``Week``, ``Profit``). A CSV file may be separated by commas,
semicolons or tabs and write decimal commas, as trading tools export (:mod:`stratcast.daemon.engine.data._csv`).

The times must lie on one regular grid. Its step is the most common difference between consecutive distinct
times (7 days for weekly reports, 1 for integer positions) and it runs from the first time in the file to the
last. Each series runs from its own first observation (``Panel.start``) to its own last (``Panel.end``): a
strategy may start late or stop trading (a ragged panel), and the periods outside its own are not data. It must
have a row for every period in between; ``fill_missing="zero"`` (``--fill-missing zero``) fills the holes with 0
instead, the documented choice for strategy reports, where a missing week means no trade. Integer times that
every series starts at the same value are each series' own positions (the M4 files): see ``Panel.own_positions``.

This module reads files and finds the columns; :mod:`stratcast.daemon.engine.data._panel_build` checks the data,
infers the grid and lays out the dense panel, vectorised, with no Python per row. Every rejection is a
:class:`DataError` naming the file, the column, the first offending rows as values and what to do.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from stratcast.daemon.engine.data._csv import read_csv
from stratcast.daemon.engine.data._dates import TextFormat
from stratcast.daemon.engine.data._panel_build import Columns, FillMissing, build_panel
from stratcast.daemon.engine.data.panel import DataError, Panel

__all__ = [
    "ID_ALIASES",
    "TARGET_ALIASES",
    "TIME_ALIASES",
    "FillMissing",
    "drop_short",
    "load_panel",
    "panel_from_frame",
    "write_panel",
]

ID_ALIASES = ("No.", "unique_id")
"""Column names taken as the series id, in the order they are looked for."""
TIME_ALIASES = ("week", "ds", "date", "time", "t")
"""Column names taken as the time."""
TARGET_ALIASES = ("profit", "y")
"""Column names taken as the value to forecast."""

_PARQUET_SUFFIXES = (".parquet", ".pq")
_CSV_SUFFIXES = (".csv", ".csv.gz")


def load_panel(
    path: str | Path,
    *,
    id_col: str | None = None,
    time_col: str | None = None,
    target_col: str | None = None,
    fill_missing: FillMissing = "error",
    date_format: str | None = None,
    dayfirst: bool = False,
) -> Panel:
    """Read a long-format parquet (``.parquet``, ``.pq``) or CSV (``.csv``, ``.csv.gz``) file into a panel.

    Args:
        path: The file.
        id_col: The id column; found among :data:`ID_ALIASES` when not given.
        time_col: The time column; found among :data:`TIME_ALIASES` when not given.
        target_col: The value column; found among :data:`TARGET_ALIASES` when not given.
        fill_missing: ``"error"`` rejects series with missing periods, ``"zero"`` fills them with 0.
        date_format: How text dates are written (``%d.%m.%Y``); None: ISO, or the day/month order read off the
            values (a note says which was taken).
        dayfirst: Read dates such as ``04/01/2016`` day first.

    Returns:
        The panel, ids sorted, its ``source`` the path.

    Raises:
        DataError: The file is missing, unreadable or empty, or its data is not a regular panel.
    """
    path = Path(path)
    table, cols, decimal = _read_table(path, id_col, time_col, target_col)
    return build_panel(table, cols, str(path), fill_missing, TextFormat(decimal, date_format, dayfirst))


def panel_from_frame(
    frame: pd.DataFrame | pa.Table,
    *,
    id_col: str | None = None,
    time_col: str | None = None,
    target_col: str | None = None,
    fill_missing: FillMissing = "error",
    date_format: str | None = None,
    dayfirst: bool = False,
    source: str = "<frame>",
) -> Panel:
    """Build a panel from a long-format pandas DataFrame or pyarrow Table; see :func:`load_panel`.

    Args:
        frame: One row per (series, period).
        id_col: The id column; found among :data:`ID_ALIASES` when not given.
        time_col: The time column; found among :data:`TIME_ALIASES` when not given.
        target_col: The value column; found among :data:`TARGET_ALIASES` when not given.
        fill_missing: ``"error"`` rejects series with missing periods, ``"zero"`` fills them with 0.
        date_format: How text dates are written; see :func:`load_panel`.
        dayfirst: Read dates such as ``04/01/2016`` day first.
        source: What messages call the data.

    Raises:
        DataError: The data is empty or not a regular panel.
    """
    names = [str(c) for c in (frame.column_names if isinstance(frame, pa.Table) else frame.columns)]
    cols = _resolve_columns(names, id_col, time_col, target_col, source)
    formats = TextFormat(date_format=date_format, dayfirst=dayfirst)
    return build_panel(_as_table(frame, cols), cols, source, fill_missing, formats)


def drop_short(
    panel: Panel, min_length: int, *, what: str, levers: str = "pass a smaller --input-size or --horizon"
) -> Panel:
    """Drop the series with fewer than ``min_length`` periods, recording a note that lists them.

    Args:
        panel: The panel.
        min_length: The fewest periods a series may have.
        what: How ``min_length`` came about, for messages (``"input_size 104 + 1 + val_size 52 + holdout 52"``).
        levers: What the user can change when no series is long enough.

    Raises:
        DataError: No series is long enough.
    """
    lengths = panel.lengths
    keep = lengths >= min_length
    if keep.all():
        return panel
    if not keep.any():
        longest = int(np.argmax(lengths))
        raise DataError(
            f"{panel.source}: a series needs {min_length} periods ({what}), the longest "
            f"({panel.id_col}={panel.ids[longest]}) has {lengths[longest]}: {levers}"
        )
    dropped = panel.ids[~keep]
    listed = ", ".join(str(i) for i in dropped[:10]) + (", ..." if len(dropped) > 10 else "")
    note = f"skipped {len(dropped)} series shorter than {what} = {min_length}: {listed}"
    return panel.select(keep, note)


def write_panel(panel: Panel, path: str | Path) -> None:
    """Write a panel to long-format parquet, one row per observed (series, period); see :func:`load_panel`.

    Periods outside a series' own are not written; filled periods are, as 0.
    """
    covered = panel.periods()  # [N, T]
    positions = np.broadcast_to(np.arange(panel.n_times), covered.shape)[covered]
    table = pa.table(
        {
            panel.id_col: pa.array(np.repeat(panel.ids, panel.lengths)),
            panel.time_col: pa.array(panel.times[positions]),
            panel.target_col: pa.array(panel.values[covered]),
        }
    )
    pq.write_table(table, Path(path))


# --- reading and columns ------------------------------------------------------------------------------------


def _read_table(
    path: Path, id_col: str | None, time_col: str | None, target_col: str | None
) -> tuple[pa.Table, Columns, str]:
    """The table, its columns and the decimal mark of numbers written as text."""
    kind = file_kind(path)
    try:
        if kind == "csv":
            table, dialect = read_csv(path)
            cols = _resolve_columns(table.column_names, id_col, time_col, target_col, str(path))
            return table, cols, dialect.decimal
        cols = _resolve_columns(pq.read_schema(path).names, id_col, time_col, target_col, str(path))
        return pq.read_table(path, columns=[cols.id, cols.time, cols.target], memory_map=True), cols, "."
    except (pa.ArrowException, OSError) as exc:
        hint = "every line needs as many fields as the header" if kind == "csv" else "it may be truncated"
        raise DataError(
            f"{path}: cannot read it as {kind}: {str(exc).rstrip('.')}. Check that it is a valid {kind} file ({hint})."
        ) from exc


def file_kind(path: Path) -> str:
    """``parquet`` or ``csv`` by the file's name (torch-free: ``stratcastd run`` asks it before importing torch).

    Raises:
        DataError: the file does not exist, its name says neither kind, or it is empty.
    """
    if not path.is_file():
        raise DataError(f"{path}: no such file. Check the path.")
    name = path.name.lower()
    if not name.endswith(_PARQUET_SUFFIXES + _CSV_SUFFIXES):
        known = ", ".join(_PARQUET_SUFFIXES + _CSV_SUFFIXES)
        raise DataError(f"{path}: unknown file type; name it with one of {known} to say how to read it.")
    if path.stat().st_size == 0:
        raise DataError(f"{path}: the file is empty; expected one row per (strategy, period).")
    return "parquet" if name.endswith(_PARQUET_SUFFIXES) else "csv"


def _resolve_columns(
    present: list[str], id_col: str | None, time_col: str | None, target_col: str | None, source: str
) -> Columns:
    cols = Columns(
        _pick(present, id_col, ID_ALIASES, "id", "--id-col", source),
        _pick(present, time_col, TIME_ALIASES, "time", "--time-col", source),
        _pick(present, target_col, TARGET_ALIASES, "target", "--target-col", source),
    )
    if len({cols.id, cols.time, cols.target}) < 3:
        raise DataError(
            f"{source}: one column plays two roles (id {cols.id!r}, time {cols.time!r}, target "
            f"{cols.target!r}); pass distinct --id-col, --time-col and --target-col."
        )
    return cols


def _pick(present: list[str], given: str | None, aliases: tuple[str, ...], role: str, flag: str, source: str) -> str:
    listing = ", ".join(repr(c) for c in present)
    if given is not None:
        if given in present:
            return given
        raise DataError(f"{source}: no column {given!r} (from {flag}); the columns present are {listing}.")
    found = [a for a in aliases if a in present]
    if not found:  # tools capitalise: Week, Profit
        lowered = {a.lower() for a in aliases}
        found = [c for c in present if c.lower() in lowered]
    if len(found) == 1:
        return found[0]
    if not found:
        looked = ", ".join(repr(a) for a in aliases)
        raise DataError(
            f"{source}: no {role} column (looked for {looked}); the columns present are {listing}. "
            f"Pass {flag} NAME to say which one holds the {role}."
        )
    which = ", ".join(repr(c) for c in found)
    raise DataError(f"{source}: ambiguous {role} column: {which} all qualify. Pass {flag} NAME to choose one.")


def _as_table(frame: pd.DataFrame | pa.Table, cols: Columns) -> pa.Table:
    names = [cols.id, cols.time, cols.target]
    if isinstance(frame, pa.Table):
        return frame.select(names)
    labels = {str(c): c for c in frame.columns}
    return pa.table([_arrow(frame[labels[n]]) for n in names], names=names)


def _arrow(series: pd.Series[Any]) -> pa.Array:
    try:
        return pa.array(series, from_pandas=True)
    except (pa.ArrowException, TypeError):
        # Mixed Python objects: as strings, so the checks below can name the bad ones.
        return pa.array(series.astype(str))
