"""DeepAR: an autoregressive recurrent network that forecasts a distribution and samples its future.

From Salinas, Flunkert, Gasthaus and Januschowski, "DeepAR: Probabilistic Forecasting with Autoregressive
Recurrent Networks", International Journal of Forecasting 2020.

At every step ``t`` a stacked LSTM reads the previous value ``z_{t-1}`` (with its nonzero indicator, our only
covariate) and updates its state ``h_t = LSTM(h_{t-1}, z_{t-1})``; a linear projection of ``h_t`` gives the
parameters ``theta_t`` of the step's likelihood ``l(z_t | theta_t)``, one of the distribution heads of
``zoo/heads.py`` (Student-t by default: heavy-tailed weekly profits; or Gaussian, the paper's choice for real
values). The series arrive already scaled by the engine, so the paper's division by ``1 + mean`` is left out: on
level series the engine's ``revin`` normalises each window and its targets (its mean and spread) around the model.

The likelihood is the model's ``likelihood`` option, not the run's head: a model with its own loss is not given
the head. Its catalog entry trains with ``loss=student-t`` so that the run names the loss it trains with.

Training (:meth:`DeepAR.training_loss`) is teacher-forced as in the paper: the network reads the window and then
the true targets, each fed in as the next step's previous value, and the loss is the negative log-likelihood of
every horizon target under its step's distribution. Prediction (:meth:`DeepAR.sample`) is ancestral sampling: the
state after the window is copied once per sample path, each step's value is drawn from its distribution and fed
back as the next step's input, so every path is a joint draw of the whole horizon. The engine's point forecast of
an own-loss model is the mean of ``SAMPLES`` seeded paths.

``forward`` is the deterministic counterpart, kept for plain calls: each step's mean is fed back instead of a draw,
and that mean path fills every output (the engine never calls it for this model).

Not stackable: per-strategy (stacked) training and forecasting call the forward pass, never ``training_loss`` or
``sample``, and ``nn.LSTM`` has no ``torch.func.vmap`` rule.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Self

import torch
from torch import Tensor, nn

from stratcast.daemon.zoo.blocks.layers import value_and_indicator
from stratcast.daemon.zoo.contract import ModelConfig, check_model_args, param
from stratcast.daemon.zoo.heads import Head, make_head
from stratcast.daemon.zoo.search import among, floats, ints

LIKELIHOODS = ("student-t", "gaussian")
"""The distribution heads DeepAR can be trained with (both unbounded, for signed profits)."""

LSTMState = tuple[Tensor, Tensor]
"""An ``nn.LSTM`` state: hidden and cell, each ``[layers, B, hidden]``."""


@dataclass(frozen=True, kw_only=True)
class DeepARConfig(ModelConfig):
    """DeepAR architecture: the autoregressive LSTM and its likelihood."""

    hidden_size: int = param(40, lo=1, hi=4096, search=among(20, 40, 80, 160), help="width of each LSTM layer")
    num_layers: int = param(3, lo=1, hi=8, search=ints(1, 4), help="stacked LSTM layers (the paper uses 3)")
    dropout: float = param(0.1, lo=0.0, hi=0.9, search=floats(0.0, 0.5), help="dropout between the LSTM layers")
    likelihood: str = param(
        "student-t",
        choices=LIKELIHOODS,
        search=among(*LIKELIHOODS),
        help="each step's distribution: student-t (heavy tails, for profits) or gaussian (the paper's)",
    )

    @classmethod
    def tiny(cls) -> Self:
        """One narrow LSTM layer."""
        return cls(hidden_size=16, num_layers=1, dropout=0.0)


class DeepAR(nn.Module):
    """Autoregressive LSTM with a distribution head: teacher-forced likelihood, ancestral sampling."""

    def __init__(self, config: DeepARConfig, *, input_size: int, horizon: int, n_outputs: int = 1) -> None:
        super().__init__()
        check_model_args(input_size, horizon, n_outputs)
        self.horizon, self.n_outputs = horizon, n_outputs
        self.distribution: Head = make_head(config.likelihood)
        """The step likelihood: its negative log-likelihood, mean and quantile function (for draws)."""
        # nn.LSTM warns when given dropout with one layer: it would apply to nothing.
        between = config.dropout if config.num_layers > 1 else 0.0
        self.rnn = nn.LSTM(2, config.hidden_size, config.num_layers, batch_first=True, dropout=between)
        self.project = nn.Linear(config.hidden_size, self.distribution.n_params)

    def step_params(self, x: Tensor, y: Tensor) -> Tensor:
        """Teacher-forced raw parameters ``[B, H, P]`` of each horizon step, given the window and true targets.

        Step ``h``'s distribution is conditioned on ``x`` and ``y[:, :h]`` only (the targets before it).
        """
        inputs = torch.cat([x, y[:, :-1]], dim=1)  # [B, L] + [B, H-1] -> [B, L+H-1]: each step's previous value
        states, _ = self.rnn(value_and_indicator(inputs))  # [B, L+H-1, 2] -> [B, L+H-1, hidden]
        params: Tensor = self.project(states[:, x.shape[1] - 1 :])  # [B, H, hidden] -> [B, H, P]
        return params

    def training_loss(self, x: Tensor, y: Tensor) -> Tensor:
        """The negative log-likelihood ``[B, H]`` of targets ``y`` ``[B, H]`` under teacher forcing."""
        return self.distribution.loss(self.step_params(x, y).float(), y.float())

    def sample(self, x: Tensor, n: int, generator: torch.Generator | None) -> Tensor:
        """``n`` sample paths ``[n, B, H]``, each step drawn from its distribution and fed back (reproducible)."""

        def draw(params: Tensor) -> Tensor:
            out = params.float()[:, None, :]  # [nB, P] -> [nB, 1, P]: one forecast step
            return self.distribution.sample(out, 1, generator)[0, :, 0].to(params.dtype)  # [1, nB, 1] -> [nB]

        return self.unroll(x, n, draw).view(n, x.shape[0], self.horizon)  # [n*B, H] -> [n, B, H]

    def forward(self, x: Tensor) -> Tensor:
        """The mean path ``[B, H, O]``: each step's distribution mean fed back, repeated in every output."""
        path = self.unroll(x, 1, lambda params: self.distribution.mean(params[:, None, :])[:, 0])  # [B, H]
        return path[..., None].expand(*path.shape, self.n_outputs)  # [B, H] -> [B, H, O]

    def unroll(self, x: Tensor, n: int, choose: Callable[[Tensor], Tensor]) -> Tensor:
        """Read the window, then ``n`` copies of its state decode the horizon, ``choose`` picking each value.

        ``choose`` maps a step's raw parameters ``[n*B, P]`` to its values ``[n*B]``; copy ``k`` of window ``b``
        is row ``k * B + b``. Returns ``[n*B, H]``.
        """
        states, state = self.rnn(value_and_indicator(x))  # [B, L, 2] -> [B, L, hidden]
        hidden = states[:, -1].repeat(n, 1)  # [B, hidden] -> [n*B, hidden]
        carry: LSTMState = (state[0].repeat(1, n, 1), state[1].repeat(1, n, 1))  # [layers, n*B, hidden] each
        values = []
        for step in range(self.horizon):
            value = choose(self.project(hidden))  # [n*B, hidden] -> [n*B, P] -> [n*B]
            values.append(value)
            if step + 1 < self.horizon:
                out, carry = self.rnn(value_and_indicator(value[:, None]), carry)  # [n*B, 1, 2] -> [n*B, 1, hidden]
                hidden = out[:, 0]
        return torch.stack(values, dim=1)  # H x [n*B] -> [n*B, H]
