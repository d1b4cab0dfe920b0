"""Seq2Seq with attention: a bidirectional recurrent encoder and a recurrent decoder with additive attention.

From Bahdanau, Cho and Bengio, "Neural Machine Translation by Jointly Learning to Align and Translate", ICLR 2015.

A bidirectional recurrent network encodes the window (each step's value and nonzero indicator) into one
annotation per step, the forward and backward states side by side. A recurrent decoder is unrolled over the
horizon: at step ``i`` additive attention from its previous state ``s_{i-1}`` over the annotations gives a
context ``c_i``; the new state is ``s_i = cell([y_{i-1}, c_i], s_{i-1})`` and the step's outputs ``y_i`` a linear
map of ``[s_i, c_i]``. As in the paper, ``s_0 = tanh(W h_1)`` from the backward encoder's state at the first step,
and ``y_0`` is a learned start vector (the paper's start symbol). Each forecast step is fed back as the next
step's input, which is the paper's decoding, so errors may accumulate across a long horizon.

The paper's recurrent unit is the gated one now called the GRU (``cell="gru"``, the default). ``cell="lstm"``
swaps in LSTMs (the decoder's cell state starts at zero): on the CPU, torch 2.13's ``nn.GRU`` backward pass is
about ten times slower than ``nn.LSTM``'s at these sizes (measured: 3.2 s against 0.3 s for 200 steps of a
bidirectional width-8 encoder over 32 steps), so the tiny config uses it.

Stackable: under ``torch.func.vmap`` (per-strategy mode) :func:`~.blocks.rnn.recur` and
:func:`~.blocks.rnn.cell_step` run the encoder's and the decoder's parameters through hand-written cells; batch mode
keeps the fused ``nn.GRU``/``nn.LSTM``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Self

import torch
from torch import Tensor, nn

from stratcast.daemon.zoo.blocks.attention import AdditiveAttention
from stratcast.daemon.zoo.blocks.layers import value_and_indicator
from stratcast.daemon.zoo.blocks.rnn import cell_step, recur
from stratcast.daemon.zoo.contract import ModelConfig, check_model_args, param
from stratcast.daemon.zoo.search import among, floats, ints


@dataclass(frozen=True, kw_only=True)
class Seq2SeqConfig(ModelConfig):
    """Seq2Seq-with-attention architecture."""

    cell: str = param(
        "gru", choices=("gru", "lstm"), search=among("gru", "lstm"), help="recurrent unit of encoder and decoder"
    )
    encoder_size: int = param(
        64, lo=1, hi=4096, search=among(32, 64, 128), help="width of each direction of the encoder's state"
    )
    encoder_layers: int = param(1, lo=1, hi=8, search=ints(1, 2), help="stacked bidirectional encoder layers")
    decoder_size: int = param(64, lo=1, hi=4096, search=among(32, 64, 128), help="width of the decoder's state")
    attention_size: int = param(
        32, lo=1, hi=4096, search=among(16, 32, 64), help="width of the additive attention's hidden layer"
    )
    dropout: float = param(
        0.1, lo=0.0, hi=0.9, search=floats(0.0, 0.5), help="dropout on the annotations and between encoder layers"
    )

    @classmethod
    def tiny(cls) -> Self:
        """Narrow LSTMs (faster than GRUs on the CPU); a 16-wide decoder (at 8 it fits the harness's sines slowly)."""
        return cls(cell="lstm", encoder_size=8, decoder_size=16, attention_size=8)


class Seq2Seq(nn.Module):
    """Bidirectional recurrent encoder, recurrent decoder unrolled over the horizon with additive attention."""

    def __init__(self, config: Seq2SeqConfig, *, input_size: int, horizon: int, n_outputs: int = 1) -> None:
        super().__init__()
        check_model_args(input_size, horizon, n_outputs)
        self.horizon = horizon
        e, d = config.encoder_size, config.decoder_size
        # nn.GRU warns when given dropout with one layer: it would apply to nothing.
        between = config.dropout if config.encoder_layers > 1 else 0.0
        rnn, cell = (nn.LSTM, nn.LSTMCell) if config.cell == "lstm" else (nn.GRU, nn.GRUCell)
        self.encoder = rnn(2, e, config.encoder_layers, batch_first=True, bidirectional=True, dropout=between)
        self.dropout = nn.Dropout(config.dropout)
        self.init_state = nn.Linear(e, d)
        self.attention = AdditiveAttention(d, 2 * e, config.attention_size)
        self.cell = cell(n_outputs + 2 * e, d)
        self.output = nn.Linear(d + 2 * e, n_outputs)
        self.start = nn.Parameter(torch.zeros(n_outputs))

    def forward(self, x: Tensor) -> Tensor:
        """Map ``[B, L]`` to ``[B, H, O]``."""
        return self.decode(x)[0]

    def decode(self, x: Tensor) -> tuple[Tensor, Tensor]:
        """The forecast ``[B, H, O]`` of windows ``[B, L]`` and the attention weights ``[B, H, L]`` behind it."""
        annotations = recur(self.encoder, value_and_indicator(x))  # [B, L, 2] -> [B, L, 2E]
        annotations = self.dropout(annotations)
        backward_first = annotations[:, 0, annotations.shape[-1] // 2 :]  # [B, L, 2E] -> [B, E]
        hidden = torch.tanh(self.init_state(backward_first))  # [B, E] -> [B, D]
        state = (hidden, torch.zeros_like(hidden))
        projected = self.attention.project_keys(annotations)  # [B, L, 2E] -> [B, L, A]
        previous = self.start.expand(x.shape[0], -1)  # [O] -> [B, O]
        outputs, weights = [], []
        for _ in range(self.horizon):
            context, step_weights = self.attention(state[0], annotations, projected)  # [B, 2E], [B, L]
            state = self.step(torch.cat([previous, context], dim=-1), state)  # [B, O + 2E] -> [B, D] each
            previous = self.output(torch.cat([state[0], context], dim=-1))  # [B, D + 2E] -> [B, O]
            outputs.append(previous)
            weights.append(step_weights)
        return torch.stack(outputs, dim=1), torch.stack(weights, dim=1)  # H x [B, O] -> [B, H, O]; [B, H, L]

    def step(self, inputs: Tensor, state: tuple[Tensor, Tensor]) -> tuple[Tensor, Tensor]:
        """One decoder step: the new (hidden, cell) state; a GRU passes on the unused cell state unchanged."""
        return cell_step(self.cell, inputs, state)
