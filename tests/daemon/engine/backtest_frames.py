"""Synthetic backtest results of the engine's exact shape: the ``picks`` frame and the per-cutoff records."""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd

from stratcast.shared.protocol import BacktestOptions


def ranks(forecast: np.ndarray) -> np.ndarray:
    """1 for the highest forecast, ties broken by position."""
    order = np.argsort(-forecast, kind="stable")
    out = np.empty(forecast.shape[0], dtype=np.int64)
    out[order] = np.arange(1, forecast.shape[0] + 1)
    return out


def picks_frame(realized: np.ndarray, forecasts: dict[str, np.ndarray], dates: list[str] | None = None) -> pd.DataFrame:
    """The picks of ``forecasts[method]`` [cutoffs, N] against ``realized`` [cutoffs, N]; ``best`` is added."""
    forecasts = {**forecasts, "best": realized}
    rows = []
    for c in range(realized.shape[0]):
        for method, forecast in forecasts.items():
            rows.append(
                pd.DataFrame(
                    {
                        "cutoff": c * 4 + 100,
                        "date": (dates or [f"2019-W{c + 1:02d}" for c in range(realized.shape[0])])[c],
                        "method": method,
                        "strategy": [f"s{i:03d}" for i in range(realized.shape[1])],
                        "rank": ranks(forecast[c]),
                        "forecast": forecast[c].astype(np.float64),
                        "realized": realized[c].astype(np.float64),
                    }
                )
            )
    return pd.concat(rows, ignore_index=True)


def cutoff_records(picks: pd.DataFrame, rmse: dict[str, float] | None = None) -> list[dict[str, Any]]:
    """One record per cutoff of ``picks``, each with the same errors (``rmse`` per method)."""
    rmse = rmse or {"model": 1.0, "zero": 1.25, "trailing_mean": 0.8}
    first = picks.drop_duplicates("cutoff").sort_values("cutoff")
    return [
        {
            "cutoff": int(c),
            "date": str(d),
            "refit": i % 4 == 0,
            "strategies": int((picks["cutoff"] == c).sum() // picks["method"].nunique()),
            "errors": {m: {"mae": v, "rmse": v, "total_mae": 2 * v} for m, v in rmse.items()},
            "seconds": 0.5,
        }
        for i, (c, d) in enumerate(zip(first["cutoff"], first["date"], strict=True))
    ]


def synthetic_backtest(
    cutoffs: int = 12, strategies: int = 40, skill: float = 1.0, seed: int = 0, **options: Any
) -> tuple[pd.DataFrame, list[dict[str, Any]], BacktestOptions]:
    """A backtest whose model sees the realized profit through noise (``skill`` 0: none; higher: more)."""
    rng = np.random.default_rng(seed)
    level = rng.normal(0, 1, strategies)  # [N] persistent strategy quality
    realized = level + rng.normal(0, 2, (cutoffs, strategies))  # [cutoffs, N]
    forecasts = {
        "model": skill * realized + rng.normal(0, 1, (cutoffs, strategies)),
        "trailing_mean": level + rng.normal(0, 2, (cutoffs, strategies)),
        "last_value": rng.normal(0, 1, (cutoffs, strategies)),
    }
    picks = picks_frame(realized, forecasts)
    return picks, cutoff_records(picks), BacktestOptions(**{"top": ["5", "10%"], "draws": 200, **options})
