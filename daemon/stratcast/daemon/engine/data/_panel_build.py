"""A long-format Arrow table to a dense :class:`Panel`: checking the values, inferring the time grid, placing rows.

:mod:`stratcast.daemon.engine.data.load` reads files and finds the columns, then calls :func:`build_panel`.

The build is vectorised end to end: ids and times are factorised with Arrow hash kernels (only the distinct
times are parsed and placed on the grid), and values are scattered into a dense ``[N, T]`` float32 array, or
simply reshaped when the table is a complete panel sorted by id and time; no Python runs per row.
Every rejection is a :class:`DataError` naming the source, the column, the first offending rows as values and
what to do.
"""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any, Literal, NoReturn

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
from numpy.typing import NDArray

from stratcast.daemon.engine.data._dates import TextFormat, parse_dates, show_date
from stratcast.daemon.engine.data.panel import DataError, Panel

FillMissing = Literal["error", "zero"]

_SHOWN = 5
"""How many offending rows a message quotes."""
_DAY = 86_400 * 10**9
"""One day in ns."""
_FILL_HINT = (
    "Pass --fill-missing zero to fill them with 0, the documented choice for strategy reports, "
    "where a missing week means no trade."
)
_BLOCK = 1 << 20
"""Rows placed at a time: big enough to amortise each call, small enough for the cache."""


@dataclass(frozen=True)
class Columns:
    """The names of the id, time and target columns."""

    id: str
    time: str
    target: str


def build_panel(table: pa.Table, cols: Columns, source: str, fill_missing: FillMissing, formats: TextFormat) -> Panel:
    """Check ``table`` and lay it out as a panel on its inferred time grid.

    Args:
        table: One row per (series, period); columns beyond ``cols`` are quoted in messages, never used.
        cols: Which columns hold the id, the time and the target.
        source: What messages call the data.
        fill_missing: ``"error"`` rejects series with missing periods, ``"zero"`` fills them with 0.
        formats: How numbers and dates written as text are read.

    Raises:
        DataError: The table is empty or not a regular panel.
    """
    if fill_missing not in ("error", "zero"):
        raise ValueError(f"fill_missing must be 'error' or 'zero', not {fill_missing!r}")
    where = _Where(source, cols, table, formats)
    if table.num_rows == 0:
        raise DataError(f"{source}: no rows; expected one row per (strategy, period).")
    values = _target_values(where)
    id_column, ids = _distinct_ids(where)
    times = _distinct_times(where)
    grid = _infer_grid(where, times)
    layout = _Layout(id_column, ids, times, (times.ticks - grid.first) // grid.step, grid.size)
    if layout.in_order():
        # The common case, a complete panel sorted by id, then time: the values already are the panel.
        start, end = np.zeros(len(ids), np.int64), np.full(len(ids), grid.size, np.int64)
        dense, missing = values.reshape(len(ids), grid.size), 0
    else:
        dense, start, end, missing = _scatter(where, layout, values, grid, fill_missing)
    return Panel(
        ids=ids.to_numpy(zero_copy_only=False),
        times=grid.times(),
        values=dense,
        start=start,
        end=end,
        own_positions=_own_positions(grid, start, end),
        source=source,
        filled=missing,
        id_col=cols.id,
        time_col=cols.time,
        target_col=cols.target,
        notes=(times.note,) if times.note else (),
    )


# --- messages -----------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Where:
    """The data being loaded, and how to quote it in messages."""

    source: str
    cols: Columns
    table: pa.Table
    formats: TextFormat

    def column(self, name: str) -> pa.ChunkedArray:
        """The column ``name``, dictionaries decoded, once no row of it lacks a value."""
        col = self.table.column(name)
        if col.null_count:
            rows = np.flatnonzero(pc.is_null(col).to_numpy(zero_copy_only=False))
            self.fail_rows(name, "without a value", rows, "Fill in or remove these rows.")
        return col.cast(col.type.value_type) if pa.types.is_dictionary(col.type) else col

    def fail(self, column: str, problem: str, examples: list[str], count: int, fix: str) -> NoReturn:
        more = f" (and {count - len(examples)} more)" if count > len(examples) else ""
        raise DataError(f"{self.source}: column {column!r}: {problem}, first: {'; '.join(examples)}{more}. {fix}")

    def fail_rows(self, column: str, problem: str, rows: NDArray[np.int64], fix: str) -> NoReturn:
        """Fail quoting the values of the first of ``rows`` (indices into the table)."""
        quoted = self.table.take(pa.array(rows[:_SHOWN])).to_pylist()
        examples = [", ".join(f"{k}={_show(v)}" for k, v in row.items()) for row in quoted]
        self.fail(column, f"{_count(len(rows), 'row')} {problem}", examples, len(rows), fix)


def _count(n: int, one: str, many: str | None = None) -> str:
    return f"{n} {one if n == 1 else many or one + 's'}"


def _show(value: object) -> str:
    if value is None:  # a null cell (pandas writes NaN as one)
        return "(empty)"
    if isinstance(value, dt.datetime) and value.time() == dt.time() and value.tzinfo is None:
        return value.date().isoformat()
    if isinstance(value, dt.date):
        return value.isoformat()
    return str(value)


def _rows_with(col: pa.ChunkedArray, distinct: pa.Array, chosen: NDArray[np.bool_]) -> NDArray[np.int64]:
    """Indices of the rows of ``col`` whose value is one of ``distinct`` where ``chosen`` is true."""
    return np.flatnonzero(pc.is_in(col, value_set=distinct.filter(pa.array(chosen))).to_numpy(zero_copy_only=False))


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
    parsed = _to_numbers(pd.Series(distinct.to_pylist(), dtype=object), where.formats.decimal)
    bad = np.isnan(parsed)
    if bad.any():
        rows = _rows_with(col, distinct, bad)
        where.fail_rows(where.cols.target, "with non-numeric values", rows, "Store numbers only.")
    return pa.array(parsed[_numpy(pc.index_in(col, value_set=distinct), np.int64)])


def _to_numbers(text: pd.Series, decimal: str) -> NDArray[np.float64]:
    """Numbers as written in the file's locale (``1.234,5`` with decimal commas, ``1,234.5`` otherwise)."""
    thousands = "[. \u00a0']" if decimal == "," else "[, \u00a0']"
    grouped = rf"\s*[+-]?(?:\d{{1,3}}(?:{thousands}\d{{3}})+|\d+)(?:{re.escape(decimal)}\d+)?(?:[eE][+-]?\d+)?\s*"
    local = text.str.fullmatch(grouped).fillna(False).astype(bool)
    plain = text[local].str.replace(thousands, "", regex=True).str.replace(decimal, ".", regex=False)
    numbers = pd.to_numeric(text.where(~local, plain), errors="coerce")
    return np.asarray(numbers, np.float64)


def _distinct_ids(where: _Where) -> tuple[pa.ChunkedArray, pa.Array]:
    """The id column and its distinct values, sorted."""
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
    note: str | None = None
    """What date order was assumed, for the user."""
    guessed: bool = False
    """Whether the distinct values are dates read from text in a format not known to be right."""

    def rows_where(self, chosen: NDArray[np.bool_]) -> NDArray[np.int64]:
        """Indices of the rows whose time is a distinct value where ``chosen`` is true."""
        return _rows_with(self.column, self.distinct, chosen)

    def format_hint(self, chosen: NDArray[np.bool_]) -> str:
        """Two of the chosen text dates as read, when their format may explain a bad grid; else ''."""
        if not self.guessed:
            return ""
        # pc.unique keeps the order of first appearance: these are the first chosen dates in the file.
        shown = [
            f"{self.distinct[i].as_py().strip()} -> {show_date(pd.Timestamp(int(self.ticks[i])))}"
            for i in np.flatnonzero(chosen)[:2]
        ]
        return (
            f" The date format may be the cause: {', '.join(shown)}; if these are not the dates meant, pass "
            "--date-format (such as %d.%m.%Y) or --dayfirst."
        )


def _distinct_times(where: _Where) -> _Times:
    """Only the distinct times are converted; rows find theirs later by a hash lookup."""
    name = where.cols.time
    col = where.column(name)
    distinct = pc.unique(col)
    if pa.types.is_timestamp(col.type) or pa.types.is_date(col.type):
        return _Times(col, distinct, _date_ticks(where, col, distinct), True)
    if pa.types.is_integer(col.type):
        return _Times(col, distinct, distinct.cast(pa.int64()).to_numpy(), False)
    if pa.types.is_floating(col.type):
        return _Times(col, distinct, _whole_number_ticks(where, col, distinct), False)
    if _is_text(col):
        return _parse_times(where, col, distinct)
    rows = np.arange(len(col), dtype=np.int64)
    where.fail_rows(name, f"of type {col.type}", rows, "Times must be dates or integer positions.")


def _date_ticks(where: _Where, col: pa.ChunkedArray, distinct: pa.Array) -> NDArray[np.int64]:
    seconds = pc.cast(distinct, pa.timestamp("s"), safe=False).cast(pa.int64()).to_numpy()
    # datetime64[ns] spans 1677-09-21 to 2262-04-11.
    outside = (seconds < -9_223_372_036) | (seconds > 9_223_372_035)
    if outside.any():
        where.fail_rows(where.cols.time, "outside 1677-2262", _rows_with(col, distinct, outside), "Fix these dates.")
    return np.asarray(distinct.cast(pa.timestamp("ns")).cast(pa.int64()).to_numpy(), np.int64)


def _whole_number_ticks(where: _Where, col: pa.ChunkedArray, distinct: pa.Array) -> NDArray[np.int64]:
    values: NDArray[np.floating[Any]] = distinct.to_numpy(zero_copy_only=False)
    bad = ~np.isfinite(values) | (values != np.round(values))
    if bad.any():
        fix = "Times must be dates or whole-number positions."
        where.fail_rows(where.cols.time, "with fractional times", _rows_with(col, distinct, bad), fix)
    return values.astype(np.int64)


def _parse_times(where: _Where, col: pa.ChunkedArray, distinct: pa.Array) -> _Times:
    """Integer strings as positions, anything else parsed as dates."""
    try:
        return _Times(col, distinct, distinct.cast(pa.int64()).to_numpy(), False)
    except pa.ArrowInvalid:
        pass
    fmt = where.formats.date_format
    try:
        dates = parse_dates(pd.Series(distinct.to_pylist(), dtype=object), where.formats, where.cols.time)
    except ValueError as exc:
        raise DataError(f"{where.source}: --date-format {fmt!r} is not a date format ({exc}).") from None
    bad = dates.stamps.isna().to_numpy()
    if bad.any():
        rows = _rows_with(col, distinct, bad)
        if fmt is not None:
            where.fail_rows(where.cols.time, f"with times not written as {fmt}", rows, "Check --date-format.")
        fix = "Write dates as YYYY-MM-DD, or pass --date-format (such as %d.%m.%Y) to say how they are written."
        where.fail_rows(where.cols.time, "with times that are not dates", rows, fix)
    ticks = dates.stamps.dt.tz_localize(None).to_numpy("datetime64[ns]").view(np.int64)
    return _Times(col, distinct, ticks, True, dates.note, dates.guessed)


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
        where.fail_rows(where.cols.time, problem, times.rows_where(off), fix + times.format_hint(off))
    if grid.size > 2 * len(ticks):
        # The times on the smaller side of the widest gap are the likely strays.
        cut = int(np.argmax(np.diff(ticks))) + 1
        strays = times.ticks < ticks[cut] if cut <= len(ticks) // 2 else times.ticks >= ticks[cut]
        problem = (
            f"at stray times: the time grid ({grid.describe()}) would have {grid.size} periods but only "
            f"{len(ticks)} distinct times occur"
        )
        fix = "Fix or remove these rows." + times.format_hint(strays)
        where.fail_rows(where.cols.time, problem, times.rows_where(strays), fix)
    return grid


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


def _own_positions(grid: _Grid, start: NDArray[np.int64], end: NDArray[np.int64]) -> bool:
    """Whether integer times count each series' own periods rather than a clock shared by every series.

    Integer times that every series starts at the same first value but that end apart are read as per-series
    positions: the layout of the M4 files (each series' ``t`` counts from 0, the series are of different
    lengths) and of any export that numbers each series' periods. On a shared clock some series would start
    late. The choice changes no number (windows, validation, holdout and forecast are taken from each series'
    own end, and its forecast times follow its own last position); it says that the series end at their own last
    observation, so none is reported as stopped early.
    """
    return not grid.dates and bool((start == 0).all()) and bool((end < grid.size).any())


def _scatter(
    where: _Where, layout: _Layout, values: NDArray[np.float32], grid: _Grid, fill_missing: FillMissing
) -> tuple[NDArray[np.float32], NDArray[np.int64], NDArray[np.int64], int]:
    """The dense [N, T] values, each series' start and end, and the number of missing cells, checking as it goes.

    A series runs from its first observation to its last; only the periods missing in between count as missing.
    """
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
    end = shape[1] - observed[:, ::-1].argmax(axis=1).astype(np.int64)
    missing = (end - start) - np.count_nonzero(observed, axis=1)
    if fill_missing == "error" and missing.any():
        _fail_gaps(where, layout.ids, observed, start, missing, grid)
    return dense.reshape(shape), start, end, int(missing.sum())


def _fail_duplicates(where: _Where, cells: NDArray[np.int64]) -> NoReturn:
    order = np.argsort(cells, kind="stable")
    repeats = order[1:][cells[order[1:]] == cells[order[:-1]]]
    problem = f"repeating an earlier ({where.cols.id}, {where.cols.time}) pair"
    fix = "Each strategy needs one row per period; remove the duplicates or add them up first."
    where.fail_rows(where.cols.time, problem, np.sort(repeats), fix)


def _fail_gaps(
    where: _Where,
    ids: pa.Array,
    observed: NDArray[np.bool_],
    start: NDArray[np.int64],
    missing: NDArray[np.int64],
    grid: _Grid,
) -> NoReturn:
    incomplete = np.flatnonzero(missing)
    examples = []
    for i in incomplete[:_SHOWN]:
        hole = int(start[i] + np.argmin(observed[i, start[i] :]))
        examples.append(f"{where.cols.id}={_show(ids[i].as_py())}, {where.cols.time}={grid.label(hole)} missing")
    problem = (
        f"{_count(len(incomplete), 'series', 'series')} with missing periods on the time grid "
        f"({grid.describe()}) between their first and last"
    )
    where.fail(where.cols.time, problem, examples, len(incomplete), _FILL_HINT)
