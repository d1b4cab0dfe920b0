"""LSTM (Hochreiter and Schmidhuber, "Long Short-Term Memory", Neural Computation 1997) as a window encoder.

A stacked LSTM reads the window (value and nonzero indicator per step) and an MLP decodes its last hidden state
into the whole horizon at once, the multi-output encoder/decoder of the MQ-RNN family (Wen et al., "A
Multi-Horizon Quantile Recurrent Forecaster", 2017) without covariates. Shared with :mod:`gru` via ``_rnn``.
"""

from __future__ import annotations

from dataclasses import dataclass

from torch import nn

from stratcast.daemon.zoo.blocks.rnn import RNNConfig, RNNForecaster


@dataclass(frozen=True, kw_only=True)
class LSTMConfig(RNNConfig):
    """LSTM encoder / MLP decoder architecture."""


class LSTM(RNNForecaster):
    """LSTM encoder over the window, MLP decoder to the horizon."""

    def __init__(self, config: LSTMConfig, *, input_size: int, horizon: int, n_outputs: int = 1) -> None:
        super().__init__(nn.LSTM, config, input_size=input_size, horizon=horizon, n_outputs=n_outputs)
