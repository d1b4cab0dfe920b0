"""A job's quantile forecasts: the columns ``q10``, ``q50``, ``q90`` (``forecast_quantiles``) of ``forecast.parquet``.

Only a model that forecasts a distribution writes them
(:func:`~stratcast.daemon.engine.run.build.distribution_forecaster`); an ensemble writes them when every member
does. They are the model's quantiles moved with the job's final forecast
(:mod:`stratcast.daemon.engine.prediction.quantiles`), and on the holdout their band's coverage and their pinball
loss go into ``metrics.json["quantiles"]``. A point forecast's bands are the conformal intervals (``lo80``, ...).
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor

from stratcast.daemon.engine.prediction.quantiles import (
    DistributionForecaster,
    EnsembleDistribution,
    columns,
    shifted,
)
from stratcast.daemon.engine.run.build import Prepared, distribution_forecaster
from stratcast.daemon.engine.run.members import Member
from stratcast.daemon.engine.spec.runspec import RunSpec
from stratcast.shared.intervals import quantile_name


def job_distribution(spec: RunSpec, members: list[Member], prep: Prepared) -> DistributionForecaster | None:
    """The model's forecast distributions (an ensemble's averaged), or None when a member forecasts a point."""
    each = [distribution_forecaster(m.spec, m.model, prep) for m in members]
    present = [d for d in each if d is not None]
    if len(present) < len(each) or not present:
        return None
    return present[0] if len(present) == 1 else EnsembleDistribution(present)


def future_quantiles(
    spec: RunSpec, prep: Prepared, distribution: DistributionForecaster | None, future: Tensor
) -> dict[str, Tensor]:
    """``{"q10": [N, H], ...}`` around the job's final future forecast ``future`` [N, H]; {} for a point forecast."""
    if distribution is None:
        return {}
    rows = torch.arange(prep.panel.n_series, device=prep.raw.device)
    dist = distribution(prep.windows.forecast_inputs(), rows, prep.windows.end)
    return columns(shifted(dist, future), spec.train.forecast_quantiles)


def quantiles_info(spec: RunSpec, distribution: DistributionForecaster | None, holdout: Any = None) -> dict[str, Any]:
    """``metrics.json``'s ``quantiles``: the levels and columns written and their ``holdout`` scores (if any).

    Empty for a run that writes none.
    """
    if distribution is None:
        return {}
    levels = spec.train.forecast_quantiles
    info: dict[str, Any] = {"levels": list(levels), "columns": [quantile_name(q) for q in levels]}
    if holdout is not None:
        info["holdout"] = holdout
    return {"quantiles": info}
