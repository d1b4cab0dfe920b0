"""CNN-LSTM: a 1-D convolutional feature extractor, an LSTM over its features, a linear read-out to the horizon.

From Donahue et al., "Long-term Recurrent Convolutional Networks for Visual Recognition and Description", CVPR 2015,
as applied to series.

The paper's long-term recurrent convolutional network runs a convolutional network on each input (a video frame)
and an LSTM over the sequence of its features. For a series the frames are the window's steps: causal 1-D
convolutions (ReLU after each) turn each step's value and nonzero indicator, with its recent past, into a feature
vector; a stacked LSTM reads the features in order; a linear layer maps its last hidden state to all ``H * O``
outputs at once.

The LSTM is ``nn.LSTM`` in batch mode; under ``torch.func.vmap`` (per-strategy mode) :func:`~.blocks.rnn.recur`
runs its parameters through hand-written cells, so the model is stackable.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Self

import torch
from torch import Tensor, nn

from stratcast.daemon.zoo.blocks.conv import CausalConv1d
from stratcast.daemon.zoo.blocks.layers import to_horizon, value_and_indicator
from stratcast.daemon.zoo.blocks.rnn import recur
from stratcast.daemon.zoo.contract import ModelConfig, check_model_args, param
from stratcast.daemon.zoo.search import among, floats, ints


@dataclass(frozen=True, kw_only=True)
class CNNLSTMConfig(ModelConfig):
    """CNN-LSTM architecture."""

    conv_channels: int = param(32, lo=1, hi=1024, search=among(16, 32, 64), help="channels of every convolution")
    conv_layers: int = param(2, lo=1, hi=8, search=ints(1, 3), help="causal convolution layers before the LSTM")
    kernel_size: int = param(3, lo=1, hi=52, search=ints(2, 7), help="width of each causal convolution")
    hidden_size: int = param(64, lo=1, hi=4096, search=among(32, 64, 128), help="width of the LSTM's state")
    num_layers: int = param(1, lo=1, hi=8, search=ints(1, 2), help="stacked LSTM layers")
    dropout: float = param(
        0.1, lo=0.0, hi=0.9, search=floats(0.0, 0.5), help="dropout after each convolution and before the read-out"
    )

    @classmethod
    def tiny(cls) -> Self:
        """One narrow convolution and a narrow LSTM."""
        return cls(conv_channels=8, conv_layers=1, hidden_size=16)


class CNNLSTM(nn.Module):
    """Causal convolutions per step, an LSTM over the steps' features, a linear read-out of its last state."""

    def __init__(self, config: CNNLSTMConfig, *, input_size: int, horizon: int, n_outputs: int = 1) -> None:
        super().__init__()
        check_model_args(input_size, horizon, n_outputs)
        self.horizon, self.n_outputs = horizon, n_outputs
        c = config.conv_channels
        self.convs = nn.ModuleList(
            CausalConv1d(2 if i == 0 else c, c, config.kernel_size, 1, weight_norm=False)
            for i in range(config.conv_layers)
        )
        self.dropout = nn.Dropout(config.dropout)
        # nn.LSTM warns when given dropout with one layer: it would apply to nothing.
        between = config.dropout if config.num_layers > 1 else 0.0
        self.lstm = nn.LSTM(c, config.hidden_size, config.num_layers, batch_first=True, dropout=between)
        self.readout = nn.Linear(config.hidden_size, horizon * n_outputs)

    def forward(self, x: Tensor) -> Tensor:
        """Map ``[B, L]`` to ``[B, H, O]``."""
        features = value_and_indicator(x).transpose(1, 2)  # [B, L, 2] -> [B, 2, L]
        for conv in self.convs:
            features = self.dropout(torch.relu(conv(features)))  # [B, C_in, L] -> [B, C, L]
        states = recur(self.lstm, features.transpose(1, 2))  # [B, C, L] -> [B, L, C] -> [B, L, hidden]
        flat: Tensor = self.readout(self.dropout(states[:, -1]))  # [B, hidden] -> [B, H*O]
        return to_horizon(flat, self.horizon, self.n_outputs)
