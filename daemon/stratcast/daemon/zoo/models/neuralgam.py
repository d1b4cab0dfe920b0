"""Neural GAM: a neural additive model, one small MLP per lag of the window, summed.

Agarwal et al., "Neural Additive Models: Interpretable Machine Learning with Neural Nets", NeurIPS 2021.

A generalised additive model whose shape functions are small neural networks: every lag of the window has its own
MLP from that one value to the ``H * O`` outputs, and the forecast is the sum of the lags' contributions, so each
lag's part of each horizon step can be read off (:meth:`NeuralGAM.contributions`). The ``L`` MLPs run together as
one grouped MLP (batched matrix products over the lag axis), not one after another. As in the paper, feature
dropout drops whole lag contributions during training.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from itertools import pairwise
from typing import Self

import torch
from torch import Tensor, nn

from stratcast.daemon.zoo.contract import ACTIVATIONS, ModelConfig, activation, check_model_args, param
from stratcast.daemon.zoo.search import among, floats, ints


@dataclass(frozen=True, kw_only=True)
class NeuralGAMConfig(ModelConfig):
    """Neural GAM architecture."""

    hidden_size: int = param(32, lo=1, hi=1024, search=among(16, 32, 64, 128), help="width of each lag's MLP")
    num_layers: int = param(2, lo=1, hi=8, search=ints(1, 3), help="hidden layers of each lag's MLP")
    activation: str = param(
        "relu", choices=ACTIVATIONS, search=among(*ACTIVATIONS), help="nonlinearity of the lag MLPs' hidden layers"
    )
    dropout: float = param(0.0, lo=0.0, hi=0.9, search=floats(0.0, 0.5), help="dropout after each hidden layer")
    feature_dropout: float = param(
        0.0, lo=0.0, hi=0.9, search=floats(0.0, 0.3), help="probability of dropping a lag's whole contribution"
    )

    @classmethod
    def tiny(cls) -> Self:
        """One narrow hidden layer per lag."""
        return cls(hidden_size=8, num_layers=1)


class GroupedLinear(nn.Module):
    """``G`` independent linear maps, one per group: ``[..., G, d_in]`` -> ``[..., G, d_out]``."""

    def __init__(self, groups: int, d_in: int, d_out: int) -> None:
        super().__init__()
        bound = 1 / math.sqrt(d_in)  # nn.Linear's initialisation, group by group
        self.weight = nn.Parameter(torch.empty(groups, d_in, d_out).uniform_(-bound, bound))
        self.bias = nn.Parameter(torch.empty(groups, d_out).uniform_(-bound, bound))

    def forward(self, x: Tensor) -> Tensor:
        """Map ``[..., G, d_in]`` to ``[..., G, d_out]``."""
        return torch.einsum("...gi,gio->...go", x, self.weight) + self.bias


class NeuralGAM(nn.Module):
    """One MLP per lag, summed: ``y[h, o] = sum_l f_l(x_l)[h, o]``."""

    def __init__(self, config: NeuralGAMConfig, *, input_size: int, horizon: int, n_outputs: int = 1) -> None:
        super().__init__()
        check_model_args(input_size, horizon, n_outputs)
        self.horizon, self.n_outputs = horizon, n_outputs
        widths = (1, *(config.hidden_size,) * config.num_layers)
        layers: list[nn.Module] = []
        for d_in, d_out in pairwise(widths):
            layers += [
                GroupedLinear(input_size, d_in, d_out),
                activation(config.activation),
                nn.Dropout(config.dropout),
            ]
        self.hidden = nn.Sequential(*layers)
        self.head = GroupedLinear(input_size, config.hidden_size, horizon * n_outputs)
        self.feature_dropout = nn.Dropout(config.feature_dropout)

    def contributions(self, x: Tensor) -> Tensor:
        """Each lag's part of the forecast: ``[B, L]`` -> ``[B, L, H, O]``, summing over ``L`` to the forecast."""
        flat: Tensor = self.head(self.hidden(x.unsqueeze(-1)))  # [B, L] -> [B, L, 1] -> [B, L, H*O]
        return flat.reshape(*flat.shape[:-1], self.horizon, self.n_outputs)  # [B, L, H*O] -> [B, L, H, O]

    def forward(self, x: Tensor) -> Tensor:
        """Map ``[B, L]`` to ``[B, H, O]``."""
        parts = self.contributions(x)
        if self.feature_dropout.p > 0:
            # one mask entry per window and lag: a dropped lag loses its whole contribution to every step
            parts = parts * self.feature_dropout(torch.ones_like(parts[..., :1, :1]))
        return parts.sum(1)
