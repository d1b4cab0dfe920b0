"""MLP: a plain multilayer perceptron from the input window to the whole horizon.

The baseline every deep forecaster should beat (the multi-output MLP of Zhang, Patuwo and Hu, "Forecasting with
artificial neural networks: the state of the art", International Journal of Forecasting, 1998): the window is one
input vector, hidden layers of equal width follow, and one linear layer emits all ``H * O`` outputs at once.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Self

from torch import Tensor, nn

from stratcast.daemon.zoo.blocks.layers import mlp, to_horizon
from stratcast.daemon.zoo.contract import ACTIVATIONS, ModelConfig, check_model_args, param
from stratcast.daemon.zoo.search import among, floats, ints


@dataclass(frozen=True, kw_only=True)
class MLPConfig(ModelConfig):
    """MLP architecture."""

    hidden_size: int = param(
        1024, lo=1, hi=16384, search=among(128, 256, 512, 1024, 2048), help="width of every hidden layer"
    )
    num_layers: int = param(2, lo=1, hi=32, search=ints(1, 4), help="number of hidden layers")
    dropout: float = param(0.0, lo=0.0, hi=0.9, search=floats(0.0, 0.5), help="dropout after each hidden layer")
    activation: str = param(
        "relu", choices=ACTIVATIONS, search=among(*ACTIVATIONS), help="nonlinearity of the hidden layers"
    )

    @classmethod
    def tiny(cls) -> Self:
        """Two narrow hidden layers."""
        return cls(hidden_size=32, num_layers=2)


class MLP(nn.Module):
    """Window in, horizon out, through ``num_layers`` hidden layers."""

    def __init__(self, config: MLPConfig, *, input_size: int, horizon: int, n_outputs: int = 1) -> None:
        super().__init__()
        check_model_args(input_size, horizon, n_outputs)
        self.horizon, self.n_outputs = horizon, n_outputs
        widths = (config.hidden_size,) * config.num_layers
        self.hidden = mlp(input_size, widths, act=config.activation, dropout=config.dropout)
        self.head = nn.Linear(config.hidden_size, horizon * n_outputs)

    def forward(self, x: Tensor) -> Tensor:
        """Map ``[B, L]`` to ``[B, H, O]``."""
        flat: Tensor = self.head(self.hidden(x))
        return to_horizon(flat, self.horizon, self.n_outputs)
