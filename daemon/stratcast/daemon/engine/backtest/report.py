"""A backtest's output files: ``backtest.parquet`` (the long table) and ``backtest.json``.

This writes the table as it is and the per-cutoff records; the summary per method and pick size, its verdict and
the chart (``backtest.png``) come with the full report.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pandas as pd

from stratcast.daemon.engine.run.outputs import write_parquet_atomic
from stratcast.daemon.engine.training.checkpoint import write_json_atomic
from stratcast.shared.protocol import BacktestOptions
from stratcast.shared.runfiles import Outputs


def write_backtest(
    out: Path, picks: pd.DataFrame, cutoffs: list[dict[str, Any]], options: BacktestOptions, meta: dict[str, Any]
) -> dict[str, Any]:
    """Write ``backtest.parquet`` and ``backtest.json`` into ``out``; returns what ``backtest.json`` holds."""
    out.mkdir(parents=True, exist_ok=True)
    write_parquet_atomic(picks, Outputs(out).backtest)
    table = {"cutoffs": cutoffs, "meta": meta}
    write_json_atomic(Outputs(out).backtest_table, table)
    return table
