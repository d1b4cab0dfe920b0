"""Quantile forecasts of a model that forecasts a distribution, placed around the job's final point forecast.

A model gives a distribution when its head is not a point head (``quantile``, ``gaussian``, ``student-t``,
``hurdle``: :meth:`~stratcast.daemon.zoo.heads.Head.quantiles`) or when it samples its forecasts (a model with its
own loss: the empirical quantiles of the same seeded draws whose mean is its point forecast). A
:class:`Distribution` holds the model's mean beside its quantiles, so that the quantiles can follow whatever the job
does to the mean afterwards.

**Shifted with the mean.** The job's final forecast is the model's mean, blended toward the recent mean
(``blend_steps``) and combined with the baselines (``combine``); an ensemble's is its members' mean. The quantiles
are moved by the same amount as the mean, ``q + (final - mean)`` (:func:`shifted`): the distribution keeps the
model's spread around the job's forecast. Scaling the quantiles by the combination's weight on the model, as the
mean is, would shrink the band with a weight fitted to the mean's error only (a weight of 0.2 would make the band
five times narrower than the model's own uncertainty), and the holdout coverage would show it.

**Ensembles** average their members' quantiles level by level (the quantile average, or Vincentization), the
counterpart of averaging their means; every member must give a distribution.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

import torch
from torch import Tensor, nn

from stratcast.daemon.zoo.heads import OwnLoss
from stratcast.shared.intervals import quantile_name


@dataclass(frozen=True)
class Distribution:
    """A forecast distribution per series and step, as its mean and its quantiles (raw units or scaled)."""

    mean: Tensor
    """[M, H] the distribution's mean: the model's point forecast."""
    quantiles: Tensor
    """[M, H, Q] the quantiles at the job's ``forecast_quantiles``, non-decreasing along ``Q``."""

    def map(self, fn: Callable[[Tensor], Tensor]) -> Distribution:
        """The distribution with ``fn`` applied to its mean and its quantiles (an affine map keeps their order)."""
        return Distribution(fn(self.mean), fn(self.quantiles))


class DistributionForecaster(Protocol):
    """Raw forecast distributions of scaled inputs [M, L] of series ``rows`` [M] (at ``origin`` [M])."""

    def __call__(self, x: Tensor, rows: Tensor, origin: Tensor | None = None) -> Distribution:
        """Forecast; ``origin`` (each input's first forecast period) is needed by models that declare it."""
        ...


def shifted(dist: Distribution, point: Tensor) -> Tensor:
    """[M, S, Q] the quantiles moved by what the job did to the mean: ``q + (point - mean)`` (S <= H steps)."""
    steps = point.shape[1]
    return dist.quantiles[:, :steps] + (point - dist.mean[:, :steps]).to(dist.quantiles.dtype)[..., None]


def columns(quantiles: Tensor, levels: Sequence[float]) -> dict[str, Tensor]:
    """``{"q10": [M, S], ...}``: the quantiles [M, S, Q] by their columns' names."""
    return {quantile_name(level): quantiles[..., k] for k, level in enumerate(levels)}


def empirical_quantiles(draws: Tensor, levels: Sequence[float]) -> Tensor:
    """[..., Q] the quantiles of ``draws`` [n, ...] along the first dimension, interpolated linearly.

    The order statistics at positions ``level * (n - 1)``, as ``torch.quantile`` (whose input size is limited)
    computes them.
    """
    ordered = draws.sort(0).values
    n = draws.shape[0]
    pos = torch.tensor(levels, dtype=torch.float64) * (n - 1)
    lo = pos.floor().long()
    hi = (lo + 1).clamp(max=n - 1)
    frac = (pos - lo).to(device=draws.device, dtype=draws.dtype).view(-1, *(1,) * (draws.dim() - 1))  # [Q, 1, ...]
    values: Tensor = ordered[lo] + (ordered[hi] - ordered[lo]) * frac  # [Q, ...]
    return values.movedim(0, -1)  # [Q, ...] -> [..., Q]


@torch.no_grad()
def sample_distribution(
    model: OwnLoss,
    x: Tensor,
    side: dict[str, Tensor],
    levels: Sequence[float],
    *,
    seed: int,
    n: int,
    chunk: int,
) -> Distribution:
    """The mean and quantiles of ``n`` forecast draws per row of ``x`` [M, L], reproducible from ``seed``.

    The draws are those of :func:`~stratcast.daemon.engine.prediction.forecast.sample_mean` with the same ``seed``,
    ``n`` and ``chunk`` (one generator through the chunks in order), so the mean is the model's point forecast.
    """
    if isinstance(model, nn.Module):
        model.eval()
    generator = torch.Generator(device=x.device).manual_seed(seed)
    means, quantiles = [], []
    for lo in range(0, x.shape[0], chunk):
        part = {k: v[lo : lo + chunk] for k, v in side.items()}
        draws = model.sample(x[lo : lo + chunk], n, generator, **part).float()  # [n, m, H]
        means.append(draws.mean(0))
        quantiles.append(empirical_quantiles(draws, levels))
    if not means:
        return Distribution(x.new_zeros(0), x.new_zeros(0))
    return Distribution(torch.cat(means), torch.cat(quantiles))


class EnsembleDistribution:
    """The members' mean distribution: their means and their quantiles averaged level by level."""

    def __init__(self, members: Sequence[DistributionForecaster]) -> None:
        self.members = list(members)

    def __call__(self, x: Tensor, rows: Tensor, origin: Tensor | None = None) -> Distribution:
        """[M, H] and [M, H, Q]: the average over the members."""
        each = [member(x, rows, origin) for member in self.members]
        mean = torch.stack([d.mean for d in each]).mean(0)  # [K, M, H] -> [M, H]
        return Distribution(mean, torch.stack([d.quantiles for d in each]).mean(0))


def quantile_scores(quantiles: Tensor, realized: Tensor, levels: Sequence[float]) -> dict[str, Any]:
    """How the quantiles [M, S, Q] did against ``realized`` [M, S]: coverage and pinball loss (raw units).

    ``coverage``: the share of realized values inside the band from the lowest to the highest quantile (its nominal
    coverage is the difference of their levels); ``below``: per column, the share of realized values at or below
    it (ideally its level); ``pinball``: per column and averaged over them, the mean pinball loss.
    """
    q = quantiles.double()
    y = realized.double()[..., None]  # [M, S, 1]
    tau = torch.tensor(levels, dtype=torch.float64, device=q.device)
    err = y - q  # [M, S, Q]
    pinball = torch.maximum(tau * err, (tau - 1) * err).flatten(0, -2).mean(0)  # [Q]
    below = (y <= q).double().flatten(0, -2).mean(0)  # [Q]
    names = [quantile_name(level) for level in levels]
    scores: dict[str, Any] = {
        "below": {name: float(v) for name, v in zip(names, below, strict=True)},
        "pinball": float(pinball.mean()),
        "pinball_by_column": {name: float(v) for name, v in zip(names, pinball, strict=True)},
    }
    if len(levels) >= 2:
        inside = (y[..., 0] >= q[..., 0]) & (y[..., 0] <= q[..., -1])
        scores["band"] = [names[0], names[-1]]
        scores["nominal"] = round(levels[-1] - levels[0], 10)
        scores["coverage"] = float(inside.double().mean())
    return scores
