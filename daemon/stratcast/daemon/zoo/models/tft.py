"""Temporal Fusion Transformer: variable selection, an LSTM encoder-decoder and interpretable attention.

From Lim, Arik, Loeff and Pfister, "Temporal Fusion Transformers for Interpretable Multi-horizon Time Series
Forecasting", International Journal of Forecasting 2021, written from its equations (section 4):

1. Inputs. Each past week has three variables: the value, its nonzero indicator (a flat week told apart from a
   small return) and its time index; each future week has one, its time index (the paper's "known input": the
   one future input a window of profits has). Continuous variables are embedded by a linear map each, the time
   index by an embedding table over the ``L + H`` relative positions.
2. Variable selection networks (eq. 6-8), one over the past variables, one over the future ones, weigh the
   embedded variables into one vector per step (``blocks/gated.py``).
3. An LSTM encoder reads the past steps and an LSTM decoder, started from the encoder's final state, the future
   ones (the sequence-to-sequence layer); a gated skip adds its output back to its input (eq. 17).
4. Static enrichment: a GRN per position (without a static context here, see below).
5. Interpretable multi-head self-attention over all ``L + H`` positions with the decoder's causal mask (eq. 13-16;
   ``blocks/attention.py``), a gated skip, then the position-wise GRN and a last gated skip over the whole
   temporal fusion decoder back to the LSTM layer (eq. 18-22).
6. A linear map of each future position to its ``O`` outputs: with ``loss=quantile`` (the catalog's training
   default, as the paper trains) one per quantile level, else whatever the run's output head asks.

Deviations: a window of one strategy has no static covariates (the series id would need per-series parameters),
so the static covariate encoders and their four context vectors are left out: the LSTM starts from zeros and the
enrichment GRN has no context. Inputs are the value and indicator only (no other observed inputs exist). Not
stackable: ``nn.LSTM`` has no ``torch.func.vmap`` rule.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Self

import torch
from torch import Tensor, nn

from stratcast.daemon.zoo.blocks.attention import InterpretableAttention, check_heads
from stratcast.daemon.zoo.blocks.gated import GRN, GateAddNorm, VariableSelection
from stratcast.daemon.zoo.blocks.layers import value_and_indicator
from stratcast.daemon.zoo.contract import ModelConfig, check_model_args, param
from stratcast.daemon.zoo.search import among, floats, ints

PAST_VARIABLES = 3
"""Per past step: the value, its nonzero indicator and the time index."""


@dataclass(frozen=True, kw_only=True)
class TFTConfig(ModelConfig):
    """Temporal Fusion Transformer architecture."""

    d_model: int = param(
        64, lo=1, hi=4096, search=among(32, 64, 128), help="width of every hidden state (divisible by n_heads)"
    )
    n_heads: int = param(4, lo=1, hi=64, search=among(1, 2, 4), help="interpretable attention heads")
    lstm_layers: int = param(1, lo=1, hi=8, search=ints(1, 2), help="stacked layers of the LSTM encoder and decoder")
    dropout: float = param(
        0.1, lo=0.0, hi=0.9, search=floats(0.0, 0.3), help="dropout before every gate and on the attention weights"
    )

    def __post_init__(self) -> None:
        super().__post_init__()
        check_heads(type(self).__name__, self.d_model, self.n_heads)

    @classmethod
    def tiny(cls) -> Self:
        """A 16-wide model with two heads (8 wide fits the harness's sines too slowly)."""
        return cls(d_model=16, n_heads=2)


class TFT(nn.Module):
    """Temporal Fusion Transformer over a window of one series, decoded over the whole horizon in one pass."""

    def __init__(self, config: TFTConfig, *, input_size: int, horizon: int, n_outputs: int = 1) -> None:
        super().__init__()
        check_model_args(input_size, horizon, n_outputs)
        d, dropout, self.input_size = config.d_model, config.dropout, input_size
        self.value_embed, self.indicator_embed = nn.Linear(1, d), nn.Linear(1, d)  # one linear map per variable
        self.position = nn.Embedding(input_size + horizon, d)
        self.past_selection = VariableSelection(PAST_VARIABLES, d, dropout=dropout)
        self.future_selection = VariableSelection(1, d, dropout=dropout)
        between = dropout if config.lstm_layers > 1 else 0.0  # nn.LSTM warns about dropout with one layer
        self.encoder = nn.LSTM(d, d, config.lstm_layers, batch_first=True, dropout=between)
        self.decoder = nn.LSTM(d, d, config.lstm_layers, batch_first=True, dropout=between)
        self.lstm_gate = GateAddNorm(d, d, dropout)
        self.enrichment = GRN(d, d, d, dropout=dropout)
        self.attention = InterpretableAttention(d, config.n_heads, dropout, causal=True)
        self.attention_gate = GateAddNorm(d, d, dropout)
        self.position_wise = GRN(d, d, d, dropout=dropout)
        self.output_gate = GateAddNorm(d, d, dropout)
        self.readout = nn.Linear(d, n_outputs)

    def forward(self, x: Tensor) -> Tensor:
        """Map ``[B, L]`` to ``[B, H, O]``."""
        return self.decode(x)[0]

    def decode(self, x: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        """The forecast ``[B, H, O]``, the past variables' weights ``[B, L, 3]`` and the attention ``[B, H, L+H]``."""
        b, steps = x.shape[0], self.position.num_embeddings
        features = value_and_indicator(x).unsqueeze(-1)  # [B, L, 2] -> [B, L, 2, 1]
        positions = self.position.weight.expand(b, -1, -1)  # [L + H, D] -> [B, L + H, D]
        past = torch.stack(
            [self.value_embed(features[:, :, 0]), self.indicator_embed(features[:, :, 1]), positions[:, : x.shape[1]]],
            dim=2,
        )  # 3 x [B, L, D] -> [B, L, 3, D]
        past_selected, past_weights = self.past_selection(past)  # [B, L, D], [B, L, 3]
        future_selected, _ = self.future_selection(positions[:, x.shape[1] :, None])  # [B, H, 1, D] -> [B, H, D]
        encoded, state = self.encoder(past_selected)  # [B, L, D]
        decoded, _ = self.decoder(future_selected, state)  # [B, H, D], from the encoder's final (h, c)
        selected = torch.cat([past_selected, future_selected], dim=1)  # [B, L + H, D]
        temporal = self.lstm_gate(torch.cat([encoded, decoded], dim=1), selected)  # [B, L + H, D]
        enriched = self.enrichment(temporal)
        attended, attention = self.attention(enriched)  # [B, L + H, D], [B, L + H, L + H]
        future = slice(self.input_size, steps)
        fused = self.position_wise(self.attention_gate(attended[:, future], enriched[:, future]))  # [B, H, D]
        out: Tensor = self.readout(self.output_gate(fused, temporal[:, future]))  # [B, H, D] -> [B, H, O]
        return out, past_weights, attention[:, future]
