"""The vanilla Transformer (Vaswani et al., "Attention Is All You Need", NeurIPS 2017) applied to forecasting.

Each input step is embedded from its value and a nonzero indicator (a flat week is told apart from a small
return) by one linear layer and given the fixed sinusoidal positional encoding of the paper; an encoder of
post-norm self-attention layers reads the window. The decoder's tokens are the ``H`` horizon steps: one learned
query per step plus its position (continuing after the window's), so the whole horizon is decoded in one pass.
Each decoder layer runs causal self-attention over the horizon queries (step ``h`` sees steps ``1..h``), then
cross-attention to the encoder's output, then a feed-forward network, as the paper's decoder does; a linear
read-out maps each decoded step to its ``O`` outputs.

Deviation from the paper: the decoder is not fed its own previous outputs (no autoregressive loop, whose
errors compound over a 52-week horizon and whose training needs teacher forcing); the learned horizon queries
take their place, which keeps training and forecasting one pass each.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Self

import torch
from torch import Tensor, nn

from stratcast.daemon.zoo.blocks.attention import Decoder, Encoder, check_heads, sinusoidal_positions
from stratcast.daemon.zoo.blocks.layers import value_and_indicator
from stratcast.daemon.zoo.contract import ModelConfig, check_model_args, param
from stratcast.daemon.zoo.search import among, floats, ints


@dataclass(frozen=True, kw_only=True)
class TransformerConfig(ModelConfig):
    """Transformer architecture."""

    d_model: int = param(
        64, lo=1, hi=4096, search=among(32, 64, 128), help="width of the token embeddings (divisible by n_heads)"
    )
    n_heads: int = param(4, lo=1, hi=64, search=among(2, 4, 8), help="attention heads")
    d_ff: int = param(128, lo=1, hi=16384, search=among(64, 128, 256), help="hidden width of the feed-forward networks")
    encoder_layers: int = param(2, lo=1, hi=24, search=ints(1, 3), help="encoder layers")
    decoder_layers: int = param(1, lo=1, hi=24, search=ints(1, 2), help="decoder layers")
    dropout: float = param(
        0.1, lo=0.0, hi=0.9, search=floats(0.0, 0.3), help="dropout in the layers and on the embeddings"
    )
    activation: str = param(
        "gelu", choices=("gelu", "relu"), search=among("gelu", "relu"), help="nonlinearity of the feed-forward networks"
    )

    def __post_init__(self) -> None:
        super().__post_init__()
        check_heads(type(self).__name__, self.d_model, self.n_heads)

    @classmethod
    def tiny(cls) -> Self:
        """One narrow encoder layer and one narrow decoder layer."""
        return cls(d_model=16, n_heads=2, d_ff=32, encoder_layers=1, decoder_layers=1)


class Transformer(nn.Module):
    """Embedded window through an encoder; horizon queries through a causal decoder with cross-attention."""

    def __init__(self, config: TransformerConfig, *, input_size: int, horizon: int, n_outputs: int = 1) -> None:
        super().__init__()
        check_model_args(input_size, horizon, n_outputs)
        d, self.input_size = config.d_model, input_size
        self.embed = nn.Linear(2, d)
        self.queries = nn.Parameter(torch.empty(horizon, d).normal_(0.0, 0.02))
        self.register_buffer("positions", sinusoidal_positions(input_size + horizon, d), persistent=False)
        self.dropout = nn.Dropout(config.dropout)
        self.encoder = Encoder(
            config.encoder_layers, d, config.n_heads, config.d_ff, dropout=config.dropout, act=config.activation
        )
        self.decoder = Decoder(
            config.decoder_layers, d, config.n_heads, config.d_ff, dropout=config.dropout, act=config.activation
        )
        self.readout = nn.Linear(d, n_outputs)

    def forward(self, x: Tensor) -> Tensor:
        """Map ``[B, L]`` to ``[B, H, O]``."""
        positions = self.get_buffer("positions")  # [L + H, D]
        tokens = self.embed(value_and_indicator(x)) + positions[: self.input_size]  # [B, L, 2] -> [B, L, D]
        memory = self.encoder(self.dropout(tokens))  # [B, L, D]
        queries = self.queries + positions[self.input_size :]  # [H, D]
        decoded = self.decoder(self.dropout(queries.expand(x.shape[0], -1, -1)), memory)  # [B, H, D]
        out: Tensor = self.readout(decoded)  # [B, H, D] -> [B, H, O]
        return out
