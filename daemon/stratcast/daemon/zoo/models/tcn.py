"""TCN: residual blocks of causal dilated convolutions.

From Bai, Kolter and Koltun, "An Empirical Evaluation of Generic Convolutional and Recurrent Networks for Sequence
Modeling", arXiv:1803.01271, 2018.

A stack of residual blocks, each two causal dilated 1-D convolutions (optionally weight-normalised, each followed
by ReLU and dropout) plus a skip connection (a 1x1 convolution where the channel count changes). Level ``i`` has
dilation ``2^i``, so ``num_levels`` levels of kernel ``k`` see ``1 + 2 (k - 1) (2^levels - 1)`` steps. The input
has two channels per step (the value and its nonzero indicator); a linear head maps the channels of the last
``head_steps`` steps to all ``H * O`` outputs.

The causal convolution (with its optional weight normalisation, kept vmap-friendly) lives in ``blocks/conv.py``,
shared with :mod:`bitcn`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Self

import torch
from torch import Tensor, nn

from stratcast.daemon.zoo.blocks.conv import CausalConv1d
from stratcast.daemon.zoo.blocks.layers import to_horizon, value_and_indicator
from stratcast.daemon.zoo.contract import Checkpointable, ModelConfig, check_model_args, param
from stratcast.daemon.zoo.search import among, floats, ints


@dataclass(frozen=True, kw_only=True)
class TCNConfig(ModelConfig):
    """TCN architecture."""

    channels: int = param(64, lo=1, hi=2048, search=among(16, 32, 64, 128), help="channels of every convolution")
    num_levels: int = param(6, lo=1, hi=16, search=ints(3, 7), help="residual blocks; block i has dilation 2^i")
    kernel_size: int = param(3, lo=2, hi=64, search=ints(2, 7), help="width of each causal convolution")
    dropout: float = param(0.1, lo=0.0, hi=0.9, search=floats(0.0, 0.5), help="dropout after each convolution")
    weight_norm: bool = param(
        True, choices=(False, True), search=among(False, True), help="weight-normalise the convolutions"
    )
    head_steps: int = param(
        1, lo=1, hi=1024, search=among(1, 2, 4, 8), help="last steps whose channels feed the linear head"
    )

    @classmethod
    def tiny(cls) -> Self:
        """Three narrow levels."""
        return cls(channels=8, num_levels=3, head_steps=2)


class TemporalBlock(nn.Module):
    """Two causal dilated convolutions with ReLU and dropout, plus a residual connection."""

    def __init__(self, c_in: int, c_out: int, dilation: int, config: TCNConfig) -> None:
        super().__init__()
        k, wn = config.kernel_size, config.weight_norm
        self.conv1 = CausalConv1d(c_in, c_out, k, dilation, weight_norm=wn)
        self.conv2 = CausalConv1d(c_out, c_out, k, dilation, weight_norm=wn)
        self.dropout = nn.Dropout(config.dropout)
        self.skip = nn.Conv1d(c_in, c_out, 1) if c_in != c_out else nn.Identity()

    def forward(self, x: Tensor) -> Tensor:
        """Map ``[B, C_in, L]`` to ``[B, C_out, L]``."""
        out = self.dropout(torch.relu(self.conv1(x)))
        out = self.dropout(torch.relu(self.conv2(out)))
        return torch.relu(out + self.skip(x))


class TCN(Checkpointable):
    """Residual causal dilated convolutions over the window, a linear head on the last steps.

    Activation checkpointing (:class:`Checkpointable`) applies level by level.
    """

    def __init__(self, config: TCNConfig, *, input_size: int, horizon: int, n_outputs: int = 1) -> None:
        super().__init__()
        check_model_args(input_size, horizon, n_outputs)
        if config.head_steps > input_size:
            raise ValueError(f"TCNConfig.head_steps={config.head_steps} exceeds input_size={input_size}")
        self.horizon, self.n_outputs, self.head_steps = horizon, n_outputs, config.head_steps
        c = config.channels
        self.levels = nn.Sequential(
            *(TemporalBlock(2 if i == 0 else c, c, 2**i, config) for i in range(config.num_levels))
        )
        self.head = nn.Linear(c * config.head_steps, horizon * n_outputs)

    def forward(self, x: Tensor) -> Tensor:
        """Map ``[B, L]`` to ``[B, H, O]``."""
        features = value_and_indicator(x).transpose(1, 2)  # [B, L, 2] -> [B, 2, L]
        for level in self.levels:
            features = self.run_block(level, features)  # [B, C_in, L] -> [B, C, L]
        last = features[:, :, -self.head_steps :]  # [B, C, L] -> [B, C, S]
        flat: Tensor = self.head(last.flatten(1))  # [B, C, S] -> [B, C*S] -> [B, H*O]
        return to_horizon(flat, self.horizon, self.n_outputs)
