"""Output heads: what a model's outputs mean, how training scores them, and which forecasts they give.

A zoo model maps ``[B, L]`` to ``[B, H, P]``: ``P`` raw outputs per forecast step. The head says what they are.
It is built once from the training options (``make_head(kind, delta=..., levels=...)``; the engine calls it from
``TrainConfig.head``) and the model is built with ``n_outputs = head.n_params``. The contract of a :class:`Head`:

* ``n_params``: the raw outputs per forecast step the model must produce.
* ``loss(out, y) -> [..., H]``: the elementwise loss of outputs ``[..., H, P]`` (float32) against targets
  ``[..., H]``; the trainer masks it and averages over scored targets. Leading dimensions are free (per-strategy
  training passes ``[N, b, H, P]``). Distribution heads use the negative log-likelihood.
* ``mean(out) -> [..., H]``: the point forecast, by which strategies are ranked. It is always the **mean** of the
  forecast distribution, never its median: on weekly strategy profits that are 30-60% exact zeros the median is
  0 and ranks nothing. A point head's single output is its own point forecast (for ``mae`` that is a median
  estimate: the reason the engine warns about ``mae`` on zero-heavy panels).
* ``quantiles(out, levels) -> [..., H, Q]`` and ``sample(out, n, generator) -> [n, ..., H]``: both through the
  head's quantile function ``icdf(out, u)`` (samples are the quantile function at uniform draws of
  ``generator``, so equal generators give equal samples). A point head is a point mass: every quantile and
  every sample is its point forecast.

Raw outputs are unconstrained; each head maps them to valid parameters (softplus for scales, increments and
degrees of freedom, a sigmoid for a probability). The heads:

========== ======== ======================================================================================
loss       n_params what it is for
========== ======== ======================================================================================
mse        1        the mean, directly (the default); sensitive to outliers
mae        1        the median: collapses to 0 on zero-heavy panels (for level series)
huber      1        the mean with outliers damped: squared error below ``delta``, absolute above
quantile   Q        the quantiles at ``levels`` (pinball loss); non-crossing by construction; mean from them
gaussian   2        a normal distribution (mean, scale)
student-t  3        a Student-t (location, scale, df > 2): heavy-tailed profits
hurdle     4        P(exact zero week) times a Student-t for the non-zero value: zero-heavy profits
========== ======== ======================================================================================

Models that train with a loss of their own (a diffusion forecaster noises the target and calls its network again)
implement :class:`OwnLoss` instead of relying on a head's loss; the trainer then calls ``training_loss``.
"""

from __future__ import annotations

import itertools
import math
from abc import ABC, abstractmethod
from collections.abc import Sequence
from typing import Protocol, runtime_checkable

import torch
from torch import Tensor
from torch.nn import functional as F

from stratcast.daemon.zoo import studentt

LOSSES = ("mse", "mae", "huber", "quantile", "gaussian", "student-t", "hurdle")
SCALE_FLOOR = 1e-3
"""Smallest scale of a distribution head, in scaled units: a vanishing scale would make the likelihood explode."""
MIN_DF = 2.0
"""The Student-t's degrees of freedom are ``MIN_DF + softplus(raw)``: above 2, so its mean and variance exist."""


class Head(ABC):
    """What a model's ``P`` raw outputs per forecast step mean (see the module docstring for the contract)."""

    n_params: int
    """Raw outputs per forecast step the model must produce (its ``n_outputs``)."""

    @abstractmethod
    def loss(self, out: Tensor, y: Tensor) -> Tensor:
        """Elementwise loss ``[..., H]`` of outputs ``[..., H, P]`` against targets ``[..., H]``."""

    @abstractmethod
    def mean(self, out: Tensor) -> Tensor:
        """The point forecast ``[..., H]``: the forecast distribution's mean."""

    @abstractmethod
    def icdf(self, out: Tensor, u: Tensor) -> Tensor:
        """The quantile function at levels ``u`` in (0, 1), shaped ``[..., *out.shape[:-1]]``, to ``u``'s shape."""

    def quantiles(self, out: Tensor, levels: Sequence[float]) -> Tensor:
        """The forecast quantiles ``[..., H, Q]`` at ``levels`` (each in (0, 1))."""
        u = torch.tensor(levels, dtype=out.dtype, device=out.device)
        u = u.view(-1, *(1,) * (out.dim() - 1)).expand(len(levels), *out.shape[:-1])  # [Q] -> [Q, ..., H]
        return self.icdf(out, u).movedim(0, -1)  # [Q, ..., H] -> [..., H, Q]

    def sample(self, out: Tensor, n: int, generator: torch.Generator | None = None) -> Tensor:
        """``n`` draws ``[n, ..., H]`` from the forecast distribution (reproducible from ``generator``)."""
        u = torch.rand((n, *out.shape[:-1]), generator=generator, device=out.device, dtype=out.dtype)
        return self.icdf(out, u.clamp(min=torch.finfo(out.dtype).tiny))  # rand may give 0: an infinite quantile


@runtime_checkable
class OwnLoss(Protocol):
    """A model that trains with a loss of its own instead of a head's loss of its outputs.

    The trainer calls ``training_loss`` where it would call the model and then ``head.loss``; it masks and
    averages the result as it does a head's. A diffusion forecaster, for example, noises ``y`` and calls its
    network on the noisy target.
    """

    def training_loss(self, x: Tensor, y: Tensor, **side: Tensor) -> Tensor:
        """The elementwise loss ``[B, H]`` of windows ``x`` ``[B, L]`` against their targets ``y`` ``[B, H]``.

        ``side`` holds the side inputs the model declares (``ids``, ``origin``), as its ``forward`` gets them.
        """
        ...

    def sample(self, x: Tensor, n: int, generator: torch.Generator | None, **side: Tensor) -> Tensor:
        """``n`` forecast draws ``[n, B, H]`` for windows ``x`` ``[B, L]``; the forecast is their mean."""
        ...


# -- point heads -----------------------------------------------------------------------------------------------


class PointHead(Head):
    """One output per step, the point forecast itself; its distribution is a point mass there."""

    n_params = 1

    def mean(self, out: Tensor) -> Tensor:
        """The single output."""
        return out[..., 0]

    def icdf(self, out: Tensor, u: Tensor) -> Tensor:
        """The point forecast at every level."""
        return out[..., 0].expand_as(u)


class MSEHead(PointHead):
    """Squared error: its minimiser is the mean."""

    def loss(self, out: Tensor, y: Tensor) -> Tensor:
        """``(out - y)^2``."""
        diff = out[..., 0] - y
        return diff.square()


class MAEHead(PointHead):
    """Absolute error: its minimiser is the median (0 on zero-heavy panels)."""

    def loss(self, out: Tensor, y: Tensor) -> Tensor:
        """``|out - y|``."""
        diff = out[..., 0] - y
        return diff.abs()


class HuberHead(PointHead):
    """Huber loss: squared below ``delta`` (scaled units), linear above."""

    def __init__(self, delta: float = 1.0) -> None:
        self.delta = delta

    def loss(self, out: Tensor, y: Tensor) -> Tensor:
        """``0.5 e^2`` for ``|e| <= delta``, else ``delta (|e| - 0.5 delta)``."""
        return F.huber_loss(out[..., 0], y, reduction="none", delta=self.delta)


# -- quantiles ---------------------------------------------------------------------------------------------------


class QuantileHead(Head):
    """The quantiles at fixed ``levels``, trained with the pinball loss.

    Non-crossing by construction: the first output is the lowest level's quantile and each further output is the
    softplus of the increment to the next level, so the quantiles never decrease from level to level.

    Between the levels the quantile function is linear; below the lowest and above the highest it goes on linearly
    with the slope of the nearest segment (flat with a single level). The mean is that quantile function's integral
    over (0, 1), exact for the piecewise-linear function: trapezoids between levels plus the two linear tails. With
    levels spread over (0, 1) it is close to the true mean; with only a few central levels the tails, which carry
    much of a heavy-tailed distribution's mean, are guessed linearly.
    """

    def __init__(self, levels: Sequence[float]) -> None:
        if not levels or any(not 0 < q < 1 for q in levels) or any(b <= a for a, b in itertools.pairwise(levels)):
            raise ValueError(f"quantile levels must increase strictly within (0, 1), got {tuple(levels)}")
        self.levels = tuple(levels)
        self.n_params = len(levels)

    def values(self, out: Tensor) -> Tensor:
        """The quantiles ``[..., H, Q]`` at the head's levels, non-decreasing along ``Q``."""
        increments = F.softplus(out[..., 1:])
        return torch.cat([out[..., :1], out[..., :1] + increments.cumsum(-1)], dim=-1)

    def loss(self, out: Tensor, y: Tensor) -> Tensor:
        """The pinball loss averaged over the levels."""
        q = torch.tensor(self.levels, device=out.device, dtype=out.dtype)
        err = y[..., None] - self.values(out)  # [..., H, 1] - [..., H, Q]
        return torch.maximum(q * err, (q - 1) * err).mean(-1)

    def mean(self, out: Tensor) -> Tensor:
        """The integral of the piecewise-linear quantile function (see the class docstring)."""
        v = self.values(out)
        if v.shape[-1] == 1:
            return v[..., 0]
        tau = torch.tensor(self.levels, device=out.device, dtype=out.dtype)
        width = tau[1:] - tau[:-1]
        inner = ((v[..., 1:] + v[..., :-1]) / 2 * width).sum(-1)
        slope_lo = (v[..., 1] - v[..., 0]) / width[0]
        slope_hi = (v[..., -1] - v[..., -2]) / width[-1]
        lo, hi = tau[0], 1 - tau[-1]
        return inner + lo * (v[..., 0] - slope_lo * lo / 2) + hi * (v[..., -1] + slope_hi * hi / 2)

    def icdf(self, out: Tensor, u: Tensor) -> Tensor:
        """Linear interpolation between the levels, linear extrapolation beyond them."""
        v = self.values(out)
        if v.shape[-1] == 1:
            return v[..., 0].expand_as(u)
        tau = torch.tensor(self.levels, device=out.device, dtype=out.dtype)
        hi = torch.searchsorted(tau, u.contiguous()).clamp(1, len(self.levels) - 1)  # the segment's upper knot
        v = v.expand(*u.shape, v.shape[-1])  # [..., H, Q] -> [n, ..., H, Q]
        v_hi = v.gather(-1, hi[..., None])[..., 0]
        v_lo = v.gather(-1, hi[..., None] - 1)[..., 0]
        t_hi, t_lo = tau[hi], tau[hi - 1]
        return v_lo + (v_hi - v_lo) / (t_hi - t_lo) * (u - t_lo)


# -- distributions -----------------------------------------------------------------------------------------------


def _scale(raw: Tensor) -> Tensor:
    """A positive scale from a raw output: softplus plus :data:`SCALE_FLOOR`."""
    return F.softplus(raw) + SCALE_FLOOR


class GaussianHead(Head):
    """A normal distribution per step: outputs (mean, raw scale)."""

    n_params = 2

    def loss(self, out: Tensor, y: Tensor) -> Tensor:
        """The negative log-likelihood ``log s + (y - m)^2 / (2 s^2) + log(2 pi) / 2``."""
        loc, scale = out[..., 0], _scale(out[..., 1])
        z = (y - loc) / scale
        return torch.log(scale) + 0.5 * z.square() + 0.5 * math.log(2 * math.pi)

    def mean(self, out: Tensor) -> Tensor:
        """The location."""
        return out[..., 0]

    def icdf(self, out: Tensor, u: Tensor) -> Tensor:
        """``m + s * ndtri(u)``."""
        value: Tensor = out[..., 0] + _scale(out[..., 1]) * torch.special.ndtri(u)
        return value


def _t_params(out: Tensor) -> tuple[Tensor, Tensor, Tensor]:
    """Location, scale and degrees of freedom from three raw outputs ``[..., 3]``."""
    return out[..., 0], _scale(out[..., 1]), MIN_DF + F.softplus(out[..., 2])


def _t_nll(out: Tensor, y: Tensor) -> Tensor:
    """The Student-t negative log-likelihood of ``y`` under raw outputs ``[..., 3]``."""
    loc, scale, df = _t_params(out)
    return torch.log(scale) - studentt.log_density((y - loc) / scale, df)


class StudentTHead(Head):
    """A Student-t per step: outputs (location, raw scale, raw degrees of freedom); ``df = 2 + softplus(raw)``.

    Heavy tails make the likelihood robust to the outlier weeks of strategy profits; ``df > 2`` keeps the mean
    (the location) and the variance finite.
    """

    n_params = 3

    def loss(self, out: Tensor, y: Tensor) -> Tensor:
        """The negative log-likelihood (with ``lgamma``; see :func:`studentt.log_density`)."""
        return _t_nll(out, y)

    def mean(self, out: Tensor) -> Tensor:
        """The location."""
        return out[..., 0]

    def icdf(self, out: Tensor, u: Tensor) -> Tensor:
        """``loc + scale * t_df^-1(u)``."""
        loc, scale, df = _t_params(out)
        return loc + scale * studentt.icdf(u, df)


class HurdleHead(Head):
    """A zero week with probability ``p``, else a Student-t value: outputs (logit p, then the Student-t's three).

    The loss is ``-log p`` for a target exactly 0 and ``-log(1 - p) - log t(y)`` otherwise; the mean is
    ``(1 - p) * loc``. Valid only when scaling keeps zeros exactly 0 (the engine refuses other scalers).
    """

    n_params = 4

    def loss(self, out: Tensor, y: Tensor) -> Tensor:
        """The mixture's negative log-likelihood (``-log sigmoid(l) = softplus(-l)``)."""
        logit = out[..., 0]
        return torch.where(y == 0, F.softplus(-logit), F.softplus(logit) + _t_nll(out[..., 1:], y))

    def mean(self, out: Tensor) -> Tensor:
        """``(1 - p) * loc``."""
        return torch.sigmoid(-out[..., 0]) * out[..., 1]

    def icdf(self, out: Tensor, u: Tensor) -> Tensor:
        """The mixture's quantile function: the point mass at 0 covers ``[(1 - p) T(0), (1 - p) T(0) + p]``."""
        p = torch.sigmoid(out[..., 0])
        loc, scale, df = _t_params(out[..., 1:])
        below = (1 - p) * studentt.cdf(-loc / scale, df)  # P(value < 0)
        level = torch.where(u < below, u, u - p) / (1 - p)  # the Student-t's own level on either side of 0
        value = loc + scale * studentt.icdf(level.clamp(torch.finfo(u.dtype).tiny, 1 - 1e-7), df)
        return torch.where((u >= below) & (u <= below + p), torch.zeros_like(value), value)


def make_head(kind: str, *, delta: float = 1.0, levels: Sequence[float] = (0.1, 0.5, 0.9)) -> Head:
    """The head for training loss ``kind`` (one of :data:`LOSSES`).

    Raises:
        ValueError: for an unknown kind, or quantile levels that do not increase strictly within (0, 1).
    """
    heads: dict[str, type[Head]] = {
        "mse": MSEHead,
        "mae": MAEHead,
        "gaussian": GaussianHead,
        "student-t": StudentTHead,
        "hurdle": HurdleHead,
    }
    if kind == "huber":
        return HuberHead(delta)
    if kind == "quantile":
        return QuantileHead(levels)
    if kind not in heads:
        raise ValueError(f"unknown loss {kind!r}; one of {', '.join(LOSSES)}")
    return heads[kind]()
