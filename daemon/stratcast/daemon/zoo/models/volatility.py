"""Neural volatility model: an MLP for the conditional mean and a neural GARCH(1, 1) for the conditional variance.

GARCH(1, 1) (Bollerslev, "Generalized Autoregressive Conditional Heteroskedasticity", Journal of Econometrics,
1986) writes a series as ``r_t = mu_t + eps_t`` with ``eps_t`` of conditional variance

    sigma^2_t = omega + alpha * eps^2_{t-1} + beta * sigma^2_{t-1},   omega > 0, alpha >= 0, beta >= 0,

covariance-stationary when ``alpha + beta < 1``, with unconditional variance ``omega / (1 - alpha - beta)``. Its
variance forecast ``h`` steps past the last residual follows ``E[sigma^2_{T+h}] = omega + (alpha + beta)
E[sigma^2_{T+h-1}]``, so it decays geometrically from the one-step forecast toward the unconditional variance: a
calm strategy stays calm, one that just had a big week is uncertain for a while, and both settle at their level.

Here, for each window ``x`` [B, L]:

1. the mean network (an MLP over the window, as ``mlp.py``) forecasts the mean of every horizon step;
2. a small network over the window's residuals gives that window's ``(omega, alpha, beta)``: a neural GARCH, whose
   parameterisation enforces ``omega >= OMEGA_MIN > 0``, ``alpha, beta >= 0`` and ``alpha + beta <=
   max_persistence < 1`` for any raw value (:func:`garch_parameters`);
3. the residuals inside the window are taken about the window's mean (the constant-mean GARCH of Bollerslev's
   paper), the recursion starts from their sample variance, runs over the window to the one-step variance
   (:func:`window_variance`, in closed form), and is carried over the horizon by the expectation recursion
   (:func:`horizon_variance`).

Outputs follow the Gaussian head's layout (``zoo/heads.py``): output 0 the mean, output 1 the raw scale, which the
head maps to ``sigma = softplus(raw) + SCALE_FLOOR``; the model emits ``raw = softplus^-1(sigma - SCALE_FLOOR)``,
so the head's sigma is the GARCH sigma exactly. The catalog trains it with ``loss=gaussian`` (the Gaussian NLL of
the GARCH papers). Other losses still run: with a point loss (one output) it is the mean network alone and the
variance part is idle; with ``student-t`` the GARCH sigma is the t's scale and the third output (the degrees of
freedom) is a linear read-out of the mean network's features. The quantile and hurdle heads lay out their outputs
otherwise and gain nothing from the variance part.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Self

import torch
from torch import Tensor, nn
from torch.nn import functional as F

from stratcast.daemon.zoo.blocks.layers import mlp
from stratcast.daemon.zoo.contract import ACTIVATIONS, ModelConfig, check_model_args, param
from stratcast.daemon.zoo.heads import SCALE_FLOOR
from stratcast.daemon.zoo.search import among, floats, ints

OMEGA_MIN = 1e-4
"""Smallest ``omega`` (scaled units): every variance is at least this, so sigma stays above the head's floor."""


@dataclass(frozen=True, kw_only=True)
class VolatilityConfig(ModelConfig):
    """Neural volatility (MLP mean, neural GARCH(1, 1) variance) architecture."""

    hidden_size: int = param(
        256, lo=1, hi=16384, search=among(64, 128, 256, 512, 1024), help="width of the mean network's hidden layers"
    )
    num_layers: int = param(2, lo=1, hi=32, search=ints(1, 4), help="hidden layers of the mean network")
    dropout: float = param(0.0, lo=0.0, hi=0.9, search=floats(0.0, 0.5), help="dropout in the mean network")
    activation: str = param(
        "relu", choices=ACTIVATIONS, search=among(*ACTIVATIONS), help="nonlinearity of both networks"
    )
    garch_hidden: int = param(
        32, lo=1, hi=4096, search=among(8, 16, 32, 64), help="width of the network giving each window's GARCH params"
    )
    max_persistence: float = param(
        0.99, lo=0.5, hi=0.9999, help="upper bound on alpha + beta (below 1: the variance process is stationary)"
    )

    @classmethod
    def tiny(cls) -> Self:
        """Narrow networks."""
        return cls(hidden_size=32, num_layers=2, garch_hidden=8)


def garch_parameters(raw: Tensor, max_persistence: float) -> tuple[Tensor, Tensor, Tensor]:
    """``(omega, alpha, beta)``, each ``[...]``, from unconstrained ``raw`` [..., 3], valid for any raw value.

    ``omega = OMEGA_MIN + softplus(raw_0)``; the persistence ``alpha + beta = max_persistence * sigmoid(raw_1)`` is
    split by ``sigmoid(raw_2)`` between ``alpha`` and ``beta`` (``sigmoid(-r)`` rather than ``1 - sigmoid(r)``, so
    ``beta`` never rounds below 0).
    """
    omega = OMEGA_MIN + F.softplus(raw[..., 0])
    persistence = max_persistence * torch.sigmoid(raw[..., 1])
    alpha = persistence * torch.sigmoid(raw[..., 2])
    beta = persistence * torch.sigmoid(-raw[..., 2])
    return omega, alpha, beta


def powers(r: Tensor, n: int) -> Tensor:
    """``[r^0, r^1, ..., r^(n-1)]`` along a new last dimension: ``[...] -> [..., n]`` (``0^0 = 1``)."""
    ones = torch.ones_like(r)[..., None]
    rest = r[..., None].expand(*r.shape, n - 1).cumprod(-1)  # a product, not pow: finite gradients at r = 0
    return torch.cat([ones, rest], dim=-1)


def window_variance(eps: Tensor, omega: Tensor, alpha: Tensor, beta: Tensor) -> Tensor:
    """The GARCH(1, 1) variance one step past the window's residuals ``eps`` [..., L]: ``[...]``.

    The recursion starts at ``sigma^2_0 = mean(eps^2)`` (the residuals' sample variance) and runs ``L`` steps,
    ``sigma^2_t = omega + alpha * eps^2_{t-1} + beta * sigma^2_{t-1}``; unrolled, ``sigma^2_L = omega * sum_k
    beta^k + alpha * sum_k beta^k eps^2_{L-1-k} + beta^L sigma^2_0`` (``k < L``), computed at once.
    """
    sq = eps.square()
    n = sq.shape[-1]
    beta_k = powers(beta, n + 1)  # [..., L + 1]: beta^0 .. beta^L
    recent_first = sq.flip(-1)  # eps^2_{L-1}, eps^2_{L-2}, ...: lag k + 1 in column k
    decayed = (beta_k[..., :n] * recent_first).sum(-1)
    return omega * beta_k[..., :n].sum(-1) + alpha * decayed + beta_k[..., n] * sq.mean(-1)


def horizon_variance(first: Tensor, omega: Tensor, persistence: Tensor, horizon: int) -> Tensor:
    """Expected variances ``[..., H]`` of steps 1..H from the one-step variance ``first`` [...].

    ``E[sigma^2_{h+1}] = omega + (alpha + beta) E[sigma^2_h]``, unrolled: ``omega * sum_{k<h} p^k + p^h * first``
    for ``h = 0 .. H-1`` with ``p = alpha + beta``.
    """
    p_h = powers(persistence, horizon)  # [..., H]
    geometric = p_h.cumsum(-1) - p_h  # sum_{k<h} p^k
    return omega[..., None] * geometric + p_h * first[..., None]


def inverse_softplus(y: Tensor) -> Tensor:
    """``softplus^-1(y)`` for ``y > 0``: ``y + log(1 - exp(-y))``, stable for small and large ``y``."""
    return y + torch.log(-torch.expm1(-y))


class Volatility(nn.Module):
    """MLP mean over the horizon plus a neural GARCH(1, 1) scale: ``[B, L] -> [B, H, O]`` (see the module doc)."""

    def __init__(self, config: VolatilityConfig, *, input_size: int, horizon: int, n_outputs: int = 1) -> None:
        super().__init__()
        check_model_args(input_size, horizon, n_outputs)
        self.horizon, self.n_outputs, self.max_persistence = horizon, n_outputs, config.max_persistence
        widths = (config.hidden_size,) * config.num_layers
        self.hidden = mlp(input_size, widths, act=config.activation, dropout=config.dropout)
        self.mean = nn.Linear(config.hidden_size, horizon)
        # outputs past the mean and scale (a Student-t's degrees of freedom), read from the mean's features
        self.extra = nn.Linear(config.hidden_size, horizon * (n_outputs - 2)) if n_outputs > 2 else None
        self.garch = nn.Sequential(
            *mlp(input_size, (config.garch_hidden,), act=config.activation, dropout=0.0),
            nn.Linear(config.garch_hidden, 3),
        )

    def forward(self, x: Tensor) -> Tensor:
        """Map ``[B, L]`` to ``[B, H, O]``: the mean, then (``O >= 2``) the raw scale, then the extra outputs."""
        features = self.hidden(x)
        mean: Tensor = self.mean(features)  # [B, H]
        if self.n_outputs == 1:
            return mean[..., None]
        sigma = self.sigma(x).to(mean.dtype)  # [B, H]
        raw_scale = inverse_softplus(sigma - SCALE_FLOOR)  # the Gaussian head maps it back to sigma
        outs = [mean[..., None], raw_scale[..., None]]
        if self.extra is not None:
            outs.append(self.extra(features).reshape(*mean.shape, self.n_outputs - 2))  # [B, H*(O-2)] -> [B, H, O-2]
        return torch.cat(outs, dim=-1)

    def sigma(self, x: Tensor) -> Tensor:
        """The GARCH standard deviation ``[B, H]`` of each horizon step, in float32 (powers lose bits in bf16)."""
        eps = (x - x.mean(-1, keepdim=True)).float()  # constant-mean residuals [B, L]
        omega, alpha, beta = garch_parameters(self.garch(eps).float(), self.max_persistence)
        first = window_variance(eps, omega, alpha, beta)
        return horizon_variance(first, omega, alpha + beta, self.horizon).sqrt()
