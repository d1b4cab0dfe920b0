"""Neural VAR: a VAR over the series of a window, low-rank across series, with an MLP on each series' own lags.

A VAR(p) (Sims, "Macroeconomics and Reality", Econometrica, 1980) forecasts the vector ``y_t`` of all series from
its own past: ``y_t = c + sum_k A_k y_{t-k}``, each ``A_k`` an ``N x N`` matrix. Over 6,000 strategies that is 36M
coefficients per lag, far more than weekly data can fit. The reduced-rank VAR (Velu, Reinsel and Wichern, "Reduced
rank models for multiple time series", Biometrika, 1986) writes each ``A_k = U_k V_k^T`` with ``U_k, V_k`` of
shape ``N x r``: ``V_k^T y_{t-k}`` are ``r`` factors (weighted sums over the series), ``U_k`` loads them back onto
every series, and a step costs ``O(N r)`` instead of ``O(N^2)``. Following Zhang's hybrid ("Time series
forecasting using a hybrid ARIMA and neural network model", Neurocomputing, 2003) an MLP adds what the linear part
leaves. For a window of ``S`` series (``ids`` [B, S] name them), each step is::

    y_t[i] = c[i] + sum_{k<=q} w_k y_{t-k}[i] + sum_{k<=p} U_k[i] . mean_j( V_k[j] y_{t-k}[j] ) + MLP(y_{t-1..t-q}[i])

so the coefficient matrix it represents is ``A_k = w_k I + U_k V_k^T / S`` over the window's series: a diagonal
(own-lag) part of order ``q`` (``own_lags``) shared by all series, as a global model's, plus the low-rank
cross-series part of order ``p`` (``lags``), whose loadings ``U`` and weights ``V`` are rows per series
(``[N, p, r]`` each: ``O(N p r)`` parameters). The own part reads a longer past than the cross part (a year of
weeks by default): it is cheap (``q`` weights in all), and a short AR iterated over the horizon learns seasonal
patterns slowly (an AR(3) that continues a sine of period 8 needs coefficients of 2.4). The factors are a *mean*
over the window's series, not a sum, so their scale does not grow with ``S``, and a random subset of the panel
(``series_per_window``) reads an unbiased estimate of the mean over all ``N``. The intercepts ``c`` are per series
(``intercepts``; otherwise one shared bias).

Multi-step forecasts iterate the recursion, as a VAR forecasts: each step's forecast becomes lag 1 of the next. It
is output 0 of the model's outputs; the other outputs of a head (scales, quantile increments) are a linear read-out
of the MLP's hidden features at each step. Under the hurdle head, whose output 0 is a zero-week logit, the
recursion would feed logits back as values: use another head with this model.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Self

import torch
from torch import Tensor, nn

from stratcast.daemon.zoo.blocks.layers import mlp
from stratcast.daemon.zoo.contract import ACTIVATIONS, ModelConfig, check_ids, check_model_args, param
from stratcast.daemon.zoo.search import among, floats, ints

MAX_FACTOR_PARAMETERS = 100_000_000
"""The loadings and weights (``2 N p r``) a panel may need at most: 400 MB in float32 before the optimizer's state."""


@dataclass(frozen=True, kw_only=True)
class NeuralVARConfig(ModelConfig):
    """Neural VAR architecture."""

    lags: int = param(
        4, lo=1, hi=104, search=among(1, 2, 4, 8, 13), help="order p of the cross-series part: lags of every series"
    )
    own_lags: int = param(
        52, lo=1, hi=520, search=among(13, 26, 52), help="order q of the own-lag part: lags of a series' own past"
    )
    rank: int = param(
        4, lo=1, hi=256, search=among(1, 2, 4, 8, 16), help="rank r of each lag's cross-series coefficients"
    )
    hidden_size: int = param(
        32, lo=1, hi=4096, search=among(16, 32, 64, 128), help="width of the own-lag MLP's hidden layers"
    )
    num_layers: int = param(
        1, lo=0, hi=8, search=ints(0, 2), help="hidden layers of the own-lag MLP (0: a linear VAR, no MLP)"
    )
    dropout: float = param(0.1, lo=0.0, hi=0.9, search=floats(0.0, 0.5), help="dropout in the own-lag MLP")
    activation: str = param("relu", choices=ACTIVATIONS, search=among(*ACTIVATIONS), help="nonlinearity of the MLP")
    intercepts: bool = param(
        True, choices=(True, False), search=among(True, False), help="an intercept per series (false: one shared)"
    )

    @classmethod
    def tiny(cls) -> Self:
        """Three lags, rank 2 and one narrow hidden layer."""
        return cls(lags=3, own_lags=16, rank=2, hidden_size=8)

    def panel_problem(self, *, n_series: int, series_per_window: int) -> str | None:
        """Refuse a panel whose loadings and weights (``2 N p r``) pass :data:`MAX_FACTOR_PARAMETERS`."""
        del series_per_window
        size = 2 * n_series * self.lags * self.rank
        if size <= MAX_FACTOR_PARAMETERS:
            return None
        return (
            f"its cross-series coefficients take 2 x {n_series} series x {self.lags} lags x rank {self.rank} = "
            f"{size:,} parameters, above {MAX_FACTOR_PARAMETERS:,}; lower rank or lags"
        )


def cross_series(lagged: Tensor, loadings: Tensor, weights: Tensor) -> Tensor:
    """The low-rank VAR term ``sum_k U_k V_k^T y_{t-k} / S`` for each series of each window.

    Args:
        lagged: ``[B, S, p]``, lag ``k + 1`` of every series in column ``k``.
        loadings: ``U`` ``[B, S, p, r]``, each window's series' rows.
        weights: ``V`` ``[B, S, p, r]``, likewise.

    Returns:
        ``[B, S]``; never an ``S x S`` matrix: ``r`` factors per lag are formed first, then loaded back.
    """
    factors = torch.einsum("bsk,bskr->bkr", lagged, weights) / lagged.shape[1]  # mean over the S series: [B, p, r]
    return torch.einsum("bkr,bskr->bs", factors, loadings)


class NeuralVAR(nn.Module):
    """Low-rank VAR across the window's series plus an own-lag MLP, iterated over the horizon."""

    def __init__(
        self, config: NeuralVARConfig, *, input_size: int, horizon: int, n_outputs: int = 1, n_series: int
    ) -> None:
        super().__init__()
        check_model_args(input_size, horizon, n_outputs)
        self.horizon, self.n_series = horizon, n_series
        self.p = p = min(config.lags, input_size)
        self.q = q = min(config.own_lags, input_size)
        self.loadings = nn.Parameter(0.1 * torch.randn(n_series, p, config.rank))  # U: small, a VAR starts stable
        self.weights = nn.Parameter(torch.randn(n_series, p, config.rank))  # V: a factor is a mean, not a sum
        self.intercept = nn.Parameter(torch.zeros(n_series)) if config.intercepts else None
        self.own = nn.Linear(q, 1)  # the diagonal of every A_k (one weight per lag) and the shared bias
        widths = (config.hidden_size,) * config.num_layers
        self.hidden = mlp(q, widths, act=config.activation, dropout=config.dropout)
        features = widths[-1] if widths else q
        self.residual = nn.Linear(features, 1) if widths else None
        self.extra = nn.Linear(features, n_outputs - 1) if n_outputs > 1 else None

    def forward(self, x: Tensor, *, ids: Tensor) -> Tensor:
        """Map ``[B, S, L]`` and ``ids`` [B, S] to ``[B, S, H, O]``."""
        check_ids(ids, self.n_series, x)
        u, v = self.loadings[ids], self.weights[ids]  # [N, p, r] -> [B, S, p, r]
        c = 0.0 if self.intercept is None else self.intercept[ids]  # [B, S]
        history = x[..., -max(self.p, self.q) :]  # [B, S, m], oldest first
        steps: list[Tensor] = []
        extras: list[Tensor] = []
        for _ in range(self.horizon):
            y, features = self.step(history.flip(-1), u, v)  # lag 1 first
            steps.append(y + c)
            if self.extra is not None:
                extras.append(self.extra(features))
            history = torch.cat([history[..., 1:], steps[-1][..., None]], dim=-1)  # the forecast becomes lag 1
        out = torch.stack(steps, dim=-1)[..., None]  # H x [B, S] -> [B, S, H, 1]
        if not extras:
            return out
        return torch.cat([out, torch.stack(extras, dim=-2)], dim=-1)  # H x [B, S, O-1] -> [B, S, H, O]

    def step(self, lagged: Tensor, u: Tensor, v: Tensor) -> tuple[Tensor, Tensor]:
        """One step without intercepts from ``lagged`` [B, S, m] (lag 1 first).

        Returns:
            ``([B, S]`` the forecast, ``[B, S, F]`` the MLP's features).
        """
        own = lagged[..., : self.q]  # [B, S, q]
        features: Tensor = self.hidden(own)  # [B, S, q] -> [B, S, F]
        y = self.own(own).squeeze(-1) + cross_series(lagged[..., : self.p], u, v)  # [B, S]
        if self.residual is not None:
            y = y + self.residual(features).squeeze(-1)
        return y, features
