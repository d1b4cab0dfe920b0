"""Recurrent blocks (private): the encoder / MLP decoder of :mod:`lstm` and :mod:`gru`, and a dilated LSTM.

An RNN reads the window one step at a time (each step's input is the value and its nonzero indicator), and an MLP
maps the last layer's final hidden state to all ``H * O`` outputs at once (a multi-output decoder, which avoids
feeding predictions back in and so accumulates no error across the horizon).

A dilated LSTM (Chang et al., "Dilated Recurrent Neural Networks", NeurIPS 2017; the recurrence of Smyl's ES-RNN,
:mod:`esrnn`) updates step ``t``'s state from step ``t - d``'s: the sequence is ``d`` interleaved sequences, each
read by the same LSTM, so a long window is covered in ``T / d`` recurrent steps.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Self

from torch import Tensor, nn
from torch.nn import functional as F

from stratcast.daemon.zoo.blocks.layers import mlp, to_horizon, value_and_indicator
from stratcast.daemon.zoo.contract import ModelConfig, check_model_args, param
from stratcast.daemon.zoo.search import among, floats, ints


@dataclass(frozen=True, kw_only=True)
class RNNConfig(ModelConfig):
    """Architecture of a recurrent encoder with an MLP decoder."""

    hidden_size: int = param(128, lo=1, hi=4096, search=among(32, 64, 128, 256), help="width of the recurrent state")
    num_layers: int = param(2, lo=1, hi=8, search=ints(1, 3), help="stacked recurrent layers")
    dropout: float = param(
        0.0, lo=0.0, hi=0.9, search=floats(0.0, 0.5), help="dropout between recurrent layers and in the decoder"
    )
    decoder_hidden_size: int = param(
        128, lo=1, hi=4096, search=among(32, 64, 128, 256), help="width of the decoder MLP's hidden layers"
    )
    decoder_layers: int = param(
        2, lo=0, hi=8, search=ints(0, 3), help="hidden layers of the decoder MLP (0: one linear map)"
    )

    @classmethod
    def tiny(cls) -> Self:
        """One narrow recurrent layer and one narrow decoder layer."""
        return cls(hidden_size=16, num_layers=1, decoder_hidden_size=16, decoder_layers=1)


class RNNForecaster(nn.Module):
    """Recurrent encoder over the window, MLP decoder from its last hidden state to the horizon."""

    def __init__(
        self,
        rnn_cls: type[nn.LSTM | nn.GRU],
        config: RNNConfig,
        *,
        input_size: int,
        horizon: int,
        n_outputs: int,
    ) -> None:
        super().__init__()
        check_model_args(input_size, horizon, n_outputs)
        self.horizon, self.n_outputs = horizon, n_outputs
        # nn.LSTM/GRU warn when given dropout with one layer: it would apply to nothing.
        between = config.dropout if config.num_layers > 1 else 0.0
        self.encoder = rnn_cls(2, config.hidden_size, config.num_layers, batch_first=True, dropout=between)
        widths = (config.decoder_hidden_size,) * config.decoder_layers
        self.decoder = mlp(config.hidden_size, widths, act="relu", dropout=config.dropout)
        self.head = nn.Linear(widths[-1] if widths else config.hidden_size, horizon * n_outputs)

    def forward(self, x: Tensor) -> Tensor:
        """Map ``[B, L]`` to ``[B, H, O]``."""
        states, _ = self.encoder(value_and_indicator(x))  # [B, L, 2] -> [B, L, hidden]
        flat: Tensor = self.head(self.decoder(states[:, -1]))  # [B, hidden] -> [B, H*O]
        return to_horizon(flat, self.horizon, self.n_outputs)


class DilatedLSTM(nn.Module):
    """One LSTM layer whose state at step ``t`` follows from step ``t - dilation``: ``[B, T, F]`` -> ``[B, T, D]``."""

    def __init__(self, in_features: int, hidden_size: int, dilation: int) -> None:
        super().__init__()
        self.dilation = dilation
        self.lstm = nn.LSTM(in_features, hidden_size, batch_first=True)

    def forward(self, x: Tensor) -> Tensor:
        """Map ``[B, T, F]`` to ``[B, T, D]``."""
        b, t, f, d = *x.shape, self.dilation
        pad = -t % d  # zero steps before the first, so the last step ends a full round of the d sequences
        padded = F.pad(x, (0, 0, pad, 0))  # [B, T + pad, F]
        rounds = (t + pad) // d
        # [B, rounds * d, F] -> [B, rounds, d, F] -> [B, d, rounds, F] -> [B * d, rounds, F]: one sequence per phase
        strided = padded.reshape(b, rounds, d, f).transpose(1, 2).reshape(b * d, rounds, f)
        states, _ = self.lstm(strided)  # [B * d, rounds, D]
        # [B * d, rounds, D] -> [B, d, rounds, D] -> [B, rounds, d, D] -> [B, rounds * d, D], the padding cut off
        out: Tensor = states.reshape(b, d, rounds, -1).transpose(1, 2).reshape(b, rounds * d, -1)[:, pad:]
        return out


class DilatedLSTMStack(nn.Module):
    """Dilated LSTM layers in sequence, each after the first with a residual connection around it."""

    def __init__(self, in_features: int, hidden_size: int, dilations: tuple[int, ...]) -> None:
        super().__init__()
        widths = (in_features,) + (hidden_size,) * (len(dilations) - 1)
        self.layers = nn.ModuleList(DilatedLSTM(w, hidden_size, d) for w, d in zip(widths, dilations, strict=True))

    def forward(self, x: Tensor) -> Tensor:
        """Map ``[B, T, F]`` to ``[B, T, D]``."""
        for i, layer in enumerate(self.layers):
            x = layer(x) if i == 0 else x + layer(x)
        return x
