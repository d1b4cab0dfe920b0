"""Neural ARIMA: a learned ARIMA(p, d, q) with a neural network on its residuals.

ARIMA (Box and Jenkins, "Time Series Analysis: Forecasting and Control", 1970) differences a series ``d`` times
until it is stationary, models the differenced series as a linear function of its own ``p`` lags (AR) and of its
``q`` past one-step errors (MA), and integrates the forecast back to levels. Zhang ("Time series forecasting using
a hybrid ARIMA and neural network model", Neurocomputing, 2003) adds a neural network that models what the linear
part leaves in its residuals.

Here every window is fitted by the same learned coefficients (a global model, not one ARIMA per series):

1. difference the window ``d`` times: ``z`` [B, L - d];
2. the AR fit: one learned linear map of the ``p`` lags of ``z`` predicts each step of ``z`` inside the window; its
   errors are the residuals ``e`` [B, L - d - p];
3. the forecast of the differenced series over the horizon is the sum of a linear map of the last ``p`` values of
   ``z`` (AR), a linear map of the last ``q`` residuals (MA), and an MLP on all residuals (Zhang's hybrid);
4. the forecast's location output is integrated ``d`` times from the window's last values back to levels.

``p`` and ``q`` shrink to what a short window holds. The other outputs of a head (scales, quantile increments) are
not integrated: they stay per step, as in ``zoo/blocks/norm.py``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Self

import torch
from torch import Tensor, nn

from stratcast.daemon.zoo.blocks.layers import mlp, to_horizon
from stratcast.daemon.zoo.contract import ACTIVATIONS, ModelConfig, check_model_args, param
from stratcast.daemon.zoo.search import among, floats, ints


@dataclass(frozen=True, kw_only=True)
class NeuralARIMAConfig(ModelConfig):
    """Neural ARIMA architecture."""

    d: int = param(1, lo=0, hi=2, search=ints(0, 2), help="order of differencing (0 keeps the levels)")
    p: int = param(8, lo=1, hi=512, search=among(2, 4, 8, 13, 26), help="AR order: lags of the differenced series")
    q: int = param(4, lo=0, hi=512, search=among(0, 2, 4, 8, 13), help="MA order: past residuals of the AR fit")
    hidden_size: int = param(
        64, lo=1, hi=4096, search=among(16, 32, 64, 128, 256), help="width of the residual MLP's hidden layers"
    )
    num_layers: int = param(1, lo=0, hi=8, search=ints(0, 3), help="hidden layers of the residual MLP (0: none)")
    dropout: float = param(0.1, lo=0.0, hi=0.9, search=floats(0.0, 0.5), help="dropout in the residual MLP")
    activation: str = param(
        "relu", choices=ACTIVATIONS, search=among(*ACTIVATIONS), help="nonlinearity of the residual MLP"
    )

    @classmethod
    def tiny(cls) -> Self:
        """A short AR and MA part and one narrow hidden layer."""
        return cls(p=3, q=2, hidden_size=8, num_layers=1, dropout=0.0)


def difference(x: Tensor, d: int) -> tuple[Tensor, list[Tensor]]:
    """Difference ``x`` [B, L] ``d`` times.

    Returns:
        ``(z [B, L - d], lasts)``: ``lasts[k]`` [B, 1] is the last value of the ``k``-times differenced window,
        what :func:`integrate` starts from.
    """
    lasts: list[Tensor] = []
    for _ in range(d):
        lasts.append(x[:, -1:])
        x = x[:, 1:] - x[:, :-1]
    return x, lasts


def integrate(dz: Tensor, lasts: list[Tensor]) -> Tensor:
    """Undo :func:`difference` on a forecast: ``dz`` [B, H] of the differenced series back to levels [B, H]."""
    for last in reversed(lasts):
        dz = last + dz.cumsum(-1)
    return dz


def lags(z: Tensor, p: int) -> Tensor:
    """The ``p`` values before each step of ``z`` [B, n]: ``[B, n - p, p]``, lag ``i + 1`` in column ``i``."""
    n = z.shape[-1]
    return torch.stack([z[:, p - 1 - i : n - 1 - i] for i in range(p)], dim=-1)  # p x [B, n-p] -> [B, n-p, p]


class NeuralARIMA(nn.Module):
    """Difference, AR and MA linear parts plus an MLP on the AR residuals, integrate back to levels."""

    def __init__(self, config: NeuralARIMAConfig, *, input_size: int, horizon: int, n_outputs: int = 1) -> None:
        super().__init__()
        check_model_args(input_size, horizon, n_outputs)
        n = input_size - config.d  # length of the differenced window
        if n < 2:
            raise ValueError(f"input_size={input_size} is too short to difference {config.d} times and fit an AR")
        self.horizon, self.n_outputs, self.d = horizon, n_outputs, config.d
        self.p = min(config.p, n - 1)
        self.q = min(config.q, n - self.p)
        width = horizon * n_outputs
        self.ar_fit = nn.Linear(self.p, 1)
        self.ar = nn.Linear(self.p, width)
        self.ma = nn.Linear(self.q, width) if self.q > 0 else None
        widths = (config.hidden_size,) * config.num_layers
        self.hidden = mlp(n - self.p, widths, act=config.activation, dropout=config.dropout)
        self.head = nn.Linear(widths[-1] if widths else n - self.p, width)

    def forward(self, x: Tensor) -> Tensor:
        """Map ``[B, L]`` to ``[B, H, O]``."""
        z, lasts = difference(x, self.d)  # [B, n]
        residuals = z[:, self.p :] - self.ar_fit(lags(z, self.p)).squeeze(-1)  # [B, n-p]
        flat = self.ar(z[:, -self.p :]) + self.head(self.hidden(residuals))  # [B, H*O]
        if self.ma is not None:
            flat = flat + self.ma(residuals[:, -self.q :])
        out = to_horizon(flat, self.horizon, self.n_outputs)
        # [B, H] -> [B, H, 1], beside the outputs that are not integrated: [B, H, O]
        return torch.cat([integrate(out[..., 0], lasts).unsqueeze(-1), out[..., 1:]], dim=-1)
