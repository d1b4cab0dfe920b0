"""BiTCN: a forward and a backward stack of dilated temporal convolutions with a dense output layer.

From Sprangers, Schelter and de Rijke, "Parameter-efficient deep probabilistic forecasting", International Journal
of Forecasting, 2023.

The paper embeds each step's inputs with a dense layer, then runs two stacks of temporal convolution layers: a
forward stack, causal, over the past window (the target and past covariates), and a backward stack, anticausal,
over the future covariates of the horizon. Each layer is a dilated convolution (dilation ``2^i`` in layer ``i``),
GELU, a dense layer across channels and dropout, added back to its input as a residual. A dense layer maps the
forward stack's outputs across time from the window to the horizon, the two stacks' outputs are concatenated per
horizon step, and a last dense layer gives each step's outputs (in the paper a Student-t's parameters; here the
run's output head's ``O``). With no future inputs, as here (the contract offers no covariates yet), only the
forward stack runs. Each step's input is the value and its nonzero indicator.

The paper keeps the stacks narrow (a hidden size of 16 suffices on its datasets), hence few parameters for its
accuracy. ``num_levels`` levels of kernel ``k`` see ``1 + (k - 1) (2^levels - 1)`` steps of the window.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Self

from torch import Tensor, nn

from stratcast.daemon.zoo.blocks.conv import CausalConv1d
from stratcast.daemon.zoo.blocks.layers import value_and_indicator
from stratcast.daemon.zoo.contract import Checkpointable, ModelConfig, check_model_args, param
from stratcast.daemon.zoo.search import among, floats, ints


@dataclass(frozen=True, kw_only=True)
class BiTCNConfig(ModelConfig):
    """BiTCN architecture."""

    hidden_size: int = param(
        16, lo=1, hi=1024, search=among(8, 16, 32, 64), help="channels of the embedding and of every convolution layer"
    )
    num_levels: int = param(
        6, lo=1, hi=16, search=ints(3, 7), help="temporal convolution layers; layer i has dilation 2^i"
    )
    kernel_size: int = param(2, lo=2, hi=64, search=ints(2, 4), help="width of each dilated convolution")
    dropout: float = param(
        0.1, lo=0.0, hi=0.9, search=floats(0.0, 0.5), help="dropout on the embedding and in each convolution layer"
    )

    @classmethod
    def tiny(cls) -> Self:
        """Three narrow levels."""
        return cls(hidden_size=8, num_levels=3)


class TemporalConvLayer(nn.Module):
    """One BiTCN layer: dilated causal convolution, GELU, dense across channels, dropout, plus a residual."""

    def __init__(self, channels: int, kernel_size: int, dilation: int, dropout: float) -> None:
        super().__init__()
        self.conv = CausalConv1d(channels, channels, kernel_size, dilation, weight_norm=False)
        self.dense = nn.Conv1d(channels, channels, 1)  # a dense layer applied at every step
        self.dropout = nn.Dropout(dropout)
        self.act = nn.GELU()

    def forward(self, x: Tensor) -> Tensor:
        """Map ``[B, C, L]`` to ``[B, C, L]``."""
        out: Tensor = x + self.dropout(self.dense(self.act(self.conv(x))))
        return out


class ForwardStack(Checkpointable):
    """The forward (causal) stack: a dense embedding of each step, then the dilated convolution layers.

    Activation checkpointing (:class:`Checkpointable`) applies layer by layer.
    """

    def __init__(self, n_features: int, config: BiTCNConfig) -> None:
        super().__init__()
        c = config.hidden_size
        self.embed = nn.Linear(n_features, c)
        self.dropout = nn.Dropout(config.dropout)
        self.levels = nn.Sequential(
            *(TemporalConvLayer(c, config.kernel_size, 2**i, config.dropout) for i in range(config.num_levels))
        )

    def forward(self, features: Tensor) -> Tensor:
        """Map ``[B, L, F]`` step features to ``[B, C, L]``; step ``t``'s output sees steps ``<= t`` only."""
        hidden = self.dropout(self.embed(features)).transpose(1, 2)  # [B, L, C] -> [B, C, L]
        for level in self.levels:
            hidden = self.run_block(level, hidden)  # [B, C, L] -> [B, C, L]
        out: Tensor = hidden
        return out


class BiTCN(nn.Module):
    """Forward temporal convolution stack over the window, dense maps across time and channels to the horizon."""

    def __init__(self, config: BiTCNConfig, *, input_size: int, horizon: int, n_outputs: int = 1) -> None:
        super().__init__()
        check_model_args(input_size, horizon, n_outputs)
        self.forward_stack = ForwardStack(2, config)
        self.to_horizon = nn.Linear(input_size, horizon)  # across time: window steps -> horizon steps
        self.output = nn.Linear(config.hidden_size, n_outputs)  # across channels, at each horizon step

    def forward(self, x: Tensor) -> Tensor:
        """Map ``[B, L]`` to ``[B, H, O]``."""
        hidden = self.forward_stack(value_and_indicator(x))  # [B, L, 2] -> [B, C, L]
        future = self.to_horizon(hidden).transpose(1, 2)  # [B, C, L] -> [B, C, H] -> [B, H, C]
        out: Tensor = self.output(future)  # [B, H, C] -> [B, H, O]
        return out
