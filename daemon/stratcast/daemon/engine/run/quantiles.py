"""A job's quantile forecasts: the columns ``q10``, ``q50``, ``q90`` (``forecast_quantiles``) of ``forecast.parquet``.

Only a model that forecasts a distribution writes them
(:func:`~stratcast.daemon.engine.run.build.distribution_forecaster`); an ensemble writes them when every member
does. They are the model's quantiles moved with the job's final forecast
(:mod:`stratcast.daemon.engine.prediction.quantiles`), and on the holdout their band's coverage and their pinball
loss go into ``metrics.json["quantiles"]``. A point forecast's bands are the conformal intervals (``lo80``, ...).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
from torch import Tensor

from stratcast.daemon.engine.prediction.forecast import OriginMemo
from stratcast.daemon.engine.prediction.quantiles import (
    Distribution,
    DistributionForecaster,
    EnsembleDistribution,
    columns,
    shifted,
)
from stratcast.daemon.engine.run.build import Prepared, distribution_forecaster, sampler
from stratcast.daemon.engine.run.members import Member
from stratcast.daemon.engine.spec.runspec import RunSpec
from stratcast.shared.intervals import quantile_name


class Drawn:
    """A sampling member's forecast distribution, drawn for each (series row, origin) once.

    Its mean is the member's point forecast (:meth:`point`: the mean of the same draws, as
    :func:`~stratcast.daemon.engine.prediction.quantiles.sample_distribution` says), so the holdout's scores,
    coverage and quantiles share one set of ``SAMPLES`` draws, as do the future forecast, its ranking score and its
    quantiles: two passes of the sampler where there were six.
    """

    def __init__(self, distribution: DistributionForecaster, n_periods: int) -> None:
        def stacked(x: Tensor, rows: Tensor, origin: Tensor | None) -> Tensor:
            dist = distribution(x, rows, origin)
            return torch.cat([dist.mean[..., None], dist.quantiles], dim=-1)  # [M, H, 1 + Q]

        self.memo = OriginMemo(stacked, n_periods)

    def __call__(self, x: Tensor, rows: Tensor, origin: Tensor | None = None) -> Distribution:
        """The distributions of inputs ``x`` [M, L] of ``rows`` [M] at ``origin`` [M]."""
        both = self.memo(x, rows, origin)
        return Distribution(both[..., 0], both[..., 1:])

    def point(self, x: Tensor, rows: Tensor, origin: Tensor | None = None) -> Tensor:
        """[M, H] the point forecasts: the distributions' means."""
        return self.memo(x, rows, origin)[..., 0]


def drawn_members(members: list[Member], prep: Prepared) -> list[Drawn | None]:
    """Each member that samples its forecasts and writes quantiles as :class:`Drawn`; None for the others."""
    out: list[Drawn | None] = []
    for m in members:
        dist = None if sampler(m.spec, m.model) is None else distribution_forecaster(m.spec, m.model, prep)
        out.append(None if dist is None else Drawn(dist, prep.raw.shape[1]))
    return out


def job_distribution(
    spec: RunSpec, members: list[Member], prep: Prepared, drawn: Sequence[Drawn | None] = ()
) -> DistributionForecaster | None:
    """The model's forecast distributions (an ensemble's averaged), or None when a member forecasts a point.

    ``drawn``: the members' :func:`drawn_members`, whose draws the point forecasts share.
    """
    each = [
        d or distribution_forecaster(m.spec, m.model, prep)
        for m, d in zip(members, drawn or [None] * len(members), strict=True)
    ]
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
