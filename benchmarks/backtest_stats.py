"""Time the backtest's statistics and files at the real report's size, with naive rankers standing in for a model.

The picks come from the real strategy report: at each cutoff every strategy's realized mean profit over the next
``--hold`` weeks, ranked by its mean over the last 13 weeks (standing in for the model), its trailing mean over
52 weeks, its last week, and the realized profit (the best). No model is trained: this measures the statistics
and the files (parquet, JSON, PNG), and prints the table, so a reader sees the report on real data.

    .venv/bin/python benchmarks/backtest_stats.py [--data REPORT] [--cutoffs 12] [--every 4] [--hold 4] [--draws 1000]
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd

from stratcast.daemon.engine.backtest.report import write_backtest
from stratcast.daemon.engine.backtest.stats import backtest_table
from stratcast.shared.backtest_report import backtest_text
from stratcast.shared.protocol import BacktestOptions

REPORT = Path(__file__).resolve().parents[2] / "shared" / "data" / "strategies" / "eurusd_2016_2019_weekly.parquet"


def wide(path: Path) -> tuple[np.ndarray, list[str], list[str]]:
    """[N, T] weekly profit (a missing week is 0), the strategy ids and the week labels."""
    frame = pd.read_parquet(path).pivot_table(index="No.", columns="week", values="profit", aggfunc="sum")
    labels = [str(pd.Timestamp(w).date()) for w in frame.columns]
    return frame.fillna(0.0).to_numpy(np.float64), [str(s) for s in frame.index], labels


def picks(values: np.ndarray, ids: list[str], weeks: list[str], options: BacktestOptions) -> pd.DataFrame:
    """The picks frame of the naive rankers at each cutoff."""
    t_end, hold = values.shape[1], options.hold_periods
    cutoffs = [t_end - hold - i * options.every for i in reversed(range(options.cutoffs))]
    rows = []
    for c in cutoffs:
        realized = values[:, c : c + hold].mean(axis=1)  # [N]
        rankers = {
            "model": values[:, c - 13 : c].mean(axis=1),
            "trailing_mean": values[:, c - 52 : c].mean(axis=1),
            "last_value": values[:, c - 1],
            "best": realized,
        }
        for method, forecast in rankers.items():
            rank = np.empty(len(ids), dtype=np.int64)
            rank[np.argsort(-forecast, kind="stable")] = np.arange(1, len(ids) + 1)
            rows.append(
                pd.DataFrame(
                    {"cutoff": c, "date": weeks[c], "method": method, "strategy": ids, "rank": rank}
                    | {"forecast": forecast, "realized": realized}
                )
            )
    return pd.concat(rows, ignore_index=True)


def main() -> None:
    """Build the picks, time the table and the files, print the table."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=REPORT)
    parser.add_argument("--cutoffs", type=int, default=12)
    parser.add_argument("--every", type=int, default=4)
    parser.add_argument("--hold", type=int, default=4)
    parser.add_argument("--draws", type=int, default=1000)
    args = parser.parse_args()
    options = BacktestOptions(cutoffs=args.cutoffs, every=args.every, hold=args.hold, draws=args.draws, cost=0.5)
    values, ids, weeks = wide(args.data)
    frame = picks(values, ids, weeks, options)
    started = time.perf_counter()
    backtest_table(frame, [], options)
    table_s = time.perf_counter() - started
    with tempfile.TemporaryDirectory() as out:
        started = time.perf_counter()
        table = write_backtest(Path(out), frame, [], options, {"model": "13-week mean"}, log=lambda line: None)
        files_s = time.perf_counter() - started
    print(backtest_text(table))
    print(f"\n{len(ids)} strategies x {args.cutoffs} cutoffs x 4 rankings = {len(frame):,} rows, {args.draws} draws")
    print(f"backtest_table: {table_s:.2f} s; write_backtest (table, parquet, JSON, PNG): {files_s:.2f} s")


if __name__ == "__main__":
    main()
