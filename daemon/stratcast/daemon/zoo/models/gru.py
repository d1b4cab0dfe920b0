"""GRU as a window encoder, with an MLP decoder to the horizon.

The gated recurrent unit is from Cho et al., "Learning Phrase Representations using RNN Encoder-Decoder for
Statistical Machine Translation", EMNLP 2014.

A stacked GRU reads the window (value and nonzero indicator per step) and an MLP decodes its last hidden state
into the whole horizon at once; the same encoder/decoder as :mod:`lstm` with the lighter gated unit.
"""

from __future__ import annotations

from dataclasses import dataclass

from torch import nn

from stratcast.daemon.zoo.blocks.rnn import RNNConfig, RNNForecaster


@dataclass(frozen=True, kw_only=True)
class GRUConfig(RNNConfig):
    """GRU encoder / MLP decoder architecture."""


class GRU(RNNForecaster):
    """GRU encoder over the window, MLP decoder to the horizon."""

    def __init__(self, config: GRUConfig, *, input_size: int, horizon: int, n_outputs: int = 1) -> None:
        super().__init__(nn.GRU, config, input_size=input_size, horizon=horizon, n_outputs=n_outputs)
