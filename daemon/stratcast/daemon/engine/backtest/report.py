"""A backtest's files: ``backtest.parquet`` (every pick), ``backtest.json`` (the table) and ``backtest.png``.

* ``backtest.parquet``: ``cutoff, date, method, strategy, rank, forecast, realized``, one row per cutoff, method
  and eligible strategy, as the engine ranked them (any pick size can be re-scored from it); then ``lo80``,
  ``hi80``, ... : the model rows' bands around their forecast (the mean over the hold), calibrated online
  (:mod:`stratcast.daemon.engine.backtest.bands`; NaN on the other methods' rows and where a cutoff has none).
* ``backtest.json``: :func:`~stratcast.daemon.engine.backtest.stats.backtest_table`'s table (per pick size every
  method's mean, spread, hit rate, cumulative profit and curve; the model against the trailing mean with its
  interval and verdict; mean errors), with ``version``, ``meta``, ``options`` and the per-cutoff records
  (``cutoffs``: date, refit, strategies, errors, seconds) and the bands' coverage (``intervals``). Non-finite
  numbers are written as null.
* ``backtest.png``: the cumulative realized profit of each method's picks, one panel per pick size, drawn with
  matplotlib when the ``plot`` extra is installed (``pip install 'stratcast[plot]'``); without it a log line
  says so and the other files are written all the same.

Every file is written to a temp file and renamed into place, so a reader never sees half a file.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import msgspec
import numpy as np
import pandas as pd

from stratcast.daemon.engine.backtest import stats
from stratcast.daemon.engine.backtest.bands import BacktestBands
from stratcast.daemon.engine.run.outputs import finite_numbers, write_parquet_atomic
from stratcast.daemon.engine.training.checkpoint import write_json_atomic
from stratcast.shared.protocol import BacktestOptions
from stratcast.shared.runfiles import Outputs

TABLE_VERSION = 1
"""``backtest.json``'s layout version."""
LABELS = {
    stats.MODEL: "model",
    stats.MODEL_RAW: "model, raw",
    stats.TRAILING: "trailing mean",
    stats.LAST: "last value",
    stats.RANDOM: "random",
    stats.ALL: "all strategies",
    stats.BEST: "best possible",
}


def write_backtest(
    out: Path,
    picks: pd.DataFrame,
    cutoffs: list[dict[str, Any]],
    options: BacktestOptions,
    meta: dict[str, Any],
    *,
    log: Callable[[str], None] = print,
    bands: BacktestBands | None = None,
) -> dict[str, Any]:
    """Write the backtest's three files into ``out`` and return ``backtest.json``'s content.

    ``bands``: the model rows' interval bounds (columns after the others) and ``backtest.json["intervals"]``.

    Raises:
        ValueError: ``picks`` lacks a column or the model's rows (the message names them).
    """
    table = backtest_document(picks, cutoffs, options, meta)
    if bands is not None:
        table["intervals"] = finite_numbers(bands.intervals)
    out.mkdir(parents=True, exist_ok=True)
    files = Outputs(out)
    write_parquet_atomic(with_bands(picks.loc[:, list(stats.COLUMNS)], bands), files.backtest)
    write_json_atomic(files.backtest_table, table)
    if not write_chart(table, files.backtest_chart):
        log(f"matplotlib is not installed: no {files.backtest_chart.name} (pip install 'stratcast[plot]')")
    for line in table["verdicts"]:
        log(line)
    return table


def backtest_document(
    picks: pd.DataFrame, cutoffs: list[dict[str, Any]], options: BacktestOptions, meta: dict[str, Any]
) -> dict[str, Any]:
    """``backtest.json``'s content: the table, the verdicts, the per-cutoff records, meta and options."""
    table = stats.backtest_table(picks, cutoffs, options)
    document = {"version": TABLE_VERSION, "meta": meta, "options": msgspec.to_builtins(options), **table}
    document["cutoffs"] = cutoffs
    finite: dict[str, Any] = finite_numbers(document)
    return finite


def with_bands(picks: pd.DataFrame, bands: BacktestBands | None) -> pd.DataFrame:
    """``picks`` with the bounds of the model rows' hold mean (``lo80``, ``hi80``, ...; NaN on the other rows)."""
    picks = picks.reset_index(drop=True)
    if bands is None or bands.frame.empty:
        return picks
    model = picks["method"] == stats.MODEL
    bounds = picks.loc[model, ["cutoff", "strategy"]].merge(bands.frame, on=["cutoff", "strategy"], how="left")
    for name in bands.frame.columns[2:]:
        picks[name] = np.nan
        picks.loc[model, name] = bounds[name].to_numpy()
    return picks


def write_chart(table: dict[str, Any], path: Path) -> bool:
    """Draw each method's cumulative profit per pick size into ``path`` (PNG); False without matplotlib."""
    try:
        from matplotlib.figure import Figure
    except ImportError:
        return False
    sizes = table["sizes"]
    figure = Figure(figsize=(9, 3.2 * len(sizes)), layout="constrained")
    for axes, (label, size) in zip(figure.subplots(len(sizes), 1, squeeze=False)[:, 0], sizes.items(), strict=True):
        draw_size(axes, table["dates"], label, size)
    tmp = path.with_name(f".{path.name}.tmp")
    figure.savefig(tmp, format="png", dpi=110)
    os.replace(tmp, path)
    return True


def draw_size(axes: Any, dates: list[str], label: str, size: dict[str, Any]) -> None:
    """One pick size's curves on ``axes``: every method, the random picker's 5-95% band shaded."""
    x = list(range(len(dates)))
    for method, figures in size["methods"].items():
        axes.plot(x, figures["curve"], label=LABELS.get(method, method), linewidth=2 if method == stats.MODEL else 1)
        if "curve_band" in figures:
            lo, hi = figures["curve_band"]
            axes.fill_between(x, lo, hi, alpha=0.2, label="random 5-95%")
    axes.axhline(0, color="grey", linewidth=0.5)
    axes.set_title(f"top {label} ({size['k']} strategies): cumulative realized profit after cost")
    axes.set_xticks(x[:: max(1, len(x) // 8)], [dates[i] for i in x[:: max(1, len(x) // 8)]])
    axes.set_xlabel("cutoff")
    axes.legend(fontsize="small", ncols=3)
