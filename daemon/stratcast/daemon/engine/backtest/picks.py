"""The rankings of one cutoff: every eligible strategy, ranked by each method's forecast, with its realized profit.

Methods: ``model`` (the model's forecast mean over the holding; with a combination its ranking score,
:meth:`~stratcast.daemon.engine.prediction.combine.Combination.ranking_score`), ``model_raw`` (the raw model's
forecast mean, when the model's forecast is combined), ``trailing_mean`` and ``last_value`` (the baselines of
:func:`~stratcast.daemon.engine.evaluation.skill.baselines` from the cutoff), and ``best`` (the realized mean
itself: the oracle, the best possible pick). Rank 1 is the highest forecast; ties keep the panel's
order. Random picks and "all strategies" are derived from these rows by the report.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd
import torch
from torch import Tensor

from stratcast.daemon.engine.evaluation import skill

BEST = "best"
METHODS = (skill.MODEL, skill.MODEL_RAW, skill.TRAILING, skill.LAST, BEST)
"""The ranking methods, in the table's order (``model_raw`` only where the model's forecast is combined)."""
COLUMNS = ("cutoff", "date", "method", "strategy", "rank", "forecast", "realized")
"""The columns of the backtest's long table, in order."""
ERROR_METHODS = (skill.MODEL, skill.ZERO, skill.TRAILING)
"""The forecasts whose errors over each holding are recorded."""


def ranks(score: np.ndarray[Any, Any]) -> np.ndarray[Any, Any]:
    """[M] int64 rank of each score, 1 for the highest; equal scores keep their order."""
    order = np.argsort(-score, kind="stable")
    out = np.empty(score.shape[0], dtype=np.int64)
    out[order] = np.arange(1, score.shape[0] + 1)
    return out


def cutoff_rows(
    cutoff: int, date: str, strategies: np.ndarray[Any, Any], means: dict[str, Tensor], realized: Tensor
) -> pd.DataFrame:
    """The long table's rows of one cutoff: one per strategy and method of :data:`METHODS` in ``means`` (and best).

    Args:
        cutoff: The cutoff's grid period.
        date: Its time label.
        strategies: [M] the eligible strategies' ids as str.
        means: Each method's (but ``best``'s) forecast mean per period over the holding (its ranking score), [M] each.
        realized: [M] the realized mean profit per period over the holding (before costs).
    """
    real = realized.double().cpu().numpy()
    scores = {**{k: v.double().cpu().numpy() for k, v in means.items()}, BEST: real}
    frames = [
        pd.DataFrame(
            {
                "cutoff": np.full(real.shape[0], cutoff, dtype=np.int64),
                "date": date,
                "method": method,
                "strategy": strategies,
                "rank": ranks(scores[method]),
                "forecast": scores[method],
                "realized": real,
            }
        )
        for method in METHODS
        if method in scores
    ]
    return pd.concat(frames, ignore_index=True)[list(COLUMNS)]


def hold_errors(realized: Tensor, forecasts: dict[str, Tensor]) -> dict[str, dict[str, float]]:
    """The error figures of each forecast [M, W] over the holding ``realized`` [M, W].

    They are :func:`~stratcast.daemon.engine.evaluation.skill.score`'s: MAE, RMSE and the error of the total.
    """
    errors: dict[str, dict[str, float]] = skill.score(realized.cpu(), {k: v.cpu() for k, v in forecasts.items()})[
        "errors"
    ]
    return errors


def empty_rows() -> pd.DataFrame:
    """The long table with no rows, its columns typed."""
    return pd.DataFrame(
        {
            "cutoff": pd.Series(dtype="int64"),
            "date": pd.Series(dtype="object"),
            "method": pd.Series(dtype="object"),
            "strategy": pd.Series(dtype="object"),
            "rank": pd.Series(dtype="int64"),
            "forecast": pd.Series(dtype="float64"),
            "realized": pd.Series(dtype="float64"),
        }
    )


def as_str_ids(ids: np.ndarray[Any, Any]) -> np.ndarray[Any, Any]:
    """Strategy ids as str, as the table holds them."""
    return np.array([str(i) for i in ids], dtype=object)


def mean_over(values: Tensor, steps: int) -> Tensor:
    """[M] mean of the first ``steps`` columns of ``values`` [M, H]."""
    return values[:, :steps].double().mean(1) if steps else torch.zeros(values.shape[0], dtype=torch.float64)
