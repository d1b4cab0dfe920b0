"""A finished run's results: ``metrics.json``, the best strategies with their forecasts, and table exports.

The files are those :mod:`stratcast.daemon.engine.run.outputs` writes into ``RUN_DIR/out``. Everything here blocks
(run it in a thread) and imports pyarrow only when called, so importing the handlers stays cheap at daemon start.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import json
import math
import os
import secrets
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from stratcast.daemon.handlers.common import BadState, HandlerError
from stratcast.shared import runfiles
from stratcast.shared.intervals import bound_name, quantile_columns
from stratcast.shared.protocol import RunInfo
from stratcast.shared.runfiles import Outputs

TABLES = {"summary": runfiles.SUMMARY, "forecast": runfiles.FORECAST}
"""The result tables ``export_results`` can write, by the names it takes."""


class ResultsMissing(Exception):
    """A result file is missing or unreadable; the message names it."""


class ExportRefused(HandlerError):
    """The export's path is not one the daemon will write to, or writing it failed; the message says why."""


def no_results(run: RunInfo, why: ResultsMissing) -> BadState:
    """The error for a request on ``run``'s results when there are none (``why`` names the missing file)."""
    if run.state == "succeeded":
        return BadState(f"run {run.id} has no readable results: {why}")
    return BadState(f"run {run.id} has no results: it is {run.state}, and a run writes them when it succeeds ({why})")


def read_results(out: Path, top: int) -> dict[str, Any]:
    """``metrics.json``, the ``top`` best-ranked strategies of ``summary.parquet``, each with its ``forecast``.

    Returns:
        ``{"metrics": object, "top": [summary row + "forecast": [float | None] in step order], "horizon": int}``
        with NaN and infinities as None; for a backtest, :func:`read_backtest`'s ``{"backtest": object}``.
        A row also has ``"band"`` (:func:`read_band`) when the run has intervals, and ``"quantile_band"``
        (:func:`read_quantile_band`) when its model wrote quantiles.

    Raises:
        ResultsMissing: a file is missing or unreadable.
    """
    files = Outputs(out)
    if files.backtest_table.is_file():
        return read_backtest(files)
    with _reading(files.metrics):
        metrics = json.loads(files.metrics.read_text())
    rows = top_strategies(files.summary, top)
    forecasts = read_forecasts(files.forecast, [row["strategy"] for row in rows])
    bands = read_band(files.forecast, [row["strategy"] for row in rows])
    quantile_bands = read_quantile_band(files.forecast, [row["strategy"] for row in rows])
    for row in rows:
        row["forecast"] = forecasts.get(row["strategy"], [])
        if row["strategy"] in bands:
            row["band"] = bands[row["strategy"]]
        if row["strategy"] in quantile_bands:
            row["quantile_band"] = quantile_bands[row["strategy"]]
    horizon = max((len(f) for f in forecasts.values()), default=0)
    return {"metrics": metrics, "top": rows, "horizon": horizon}


def read_backtest(files: Outputs) -> dict[str, Any]:
    """A backtest's ``backtest.json`` as ``{"backtest": object}`` (its picks stay in ``backtest.parquet``).

    Raises:
        ResultsMissing: the file is unreadable.
    """
    with _reading(files.backtest_table):
        return {"backtest": json.loads(files.backtest_table.read_text())}


def top_strategies(path: Path, top: int) -> list[dict[str, Any]]:
    """The rows of ``summary.parquet`` ranked 1 to ``top``, best first (only those rows are read)."""
    import pyarrow.parquet as pq

    with _reading(path):
        table = pq.read_table(path, filters=[("rank", "<=", top)])
    rows = sorted(table.to_pylist(), key=lambda row: row["rank"])[:top]
    return [{key: _finite(value) for key, value in row.items()} for row in rows]


def read_forecasts(path: Path, strategies: list[Any], column: str = "forecast") -> dict[Any, list[float | None]]:
    """Each of ``strategies``' forecasts (or another ``column``) from ``forecast.parquet``, in step order.

    Only their rows are read.
    """
    import pyarrow.parquet as pq

    if not strategies:
        return {}
    with _reading(path):
        table = pq.read_table(path, columns=["strategy", "step", column], filters=[("strategy", "in", strategies)])
    steps: dict[Any, list[tuple[int, float | None]]] = {}
    for strategy, step, value in zip(*(table.column(c).to_pylist() for c in table.column_names), strict=True):
        steps.setdefault(strategy, []).append((step, _finite(value)))
    return {strategy: [value for _, value in sorted(pairs)] for strategy, pairs in steps.items()}


BAND_LEVEL = 80.0
"""The interval level whose band comes with each top strategy's forecast."""


def read_band(path: Path, strategies: list[Any]) -> dict[Any, dict[str, Any]]:
    """Each strategy's :data:`BAND_LEVEL` band ``{"level", "lo": [...], "hi": [...]}``; {} when the run has none."""
    import pyarrow.parquet as pq

    lo, hi = bound_name("lo", BAND_LEVEL), bound_name("hi", BAND_LEVEL)
    with _reading(path):
        names = pq.read_schema(path).names
    if lo not in names or hi not in names:
        return {}
    lows, highs = read_forecasts(path, strategies, lo), read_forecasts(path, strategies, hi)
    return {s: {"level": BAND_LEVEL, "lo": lows[s], "hi": highs.get(s, [])} for s in lows}


def read_quantile_band(path: Path, strategies: list[Any]) -> dict[Any, dict[str, Any]]:
    """Each strategy's band from the model's lowest to its highest quantile ``{"columns": ["q10", "q90"], ...}``.

    The band's bounds are under ``lo`` and ``hi``, in step order; {} when the run wrote fewer than two quantile
    columns (a point forecast writes none).
    """
    import pyarrow.parquet as pq

    with _reading(path):
        names = quantile_columns(pq.read_schema(path).names)
    if len(names) < 2:
        return {}
    lo, hi = names[0], names[-1]
    lows, highs = read_forecasts(path, strategies, lo), read_forecasts(path, strategies, hi)
    return {s: {"columns": [lo, hi], "lo": lows[s], "hi": highs.get(s, [])} for s in lows}


def export(src: Path, path: str, fmt: str | None) -> dict[str, Any]:
    """Write the result table ``src`` to ``path`` as parquet or CSV (None: CSV for a ``.csv`` name, else parquet).

    The table goes to a temporary file in the destination's folder first and is renamed into place, so a failed
    export leaves nothing behind.

    Returns:
        ``{"path", "rows", "format"}``.

    Raises:
        ExportRefused: ``path`` is relative, exists, or its folder does not; or writing failed (the OS error).
        ResultsMissing: ``src`` is missing or unreadable.
    """
    import pyarrow.csv as pa_csv
    import pyarrow.parquet as pq

    dest = destination(path)
    fmt = fmt or ("csv" if dest.suffix.lower() == ".csv" else "parquet")
    with _reading(src):
        table = pq.read_table(src)
    tmp = dest.with_name(f".{dest.name}.{secrets.token_hex(4)}.tmp")
    try:
        (pa_csv.write_csv if fmt == "csv" else pq.write_table)(table, str(tmp))
        os.replace(tmp, dest)
    except OSError as exc:
        with contextlib.suppress(OSError):
            tmp.unlink()
        raise ExportRefused(f"cannot write {dest}: {exc.strerror or exc}") from None
    return {"path": str(dest), "rows": table.num_rows, "format": fmt}


def destination(path: str) -> Path:
    """``path`` as a new file to export to.

    Raises:
        ExportRefused: ``path`` is relative, already exists, or its folder does not exist.
    """
    dest = Path(path)
    if not dest.is_absolute():
        raise ExportRefused(f"{path!r} is a relative path: give an absolute path on the daemon's machine")
    if dest.exists() or dest.is_symlink():
        raise ExportRefused(f"{dest} already exists: choose another name, such as {_free_name(dest)}")
    if not dest.parent.is_dir():
        raise ExportRefused(f"{dest.parent} is not a folder: create it first, or choose another path")
    return dest


def _free_name(path: Path) -> Path:
    """``NAME-2.EXT``, ``NAME-3.EXT``, ...: the first that does not exist."""
    n = 2
    while (candidate := path.with_name(f"{path.stem}-{n}{path.suffix}")).exists():
        n += 1
    return candidate


def _finite(value: Any) -> Any:
    """NaN and infinities as None (JSON has neither), times as ISO text (a date alone at midnight)."""
    if isinstance(value, dt.datetime):  # a strategy's ``last_period`` (pandas' Timestamp is one too)
        return value.date().isoformat() if value.time() == dt.time() else value.isoformat()
    return None if isinstance(value, float) and not math.isfinite(value) else value


@contextlib.contextmanager
def _reading(path: Path) -> Iterator[None]:
    """Turn a failure to read ``path`` into :class:`ResultsMissing` naming it."""
    try:
        yield
    except FileNotFoundError:
        raise ResultsMissing(f"{path} does not exist") from None
    except (OSError, ValueError) as exc:  # pyarrow's ArrowInvalid and json's JSONDecodeError are ValueErrors
        raise ResultsMissing(f"cannot read {path}: {exc}") from None
