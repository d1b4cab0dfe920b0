"""DeepNPTS: the next value is one of the window's past values, drawn with weights a network gives.

Rangapuram, Gasthaus, Stella, Flunkert, Salinas, Wang and Januschowski, "Deep Non-Parametric Time Series
Forecaster" (arXiv, 2023). Like NPTS, its non-neural ancestor, the forecast distribution of the next step is the
weighted empirical distribution of the values in the window, ``P(z_{T+1} = x_j) = w_j``; a network over the window
gives the weights, non-negative and summing to 1 through a softmax. The forecast can only take values the series
has taken: a strategy flat in its window forecasts exact zeros, and a week of exactly 0 keeps its probability
instead of being smeared into small gains and losses.

Training: the likelihood of a target that is not exactly one of the window's values is 0 under the discrete
distribution, so (as the paper's smoothed variant) the loss is the negative log-likelihood of the target under the
kernel-smoothed distribution ``sum_j w_j N(y; x_j, b^2)``, a Gaussian of fixed bandwidth ``b`` (config
``bandwidth``, scaled units) around each past value. A fixed ``b`` keeps the likelihood bounded at exact zeros,
where a learned one would shrink without limit. As ``b -> 0`` it approaches the discrete distribution's likelihood.

Multi-step forecasts follow the paper's autoregressive scheme: a drawn value is appended to the window, the oldest
dropped, and the next step's weights are computed on that window. Training scores every horizon step the same way
with the true targets appended (teacher forcing), so one network call scores all ``H`` steps.

Forecasts: :meth:`DeepNPTS.sample` draws paths (``sampling=discrete``: exactly past values; ``smooth``: plus the
kernel's noise); the engine's point forecast is the mean of its draws. ``forward`` (the plain model call, which the
engine does not use for this model) gives the plug-in path: each step's weighted mean appended in turn.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Self

import torch
from torch import Tensor, nn

from stratcast.daemon.zoo.blocks.layers import mlp, value_and_indicator
from stratcast.daemon.zoo.contract import ACTIVATIONS, ModelConfig, check_model_args, param
from stratcast.daemon.zoo.search import among, floats, ints

ROWS_PER_PASS = 65_536
"""Paths drawn in one network call at most: the draws of a large batch are taken a group at a time."""


@dataclass(frozen=True, kw_only=True)
class DeepNPTSConfig(ModelConfig):
    """DeepNPTS architecture."""

    hidden_size: int = param(
        128, lo=1, hi=16384, search=among(32, 64, 128, 256, 512), help="width of the weight network's hidden layers"
    )
    num_layers: int = param(2, lo=1, hi=32, search=ints(1, 4), help="hidden layers of the weight network")
    dropout: float = param(0.1, lo=0.0, hi=0.9, search=floats(0.0, 0.5), help="dropout in the weight network")
    activation: str = param(
        "relu", choices=ACTIVATIONS, search=among(*ACTIVATIONS), help="nonlinearity of the weight network"
    )
    bandwidth: float = param(
        0.1,
        lo=1e-4,
        hi=100.0,
        search=floats(0.02, 1.0, log=True),
        help="width of the Gaussian kernel around each past value in the training likelihood (scaled units)",
    )
    sampling: str = param(
        "discrete",
        choices=("discrete", "smooth"),
        help="forecast draws: discrete (exactly past values, exact zeros kept) or smooth (plus the kernel's noise)",
    )

    @classmethod
    def tiny(cls) -> Self:
        """One narrow hidden layer."""
        return cls(hidden_size=32, num_layers=1, dropout=0.0)


def kernel_nll(y: Tensor, values: Tensor, log_weights: Tensor, bandwidth: float) -> Tensor:
    """``-log sum_j w_j N(y; values_j, bandwidth^2)``: targets ``y`` [...], past values and log weights [..., L]."""
    z = (y[..., None] - values) / bandwidth
    log_kernel = -0.5 * z.square() - math.log(bandwidth) - 0.5 * math.log(2 * math.pi)
    return -torch.logsumexp(log_weights + log_kernel, dim=-1)


class DeepNPTS(nn.Module):
    """Softmax weights over the window's values; forecasts drawn from them step by step (see the module doc)."""

    def __init__(self, config: DeepNPTSConfig, *, input_size: int, horizon: int, n_outputs: int = 1) -> None:
        super().__init__()
        check_model_args(input_size, horizon, n_outputs)
        self.horizon, self.n_outputs = horizon, n_outputs
        self.bandwidth, self.smooth = config.bandwidth, config.sampling == "smooth"
        widths = (config.hidden_size,) * config.num_layers
        self.hidden = mlp(2 * input_size, widths, act=config.activation, dropout=config.dropout)
        self.logits = nn.Linear(config.hidden_size, input_size)

    def log_weights(self, window: Tensor) -> Tensor:
        """Log weights ``[..., L]`` over the values of windows ``[..., L]``, in float32 (they sum to 1 in exp)."""
        features = value_and_indicator(window.reshape(-1, window.shape[-1])).flatten(1)  # [M, L, 2] -> [M, 2L]
        logits: Tensor = self.logits(self.hidden(features)).float()
        return torch.log_softmax(logits, dim=-1).reshape(window.shape)

    def forward(self, x: Tensor) -> Tensor:
        """The plug-in path ``[B, H, O]`` for windows ``[B, L]``: each step's weighted mean, appended in turn.

        Every output holds the same path (the model's distribution is its draws, not a head's parameters).
        """
        window, steps = x, []
        for _ in range(self.horizon):
            mean = (self.log_weights(window).exp() * window).sum(-1).to(x.dtype)  # [B]
            steps.append(mean)
            window = torch.cat([window[:, 1:], mean[:, None]], dim=-1)
        path = torch.stack(steps, dim=-1)  # H x [B] -> [B, H]
        return path[..., None].expand(*path.shape, self.n_outputs)

    def training_loss(self, x: Tensor, y: Tensor) -> Tensor:
        """Kernel-smoothed NLL ``[B, H]`` of targets ``y`` [B, H], each after ``x`` [B, L] and the targets before it."""
        series = torch.cat([x, y.to(x.dtype)], dim=-1)  # [B, L + H]
        windows = series.unfold(-1, x.shape[-1], 1)[:, : self.horizon]  # [B, H, L]: the window before each target
        return kernel_nll(y.float(), windows.float(), self.log_weights(windows), self.bandwidth)

    def sample(self, x: Tensor, n: int, generator: torch.Generator | None) -> Tensor:
        """``n`` autoregressive paths ``[n, B, H]`` for windows ``x`` [B, L] (reproducible from ``generator``)."""
        per_pass = max(1, ROWS_PER_PASS // max(1, x.shape[0]))
        groups = [self._paths(x, min(per_pass, n - lo), generator) for lo in range(0, n, per_pass)]
        return torch.cat(groups) if groups else x.new_zeros(0, *x.shape[:-1], self.horizon)

    def _paths(self, x: Tensor, n: int, generator: torch.Generator | None) -> Tensor:
        """``n`` paths ``[n, B, H]``: each step draws one past value of its window and appends it."""
        window = x.unsqueeze(0).expand(n, *x.shape).reshape(-1, x.shape[-1])  # [B, L] -> [n*B, L]
        steps = []
        for _ in range(self.horizon):
            pick = torch.multinomial(self.log_weights(window).exp(), 1, generator=generator)  # [n*B, 1]
            value = window.gather(-1, pick)[:, 0]
            if self.smooth:
                noise = torch.randn(value.shape, generator=generator, device=x.device, dtype=value.dtype)
                value = value + self.bandwidth * noise
            steps.append(value)
            window = torch.cat([window[:, 1:], value[:, None]], dim=-1)
        return torch.stack(steps, dim=-1).reshape(n, *x.shape[:-1], self.horizon)  # [n*B, H] -> [n, B, H]
