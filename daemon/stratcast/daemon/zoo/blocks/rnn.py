"""Recurrent layers that also run under ``torch.func.vmap``; the encoder / MLP decoder of :mod:`lstm` and :mod:`gru`.

``nn.LSTM``, ``nn.GRU`` and their cells have no ``vmap`` rule, so a model built on them cannot be stacked for
per-strategy training. :func:`recur` and :func:`cell_step` run such a module as it is (the fused kernel, cuDNN on a
GPU) in batch mode, and inside a functorch transform (per-strategy mode calls members through
``vmap(functional_call)``) run the same parameters through hand-written cells: the LSTM of Hochreiter and
Schmidhuber, "Long Short-Term Memory", Neural Computation 1997, with the forget gate of Gers, Schmidhuber and
Cummins, "Learning to Forget: Continual Prediction with LSTM", Neural Computation 2000, and the gated recurrent
unit of Cho et al., "Learning Phrase Representations using RNN Encoder-Decoder for Statistical Machine
Translation", EMNLP 2014. The cells follow PyTorch's gate order (LSTM ``i, f, g, o``; GRU ``r, z, n``) and read the
module's own parameters (``weight_ih_l{k}``, ``weight_hh_l{k}``, ``bias_ih_l{k}``, ``bias_hh_l{k}``, a ``_reverse``
suffix for the backward direction), so one state dict serves both paths and they agree to float tolerance.

The encoder / decoder: an RNN reads the window one step at a time (each step's input is the value and its nonzero
indicator), and an MLP maps the last layer's final hidden state to all ``H * O`` outputs at once (a multi-output
decoder, which avoids feeding predictions back in and so accumulates no error across the horizon).

A dilated LSTM (Chang et al., "Dilated Recurrent Neural Networks", NeurIPS 2017; the recurrence of Smyl's ES-RNN,
:mod:`esrnn`) updates step ``t``'s state from step ``t - d``'s: the sequence is ``d`` interleaved sequences, each
read by the same LSTM, so a long window is covered in ``T / d`` recurrent steps.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Self

import torch
from torch import Tensor, nn
from torch.nn import functional as F

from stratcast.daemon.zoo.blocks.layers import mlp, to_horizon, value_and_indicator
from stratcast.daemon.zoo.contract import ModelConfig, check_model_args, param
from stratcast.daemon.zoo.search import among, floats, ints

_by_hand = False
"""Set by :func:`cells_by_hand`: the hand-written cells even outside a functorch transform."""


@contextmanager
def cells_by_hand() -> Iterator[None]:
    """Within the block, :func:`recur` and :func:`cell_step` use the hand-written cells (tests, benchmarks)."""
    global _by_hand
    before, _by_hand = _by_hand, True
    try:
        yield
    finally:
        _by_hand = before


def hand_written() -> bool:
    """Whether recurrences run through the hand-written cells now.

    Inside any functorch transform (``vmap``, ``grad``, ...) they must, as the fused kernels have no batching rule;
    under ``torch.compile`` (batch mode only) the fused module is traced as it is.
    """
    if torch.compiler.is_compiling():
        return False
    return _by_hand or torch._C._are_functorch_transforms_active()


def recur(rnn: nn.LSTM | nn.GRU, x: Tensor) -> Tensor:
    """Run a batch-first ``rnn`` over ``x [B, L, in]`` from a zero state: the last layer's states ``[B, L, D*hidden]``.

    The module itself in batch mode; the hand-written cells on its parameters under a functorch transform.
    """
    if not hand_written():
        out: Tensor = rnn(x)[0]
        return out
    if not rnn.batch_first or (isinstance(rnn, nn.LSTM) and rnn.proj_size > 0):
        raise ValueError("the hand-written recurrence takes batch-first modules without projections only")
    cell = lstm_cell if isinstance(rnn, nn.LSTM) else gru_cell
    directions = ("", "_reverse") if rnn.bidirectional else ("",)
    for layer in range(rnn.num_layers):
        if layer > 0:
            x = F.dropout(x, rnn.dropout, rnn.training)  # nn.LSTM/GRU: between layers, not after the last
        runs = []
        for suffix in directions:
            w = [getattr(rnn, f"{name}_l{layer}{suffix}") if rnn.bias or "weight" in name else None for name in _NAMES]
            runs.append(_unroll(cell, x, w, rnn.hidden_size, reverse=bool(suffix)))
        x = torch.cat(runs, dim=-1) if len(runs) > 1 else runs[0]  # D x [B, L, hidden] -> [B, L, D*hidden]
    return x


_NAMES = ("weight_ih", "weight_hh", "bias_ih", "bias_hh")
"""A layer's parameters: ``[G*hidden, in]``, ``[G*hidden, hidden]``, ``[G*hidden]`` twice (``G`` gates: 4 or 3)."""
_Cell = Callable[[Tensor, Tensor, Tensor, Tensor, Tensor | None], tuple[Tensor, Tensor]]
"""A hand-written cell: ``(W_ih x + b_ih, h, c, W_hh, b_hh) -> (h', c')``."""


def _unroll(cell: _Cell, x: Tensor, weights: list[Tensor | None], hidden: int, *, reverse: bool) -> Tensor:
    """One direction of one layer over ``x [B, L, in]``: its states ``[B, L, hidden]`` in the input's order."""
    w_ih, w_hh, b_ih, b_hh = weights
    assert w_ih is not None and w_hh is not None
    # every step's input part at once; unbind, not indexing per step, whose backward would write a whole
    # [B, L, G*hidden] gradient for every step (quadratic in L: ten times slower at L = 52)
    inputs = F.linear(x, w_ih, b_ih).unbind(1)  # [B, L, in] -> [B, L, G*hidden] -> L x [B, G*hidden]
    h = x.new_zeros(x.shape[0], hidden)
    c = torch.zeros_like(h)
    states: list[Tensor] = []
    for projected in reversed(inputs) if reverse else inputs:
        h, c = cell(projected, h, c, w_hh, b_hh)
        states.append(h)
    if reverse:
        states.reverse()
    return torch.stack(states, dim=1)  # L x [B, hidden] -> [B, L, hidden]


def lstm_cell(projected: Tensor, h: Tensor, c: Tensor, w_hh: Tensor, b_hh: Tensor | None) -> tuple[Tensor, Tensor]:
    """One LSTM step from the input's projection ``W_ih x + b_ih [B, 4*hidden]``: the new ``(h, c)``.

    ``i, f, g, o = W_ih x + b_ih + W_hh h + b_hh`` (PyTorch's gate order); ``c' = sigma(f) c + sigma(i) tanh(g)``,
    ``h' = sigma(o) tanh(c')``.
    """
    gates = projected + F.linear(h, w_hh, b_hh)  # [B, 4*hidden]
    i, f, g, o = gates.chunk(4, dim=-1)  # [B, 4*hidden] -> 4 x [B, hidden]
    c = torch.sigmoid(f) * c + torch.sigmoid(i) * torch.tanh(g)
    return torch.sigmoid(o) * torch.tanh(c), c


def gru_cell(projected: Tensor, h: Tensor, c: Tensor, w_hh: Tensor, b_hh: Tensor | None) -> tuple[Tensor, Tensor]:
    """One GRU step from the input's projection ``W_ih x + b_ih [B, 3*hidden]``: the new ``h`` (``c`` passed on).

    ``r = sigma(x_r + h_r)``, ``z = sigma(x_z + h_z)``, ``n = tanh(x_n + r h_n)``, ``h' = (1 - z) n + z h``, where
    ``x_* = W_i* x + b_i*`` and ``h_* = W_h* h + b_h*`` (PyTorch's form: the reset gate scales ``h_n`` after its bias).
    """
    x_r, x_z, x_n = projected.chunk(3, dim=-1)  # [B, 3*hidden] -> 3 x [B, hidden]
    h_r, h_z, h_n = F.linear(h, w_hh, b_hh).chunk(3, dim=-1)  # [B, hidden] -> 3 x [B, hidden]
    r, z = torch.sigmoid(x_r + h_r), torch.sigmoid(x_z + h_z)
    n = torch.tanh(x_n + r * h_n)
    return n + z * (h - n), c


def cell_step(cell: nn.LSTMCell | nn.GRUCell, x: Tensor, state: tuple[Tensor, Tensor]) -> tuple[Tensor, Tensor]:
    """One step of ``cell`` on ``x [B, in]`` from ``(h, c)``, each ``[B, hidden]``: the new ``(h, c)``.

    A GRU cell passes the (unused) ``c`` on unchanged. The module itself in batch mode; the hand-written cell on its
    parameters under a functorch transform.
    """
    lstm = isinstance(cell, nn.LSTMCell)
    if hand_written():
        step = lstm_cell if lstm else gru_cell
        return step(F.linear(x, cell.weight_ih, cell.bias_ih), state[0], state[1], cell.weight_hh, cell.bias_hh)
    if isinstance(cell, nn.LSTMCell):
        h, c = cell(x, state)
        return h, c
    return cell(x, state[0]), state[1]


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
        states = recur(self.encoder, value_and_indicator(x))  # [B, L, 2] -> [B, L, hidden]
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
