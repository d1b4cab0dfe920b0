"""Data in: long-format strategy reports (parquet or CSV) to a dense :class:`Panel`, and back out.

Input is long format, one row per (series, period), with three columns found by name unless given:

* id: ``No.`` or ``unique_id`` (``--id-col``), ints or strings;
* time: ``week``, ``ds``, ``date``, ``time`` or ``t`` (``--time-col``), dates/timestamps (date strings are
  parsed) or integer positions;
* target: ``profit`` or ``y`` (``--target-col``), numbers.

The times must lie on one regular grid. Its step is the most common difference between consecutive distinct
times (7 days for weekly reports, 1 for integer positions) and it runs from the first time in the file to the
last. Each series starts at its own first observation (``Panel.start``) and must have a row for every period
after that to the end of the grid; ``fill_missing="zero"`` (``--fill-missing zero``) fills the holes with 0
instead, the documented choice for strategy reports, where a missing week means no trade.

The load is vectorised end to end: ids and times are factorised with Arrow hash kernels (only the distinct
times are parsed and placed on the grid), and values are scattered into a dense ``[N, T]`` float32 array, or
simply reshaped when the file is a complete panel sorted by id and time; no Python runs per row.
Every rejection is a :class:`DataError` naming the file, the column, the first offending rows as values and
what to do.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal, NoReturn

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pa_csv
import pyarrow.parquet as pq
from numpy.typing import NDArray

from stratcast.daemon.engine.panel import DataError, Panel

FillMissing = Literal["error", "zero"]

ID_ALIASES = ("No.", "unique_id")
"""Column names taken as the series id, in the order they are looked for."""
TIME_ALIASES = ("week", "ds", "date", "time", "t")
"""Column names taken as the time."""
TARGET_ALIASES = ("profit", "y")
"""Column names taken as the value to forecast."""

_PARQUET_SUFFIXES = (".parquet", ".pq")
_CSV_SUFFIXES = (".csv", ".csv.gz")
_SHOWN = 5
"""How many offending rows a message quotes."""
_DAY = 86_400 * 10**9
"""One day in ns."""
_FILL_HINT = (
    "Pass --fill-missing zero to fill them with 0, the documented choice for strategy reports, "
    "where a missing week means no trade."
)


def load_panel(
    path: str | Path,
    *,
    id_col: str | None = None,
    time_col: str | None = None,
    target_col: str | None = None,
    fill_missing: FillMissing = "error",
) -> Panel:
    """Read a long-format parquet (``.parquet``, ``.pq``) or CSV (``.csv``, ``.csv.gz``) file into a panel.

    Args:
        path: The file.
        id_col: The id column; found among :data:`ID_ALIASES` when not given.
        time_col: The time column; found among :data:`TIME_ALIASES` when not given.
        target_col: The value column; found among :data:`TARGET_ALIASES` when not given.
        fill_missing: ``"error"`` rejects series with missing periods, ``"zero"`` fills them with 0.

    Returns:
        The panel, ids sorted, its ``source`` the path.

    Raises:
        DataError: The file is missing, unreadable or empty, or its data is not a regular panel.
    """
    path = Path(path)
    table, cols = _read_table(path, id_col, time_col, target_col)
    return _build_panel(_Where(str(path), cols, table), fill_missing)


def panel_from_frame(
    frame: pd.DataFrame | pa.Table,
    *,
    id_col: str | None = None,
    time_col: str | None = None,
    target_col: str | None = None,
    fill_missing: FillMissing = "error",
    source: str = "<frame>",
) -> Panel:
    """Build a panel from a long-format pandas DataFrame or pyarrow Table; see :func:`load_panel`.

    Args:
        frame: One row per (series, period).
        id_col: The id column; found among :data:`ID_ALIASES` when not given.
        time_col: The time column; found among :data:`TIME_ALIASES` when not given.
        target_col: The value column; found among :data:`TARGET_ALIASES` when not given.
        fill_missing: ``"error"`` rejects series with missing periods, ``"zero"`` fills them with 0.
        source: What messages call the data.

    Raises:
        DataError: The data is empty or not a regular panel.
    """
    names = [str(c) for c in (frame.column_names if isinstance(frame, pa.Table) else frame.columns)]
    cols = _resolve_columns(names, id_col, time_col, target_col, source)
    return _build_panel(_Where(source, cols, _as_table(frame, cols)), fill_missing)


def drop_short(panel: Panel, min_length: int, *, what: str) -> Panel:
    """Drop the series with fewer than ``min_length`` periods, recording a note that lists them.

    Args:
        panel: The panel.
        min_length: The fewest periods a series may have.
        what: How ``min_length`` came about, for messages (``"input_size + horizon"``).

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
            f"{panel.source}: no series has the {what} = {min_length} periods needed; the longest "
            f"({panel.id_col}={panel.ids[longest]}) has {lengths[longest]}. "
            "Pass a smaller --input-size or --horizon."
        )
    dropped = panel.ids[~keep]
    listed = ", ".join(str(i) for i in dropped[:10]) + (", ..." if len(dropped) > 10 else "")
    note = f"skipped {len(dropped)} series shorter than {what} = {min_length}: {listed}"
    return panel.select(keep, note)


def write_panel(panel: Panel, path: str | Path) -> None:
    """Write a panel to long-format parquet, one row per observed (series, period); see :func:`load_panel`.

    Periods before a series' start are not written; filled periods are, as 0.
    """
    # [N, T] mask of the periods each series covers.
    covered = np.arange(panel.n_times)[None, :] >= panel.start[:, None]
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


@dataclass(frozen=True)
class _Columns:
    id: str
    time: str
    target: str


def _read_table(
    path: Path, id_col: str | None, time_col: str | None, target_col: str | None
) -> tuple[pa.Table, _Columns]:
    kind = _file_kind(path)
    try:
        if kind == "csv":
            table = pa_csv.read_csv(path)
            return table, _resolve_columns(table.column_names, id_col, time_col, target_col, str(path))
        cols = _resolve_columns(pq.read_schema(path).names, id_col, time_col, target_col, str(path))
        return pq.read_table(path, columns=[cols.id, cols.time, cols.target], memory_map=True), cols
    except (pa.ArrowException, OSError) as exc:
        hint = "every line needs as many fields as the header" if kind == "csv" else "it may be truncated"
        raise DataError(
            f"{path}: cannot read it as {kind}: {exc}. Check that it is a valid {kind} file ({hint})."
        ) from exc


def _file_kind(path: Path) -> str:
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
) -> _Columns:
    cols = _Columns(
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


def _as_table(frame: pd.DataFrame | pa.Table, cols: _Columns) -> pa.Table:
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


# --- messages -----------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Where:
    """The data being loaded, and how to quote it in messages."""

    source: str
    cols: _Columns
    table: pa.Table

    def column(self, name: str) -> pa.ChunkedArray:
        col = self.table.column(name)
        return col.cast(col.type.value_type) if pa.types.is_dictionary(col.type) else col

    def fail(self, column: str, problem: str, examples: list[str], count: int, fix: str) -> NoReturn:
        more = f" (and {count - len(examples)} more)" if count > len(examples) else ""
        raise DataError(f"{self.source}: column {column!r}: {problem}, first: {'; '.join(examples)}{more}. {fix}")

    def fail_rows(self, column: str, problem: str, rows: NDArray[np.int64], fix: str) -> NoReturn:
        """Fail quoting the values of the first of ``rows`` (indices into the table)."""
        quoted = self.table.take(pa.array(rows[:_SHOWN])).to_pylist()
        examples = [", ".join(f"{k}={_show(v)}" for k, v in row.items()) for row in quoted]
        self.fail(column, f"{_count(len(rows), 'row')} {problem}", examples, len(rows), fix)

    def reject_nulls(self, column: str) -> None:
        col = self.table.column(column)
        if col.null_count:
            rows = np.flatnonzero(pc.is_null(col).to_numpy(zero_copy_only=False))
            self.fail_rows(column, "without a value", rows, "Fill in or remove these rows.")


def _count(n: int, one: str, many: str | None = None) -> str:
    return f"{n} {one if n == 1 else many or one + 's'}"


def _show(value: object) -> str:
    if isinstance(value, dt.datetime) and value.time() == dt.time() and value.tzinfo is None:
        return value.date().isoformat()
    if isinstance(value, dt.date):
        return value.isoformat()
    return str(value)


# --- values, ids, times -------------------------------------------------------------------------------------


def _numpy(col: pa.ChunkedArray | pa.Array, dtype: type[np.generic]) -> NDArray[Any]:
    """One numpy array from the chunks of a null-free column, converted to ``dtype`` on the way."""
    out = np.empty(len(col), dtype)
    pos = 0
    for chunk in col.chunks if isinstance(col, pa.ChunkedArray) else [col]:
        out[pos : pos + len(chunk)] = chunk.to_numpy(zero_copy_only=False)
        pos += len(chunk)
    return out


def _is_text(col: pa.ChunkedArray | pa.Array) -> bool:
    kind = col.type
    return bool(pa.types.is_string(kind) or pa.types.is_large_string(kind) or pa.types.is_string_view(kind))


def _target_values(where: _Where) -> NDArray[np.float32]:
    name = where.cols.target
    where.reject_nulls(name)
    col = where.column(name)
    if _is_text(col):
        col = _parse_numbers(where, col)
    elif not (pa.types.is_integer(col.type) or pa.types.is_floating(col.type) or pa.types.is_decimal(col.type)):
        rows = np.arange(len(col), dtype=np.int64)
        where.fail_rows(name, f"of type {col.type}, not numbers", rows, "Store the values as numbers.")
    with np.errstate(over="ignore"):  # beyond float32 becomes inf, rejected below
        values = _numpy(col.cast(pa.float64()), np.float32)
    # A float64 sum of float32 values cannot overflow, so it is finite exactly when every value is.
    if not np.isfinite(values.sum(dtype=np.float64)):
        fix = "Fix or remove these rows (a week without a trade is 0, not NaN)."
        where.fail_rows(name, "with NaN or infinite values", np.flatnonzero(~np.isfinite(values)), fix)
    return values


def _parse_numbers(where: _Where, col: pa.ChunkedArray) -> pa.Array:
    """Numbers written as strings, parsed once per distinct string."""
    distinct = pc.unique(col)
    parsed = pd.to_numeric(pd.Series(distinct.to_pylist(), dtype=object), errors="coerce").to_numpy(np.float64)
    bad = np.isnan(parsed)
    if bad.any():
        rows = _rows_with(col, distinct.filter(pa.array(bad)))
        where.fail_rows(where.cols.target, "with non-numeric values", rows, "Store numbers only.")
    return pa.array(parsed[_numpy(pc.index_in(col, value_set=distinct), np.int64)])


def _rows_with(col: pa.ChunkedArray, chosen: pa.Array) -> NDArray[np.int64]:
    """Indices of the rows whose value is one of ``chosen``."""
    return np.flatnonzero(pc.is_in(col, value_set=chosen).to_numpy(zero_copy_only=False))


def _distinct_ids(where: _Where) -> tuple[pa.ChunkedArray, pa.Array]:
    """The id column and its distinct values, sorted."""
    where.reject_nulls(where.cols.id)
    col = where.column(where.cols.id)
    distinct = pc.unique(col)
    return col, distinct.take(pc.sort_indices(distinct))


@dataclass(frozen=True)
class _Times:
    """The distinct values of the time column and their ticks (int64; ns since the epoch for dates)."""

    column: pa.ChunkedArray
    distinct: pa.Array
    ticks: NDArray[np.int64]
    dates: bool

    def rows_where(self, chosen: NDArray[np.bool_]) -> NDArray[np.int64]:
        """Indices of the rows whose time is a distinct value where ``chosen`` is true."""
        return _rows_with(self.column, self.distinct.filter(pa.array(chosen)))


def _distinct_times(where: _Where) -> _Times:
    """Only the distinct times are converted; rows find theirs later by a hash lookup."""
    name = where.cols.time
    where.reject_nulls(name)
    col = where.column(name)
    distinct = pc.unique(col)
    if pa.types.is_timestamp(col.type) or pa.types.is_date(col.type):
        return _Times(col, distinct, _date_ticks(where, col, distinct), True)
    if pa.types.is_integer(col.type):
        return _Times(col, distinct, distinct.cast(pa.int64()).to_numpy(), False)
    if pa.types.is_floating(col.type):
        return _whole_number_times(where, col, distinct)
    if _is_text(col):
        return _parse_times(where, col, distinct)
    rows = np.arange(len(col), dtype=np.int64)
    where.fail_rows(name, f"of type {col.type}", rows, "Times must be dates or integer positions.")


def _date_ticks(where: _Where, col: pa.ChunkedArray, distinct: pa.Array) -> NDArray[np.int64]:
    seconds = pc.cast(distinct, pa.timestamp("s"), safe=False).cast(pa.int64()).to_numpy()
    # datetime64[ns] spans 1677-09-21 to 2262-04-11.
    outside = (seconds < -9_223_372_036) | (seconds > 9_223_372_035)
    if outside.any():
        rows = _rows_with(col, distinct.filter(pa.array(outside)))
        where.fail_rows(where.cols.time, "outside 1677-2262", rows, "Fix these dates.")
    return np.asarray(distinct.cast(pa.timestamp("ns")).cast(pa.int64()).to_numpy(), np.int64)


def _whole_number_times(where: _Where, col: pa.ChunkedArray, distinct: pa.Array) -> _Times:
    values = distinct.to_numpy(zero_copy_only=False)
    bad = ~np.isfinite(values) | (values != np.round(values))
    if bad.any():
        fix = "Times must be dates or whole-number positions."
        rows = _rows_with(col, distinct.filter(pa.array(bad)))
        where.fail_rows(where.cols.time, "with fractional times", rows, fix)
    return _Times(col, distinct, values.astype(np.int64), False)


def _parse_times(where: _Where, col: pa.ChunkedArray, distinct: pa.Array) -> _Times:
    """Integer strings as positions, anything else parsed as dates."""
    try:
        return _Times(col, distinct, distinct.cast(pa.int64()).to_numpy(), False)
    except pa.ArrowInvalid:
        pass
    text = pd.Series(distinct.to_pylist(), dtype=object)
    parsed = pd.to_datetime(text, errors="coerce", format="mixed", utc=True)
    bad = parsed.isna().to_numpy()
    if bad.any():
        rows = _rows_with(col, distinct.filter(pa.array(bad)))
        fix = "Write dates as YYYY-MM-DD (or integer positions)."
        where.fail_rows(where.cols.time, "with times that are not dates", rows, fix)
    return _Times(col, distinct, parsed.dt.tz_localize(None).to_numpy("datetime64[ns]").view(np.int64), True)


# --- the grid and the dense panel ---------------------------------------------------------------------------


@dataclass(frozen=True)
class _Grid:
    """``size`` periods from ``first`` every ``step`` ticks (ns for dates)."""

    first: int
    step: int
    size: int
    dates: bool

    def times(self) -> NDArray[np.generic]:
        ticks = self.first + self.step * np.arange(self.size, dtype=np.int64)
        return ticks.view("datetime64[ns]") if self.dates else ticks

    def label(self, position: int) -> str:
        tick = self.first + self.step * position
        return _show(pd.Timestamp(tick)) if self.dates else str(tick)

    def describe(self) -> str:
        if not self.dates:
            step = str(self.step)
        elif self.step % _DAY == 0:
            step = _count(self.step // _DAY, "day")
        else:
            step = str(pd.Timedelta(self.step))
        return f"step {step} from {self.label(0)} to {self.label(self.size - 1)}"


def _infer_grid(where: _Where, times: _Times) -> _Grid:
    """The regular grid the times lie on; its step is the most common gap between consecutive distinct times."""
    ticks = np.unique(times.ticks)
    step = 1
    if len(ticks) > 1:
        gaps, counts = np.unique(np.diff(ticks), return_counts=True)
        step = int(gaps[np.argmax(counts)])
    grid = _Grid(int(ticks[0]), step, int((ticks[-1] - ticks[0]) // step + 1), times.dates)
    off = (times.ticks - grid.first) % step != 0
    if off.any():
        fix = "Every time must be the first one plus a whole number of steps; fix or remove these rows."
        problem = f"off the regular time grid ({grid.describe()}, the most common gap)"
        where.fail_rows(where.cols.time, problem, times.rows_where(off), fix)
    if grid.size > 2 * len(ticks):
        # The times on the smaller side of the widest gap are the likely strays.
        cut = int(np.argmax(np.diff(ticks))) + 1
        strays = times.ticks < ticks[cut] if cut <= len(ticks) // 2 else times.ticks >= ticks[cut]
        problem = (
            f"at stray times: the time grid ({grid.describe()}) would have {grid.size} periods but only "
            f"{len(ticks)} distinct times occur"
        )
        where.fail_rows(where.cols.time, problem, times.rows_where(strays), "Fix or remove these rows.")
    return grid


def _build_panel(where: _Where, fill_missing: FillMissing) -> Panel:
    if fill_missing not in ("error", "zero"):
        raise ValueError(f"fill_missing must be 'error' or 'zero', not {fill_missing!r}")
    if where.table.num_rows == 0:
        raise DataError(f"{where.source}: no rows; expected one row per (strategy, period).")
    values = _target_values(where)
    id_column, ids = _distinct_ids(where)
    times = _distinct_times(where)
    grid = _infer_grid(where, times)
    layout = _Layout(id_column, ids, times, (times.ticks - grid.first) // grid.step, grid.size)
    if layout.in_order():
        # The common case, a complete panel sorted by id, then time: the values already are the panel.
        dense, start, missing = values.reshape(len(ids), grid.size), np.zeros(len(ids), np.int64), 0
    else:
        dense, start, missing = _scatter(where, layout, values, grid, fill_missing)
    return Panel(
        ids=ids.to_numpy(zero_copy_only=False),
        times=grid.times(),
        values=dense,
        start=start,
        source=where.source,
        filled=missing,
        id_col=where.cols.id,
        time_col=where.cols.time,
        target_col=where.cols.target,
    )


_BLOCK = 1 << 20
"""Rows placed at a time: big enough to amortise each call, small enough for the cache."""


@dataclass(frozen=True)
class _Layout:
    """Where each row goes in the flat dense panel: cell ``series * T + period``, a block of rows at a time.

    Working in blocks keeps every temporary small: no [rows] index array is ever built on the way to a valid
    panel, which on 50M rows saves more time (page faults) than the arithmetic costs.
    """

    id_column: pa.ChunkedArray
    ids: pa.Array
    """[N] the distinct ids, sorted: a row's series is the index of its id here."""
    times: _Times
    periods: NDArray[np.int64]
    """[K] the grid period of each of ``times.distinct``."""
    n_times: int

    def blocks(self) -> Iterator[tuple[int, NDArray[np.int64]]]:
        """``(first row, cells of the block's rows)`` for each block of rows."""
        for lo in range(0, len(self.id_column), _BLOCK):
            series = pc.index_in(self.id_column.slice(lo, _BLOCK), value_set=self.ids).to_numpy()
            period = pc.index_in(self.times.column.slice(lo, _BLOCK), value_set=self.times.distinct).to_numpy()
            cells = series.astype(np.int64)
            cells *= self.n_times
            cells += self.periods[period]
            yield lo, cells

    def in_order(self) -> bool:
        """Whether row ``r`` goes to cell ``r`` for every row: a complete panel sorted by id, then time."""
        if len(self.id_column) != len(self.ids) * self.n_times:
            return False
        return all(cells[0] == lo and (np.diff(cells) == 1).all() for lo, cells in self.blocks())

    def cells(self) -> NDArray[np.int64]:
        """[rows] the cell of every row."""
        out = np.empty(len(self.id_column), np.int64)
        for lo, cells in self.blocks():
            out[lo : lo + len(cells)] = cells
        return out


def _scatter(
    where: _Where, layout: _Layout, values: NDArray[np.float32], grid: _Grid, fill_missing: FillMissing
) -> tuple[NDArray[np.float32], NDArray[np.int64], int]:
    """The dense [N, T] values, each series' start and the number of missing cells, checking as it goes."""
    shape = (len(layout.ids), grid.size)
    dense = np.zeros(shape[0] * shape[1], np.float32)
    observed = np.zeros(shape[0] * shape[1], np.bool_)
    for lo, cells in layout.blocks():
        dense[cells] = values[lo : lo + len(cells)]
        observed[cells] = True
    if np.count_nonzero(observed) < len(values):
        _fail_duplicates(where, layout.cells())
    observed = observed.reshape(shape)
    start = observed.argmax(axis=1).astype(np.int64)
    missing = (shape[1] - start) - np.count_nonzero(observed, axis=1)
    if fill_missing == "error" and missing.any():
        _fail_gaps(where, layout.ids, observed, start, grid)
    return dense.reshape(shape), start, int(missing.sum())


def _fail_duplicates(where: _Where, cells: NDArray[np.int64]) -> NoReturn:
    order = np.argsort(cells, kind="stable")
    repeats = order[1:][cells[order[1:]] == cells[order[:-1]]]
    problem = f"repeating an earlier ({where.cols.id}, {where.cols.time}) pair"
    fix = "Each strategy needs one row per period; remove the duplicates or add them up first."
    where.fail_rows(where.cols.time, problem, np.sort(repeats), fix)


def _fail_gaps(
    where: _Where, ids: pa.Array, observed: NDArray[np.bool_], start: NDArray[np.int64], grid: _Grid
) -> NoReturn:
    # A series is complete when every period from its start to the end of the grid is present.
    after_start = np.arange(grid.size)[None, :] >= start[:, None]
    incomplete = np.flatnonzero((after_start & ~observed).any(axis=1))
    examples = []
    for i in incomplete[:_SHOWN]:
        hole = int(start[i] + np.argmin(observed[i, start[i] :]))
        examples.append(f"{where.cols.id}={_show(ids[i].as_py())}, {where.cols.time}={grid.label(hole)} missing")
    problem = (
        f"{_count(len(incomplete), 'series', 'series')} with missing periods on the time grid "
        f"({grid.describe()}): gaps, or an end before the grid's"
    )
    where.fail(where.cols.time, problem, examples, len(incomplete), _FILL_HINT)
