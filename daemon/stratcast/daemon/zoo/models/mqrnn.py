"""MQ-RNN: a recurrent encoder with global and local MLP decoders of quantiles, trained on forking sequences.

From Wen, Torkkola, Narayanaswamy and Madeka, "A Multi-Horizon Quantile Recurrent Forecaster", NIPS 2017 Time
Series Workshop.

An LSTM encodes the history (each step's value and nonzero indicator; we have no covariates), giving a state
``h_t`` at every step ``t``. At every step the global MLP maps ``h_t`` to one context ``c_{t+k}`` per horizon step
``k`` and one horizon-agnostic context ``c_a``: ``(c_{t+1}, ..., c_{t+H}, c_a) = m_G(h_t)``. The local MLP, the same
for every horizon step as in the paper, maps ``[c_{t+k}, c_a]`` to the quantiles of ``y_{t+k}`` at the model's
``quantiles`` levels. The quantiles are non-crossing by construction: they are the engine's
:class:`~stratcast.daemon.zoo.heads.QuantileHead` outputs (the lowest level, then softplus increments).

Forking sequences (:meth:`MQRNN.forking_losses`): every encoder step is a forecast creation time. The window and
its targets form one series ``[x, y]`` of ``L + H`` values; the forecast made after reading ``t + 1`` values is
scored (pinball loss) against the ``H`` values after them, all inside the series, so one pass of the encoder
trains ``L`` forecasts of each window instead of one. :meth:`MQRNN.training_loss` gives the engine, for horizon step
``k``, the mean over the encoder steps of their step-``k`` terms. Each of those terms' targets lies at or before
``y[k]``, and the engine masks a suffix of the horizon (the targets after the training end), so an element the
mask keeps holds only terms with valid targets; a masked one also drops some valid terms, a little signal lost near
the training end. In eval mode (the engine's validation checks) only the forecast at the window's end is scored:
the forecast the model is asked for.

The levels are the model's ``quantiles`` option, not the run's: a model with its own loss is not given the run's
head. Its catalog entry trains with ``loss=quantile`` so that the run names the loss it trains with.

The point forecast is the mean of the quantile function through the levels (the head's piecewise-linear
integral); :meth:`MQRNN.sample` draws from it by stratified levels, one in each ``1/n`` of (0, 1) (shuffled), so the
engine's mean of ``SAMPLES`` draws is that integral to within a small fraction of the quantiles' spread.

Not stackable: per-strategy (stacked) training and forecasting call the forward pass, never ``training_loss`` or
``sample``, and ``nn.LSTM`` has no ``torch.func.vmap`` rule.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass
from typing import Self

import torch
from torch import Tensor, nn

from stratcast.daemon.zoo.blocks.layers import mlp, value_and_indicator
from stratcast.daemon.zoo.contract import ModelConfig, check_model_args, param
from stratcast.daemon.zoo.heads import QuantileHead
from stratcast.daemon.zoo.search import among, floats, ints


@dataclass(frozen=True, kw_only=True)
class MQRNNConfig(ModelConfig):
    """MQ-RNN architecture: the encoder, the two decoders and the quantile levels they produce."""

    hidden_size: int = param(64, lo=1, hi=4096, search=among(32, 64, 128), help="width of the LSTM encoder's state")
    num_layers: int = param(1, lo=1, hi=8, search=ints(1, 3), help="stacked LSTM layers of the encoder")
    context_size: int = param(
        16, lo=1, hi=1024, search=among(8, 16, 32), help="width of each horizon step's context from the global MLP"
    )
    agnostic_size: int = param(
        32, lo=1, hi=4096, search=among(16, 32, 64), help="width of the horizon-agnostic context from the global MLP"
    )
    global_hidden_size: int = param(
        128, lo=1, hi=4096, search=among(64, 128, 256), help="width of the global MLP's hidden layer"
    )
    local_hidden_size: int = param(
        32, lo=1, hi=4096, search=among(16, 32, 64), help="width of the local MLP's hidden layer (shared by all steps)"
    )
    dropout: float = param(
        0.1, lo=0.0, hi=0.9, search=floats(0.0, 0.5), help="dropout between encoder layers and in both MLPs"
    )
    quantiles: tuple[float, ...] = param(
        (0.05, 0.1, 0.25, 0.5, 0.75, 0.9, 0.95),
        lo=0.001,
        hi=0.999,
        help="quantile levels the model forecasts and is trained on (pinball loss), increasing within (0, 1); "
        "spread wide, as the tails carry much of a fat-tailed profit's mean",
    )

    def __post_init__(self) -> None:
        super().__post_init__()
        if not self.quantiles or any(b <= a for a, b in itertools.pairwise(self.quantiles)):
            raise ValueError(f"quantiles={self.quantiles!r} must be one or more levels increasing strictly")

    @classmethod
    def tiny(cls) -> Self:
        """A narrow encoder and narrow decoders over three levels."""
        return cls(
            hidden_size=16,
            context_size=4,
            agnostic_size=8,
            global_hidden_size=16,
            local_hidden_size=8,
            quantiles=(0.1, 0.5, 0.9),
        )


class MQRNN(nn.Module):
    """LSTM encoder, global MLP to horizon-specific and agnostic contexts, local MLP to quantiles; forking loss."""

    def __init__(self, config: MQRNNConfig, *, input_size: int, horizon: int, n_outputs: int = 1) -> None:
        super().__init__()
        check_model_args(input_size, horizon, n_outputs)
        self.horizon, self.n_outputs = horizon, n_outputs
        self.context_size = config.context_size
        self.quantile = QuantileHead(config.quantiles)
        """Maps the local MLP's outputs to non-crossing quantiles; its pinball loss, mean and quantile function."""
        # nn.LSTM warns when given dropout with one layer: it would apply to nothing.
        between = config.dropout if config.num_layers > 1 else 0.0
        self.encoder = nn.LSTM(2, config.hidden_size, config.num_layers, batch_first=True, dropout=between)
        contexts = horizon * config.context_size + config.agnostic_size
        self.global_mlp = nn.Sequential(
            mlp(config.hidden_size, (config.global_hidden_size,), act="relu", dropout=config.dropout),
            nn.Linear(config.global_hidden_size, contexts),
        )
        self.local_mlp = nn.Sequential(
            mlp(config.context_size + config.agnostic_size, (config.local_hidden_size,), act="relu", dropout=0.0),
            nn.Linear(config.local_hidden_size, self.quantile.n_params),
        )

    def forking_forecasts(self, x: Tensor) -> Tensor:
        """Raw quantile outputs ``[B, L, H, Q]``: at every encoder step, the forecast of the ``H`` steps after it."""
        states, _ = self.encoder(value_and_indicator(x))  # [B, L, 2] -> [B, L, hidden]
        return self.decode(states)

    def last_forecast(self, x: Tensor) -> Tensor:
        """Raw quantile outputs ``[B, H, Q]`` of the forecast made at the window's end."""
        states, _ = self.encoder(value_and_indicator(x))  # [B, L, 2] -> [B, L, hidden]
        return self.decode(states[:, -1])

    def decode(self, states: Tensor) -> Tensor:
        """Encoder states ``[..., hidden]`` to raw quantile outputs ``[..., H, Q]`` through both MLPs."""
        contexts = self.global_mlp(states)  # [..., hidden] -> [..., H*C + A]
        split = self.horizon * self.context_size
        per_step = contexts[..., :split].unflatten(-1, (self.horizon, self.context_size))  # -> [..., H, C]
        agnostic = contexts[..., None, split:].expand(*per_step.shape[:-1], -1)  # [..., A] -> [..., H, A]
        out: Tensor = self.local_mlp(torch.cat([per_step, agnostic], dim=-1))  # [..., H, C + A] -> [..., H, Q]
        return out

    def forking_targets(self, x: Tensor, y: Tensor) -> Tensor:
        """``[B, L, H]``: for encoder step ``t`` and horizon step ``k``, the value ``[x, y][t + 1 + k]``."""
        series = torch.cat([x, y], dim=1)  # [B, L] + [B, H] -> [B, L + H]
        return series[:, 1:].unfold(1, self.horizon, 1)  # [B, L + H - 1] -> [B, L, H]

    def forking_losses(self, x: Tensor, y: Tensor) -> Tensor:
        """The pinball loss ``[B, L, H]`` of every encoder step's forecast of every horizon step."""
        return self.quantile.loss(self.forking_forecasts(x).float(), self.forking_targets(x, y).float())

    def training_loss(self, x: Tensor, y: Tensor) -> Tensor:
        """``[B, H]``: in training each horizon step's forking terms averaged over encoder steps; in eval the last's.

        In eval only the forecast at the window's end is decoded: its targets are ``y`` itself.
        """
        if self.training:
            return self.forking_losses(x, y).mean(dim=1)
        return self.quantile.loss(self.last_forecast(x).float(), y.float())

    def quantiles(self, x: Tensor) -> Tensor:
        """The forecast's quantiles ``[B, H, Q]`` at the model's levels, non-decreasing along ``Q``."""
        return self.quantile.values(self.last_forecast(x))

    def sample(self, x: Tensor, n: int, generator: torch.Generator | None) -> Tensor:
        """``n`` draws ``[n, B, H]`` at stratified levels (one in each ``1/n`` of (0, 1), shuffled), reproducible."""
        out = self.last_forecast(x).float()  # [B, H, Q]
        shape = (n, *out.shape[:-1])
        strata = torch.arange(n, device=x.device, dtype=out.dtype).view(n, 1, 1)  # [n, 1, 1]
        levels = (strata + torch.rand(shape, generator=generator, device=x.device)) / n  # [n, B, H]
        order = torch.rand(shape, generator=generator, device=x.device).argsort(dim=0)  # a shuffle per (B, H)
        return self.quantile.icdf(out, levels.gather(0, order))

    def forward(self, x: Tensor) -> Tensor:
        """The mean forecast ``[B, H, O]`` (the quantile function's integral), repeated in every output."""
        mean = self.quantile.mean(self.last_forecast(x))  # [B, H, Q] -> [B, H]
        return mean[..., None].expand(*mean.shape, self.n_outputs)  # [B, H] -> [B, H, O]
