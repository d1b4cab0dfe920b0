"""The decomposition Transformer's encoder-decoder, shared by Autoformer and FEDformer.

Autoformer (Wu, Xu, Wang and Long, NeurIPS 2021) built it; FEDformer (Zhou et al., ICML 2022) keeps the layout and
swaps the attention (``zoo/blocks/frequency.py``) and the decomposition (``zoo/blocks/decompose.py``). Every layer
decomposes after each sub-layer and carries only the seasonal part on; the trend is taken out progressively:

* Encoder layer: ``S = Decomp(Attn(X) + X).season``, ``X' = Decomp(FFN(S) + S).season``; the encoder's output (the
  past's seasonal information) is the decoder's memory.
* Decoder layer: ``S1, T1 = Decomp(Attn(X) + X)``, ``S2, T2 = Decomp(Cross(S1, memory) + S1)``,
  ``S3, T3 = Decomp(FFN(S2) + S2)``; ``S3`` goes on, and the trend accumulates ``T <- T + W (T1 + T2 + T3)``, ``W`` a
  learned projection from the model width to the series.
* Decoder input: the window's last ``label_len`` steps decomposed; the seasonal part followed by ``H`` zeros
  (embedded) and the trend followed by ``H`` copies of the window's mean (the trend accumulator's start).
* Embedding: each step's value and nonzero indicator with its neighbours', a width-3 convolution (circular at the
  ends, as Informer's token embedding), separately for the encoder and the decoder; no positional encoding.
* Output: a linear read-out of the decoder's seasonal part plus the accumulated trend, the horizon's steps.

A stack's last norm is a layer norm whose mean over time is removed (the seasonal part has none). The trend enters
the location output (output 0, as ``zoo/blocks/norm.py`` puts a level back); the other outputs come from the
seasonal read-out alone. Encoder and decoder stacks are :class:`Checkpointable`, layer by layer.

:class:`DecompositionTransformerConfig` holds the fields both models' configs share (widths, depths, the decoder's
start, dropout, activation, instance normalisation); each model adds its decomposition and attention fields.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import Tensor, nn

from stratcast.daemon.zoo.blocks.attention import check_heads, feed_forward
from stratcast.daemon.zoo.blocks.layers import value_and_indicator
from stratcast.daemon.zoo.blocks.norm import normalised
from stratcast.daemon.zoo.contract import Checkpointable, ModelConfig, param
from stratcast.daemon.zoo.search import among, floats, ints

Decomposition = Callable[[], nn.Module]
"""Builds one decomposition block: ``[B, T, D] -> (trend, season)``, each ``[B, T, D]``."""


@dataclass(frozen=True, kw_only=True)
class DecompositionTransformerConfig(ModelConfig):
    """What Autoformer's and FEDformer's architectures share; each model's config adds its own fields."""

    d_model: int = param(
        64, lo=1, hi=4096, search=among(32, 64, 128), help="width of the token embeddings (divisible by n_heads)"
    )
    n_heads: int = param(
        4,
        lo=1,
        hi=64,
        search=among(2, 4, 8),
        help="heads of the attention (Autoformer: Auto-Correlation; FEDformer: the frequency enhanced blocks)",
    )
    d_ff: int = param(128, lo=1, hi=16384, search=among(64, 128, 256), help="hidden width of the feed-forward networks")
    encoder_layers: int = param(2, lo=1, hi=8, search=ints(1, 3), help="encoder layers")
    decoder_layers: int = param(1, lo=1, hi=8, search=ints(1, 2), help="decoder layers")
    label_len: int = param(
        26,
        lo=1,
        hi=4096,
        search=among(13, 26),
        help="window steps that start the decoder's seasonal and trend inputs (at most the window)",
    )
    dropout: float = param(
        0.1, lo=0.0, hi=0.9, search=floats(0.0, 0.3), help="dropout in the layers and on the embeddings"
    )
    activation: str = param(
        "gelu", choices=("gelu", "relu"), search=among("gelu", "relu"), help="nonlinearity of the feed-forward networks"
    )
    instance_norm: bool = param(
        True,
        choices=(False, True),
        search=among(False, True),
        help="standardise each window by its own mean and std, and return them to the forecast (off: the paper's)",
    )

    def __post_init__(self) -> None:
        super().__post_init__()
        check_heads(type(self).__name__, self.d_model, self.n_heads)


class SeasonalNorm(nn.Module):
    """Layer norm over the features, its mean over time then removed: the seasonal part stays centred."""

    def __init__(self, d_model: int) -> None:
        super().__init__()
        self.norm = nn.LayerNorm(d_model)

    def forward(self, x: Tensor) -> Tensor:
        """Map ``[B, T, D]`` to ``[B, T, D]``."""
        normed: Tensor = self.norm(x)
        return normed - normed.mean(dim=1, keepdim=True)


class TokenEmbedding(nn.Module):
    """Each step's value and nonzero indicator and its two neighbours' (circularly), convolved to ``D`` features."""

    def __init__(self, d_model: int) -> None:
        super().__init__()
        self.conv = nn.Conv1d(2, d_model, kernel_size=3, padding=1, padding_mode="circular")

    def forward(self, steps: Tensor) -> Tensor:
        """Map ``[B, T, 2]`` to ``[B, T, D]``."""
        out: Tensor = self.conv(steps.transpose(1, 2)).transpose(1, 2)  # [B, 2, T] -> [B, D, T] -> [B, T, D]
        return out


class EncoderLayer(nn.Module):
    """Attention and a feed-forward network, each followed by a decomposition that keeps the season."""

    def __init__(
        self, attention: nn.Module, decomposition: Decomposition, d_model: int, d_ff: int, *, dropout: float, act: str
    ) -> None:
        super().__init__()
        self.attention = attention
        self.ffn = feed_forward(d_model, d_ff, dropout=dropout, act=act)
        self.decomp1, self.decomp2 = decomposition(), decomposition()
        self.dropout = nn.Dropout(dropout)

    def forward(self, x: Tensor) -> Tensor:
        """Map ``[B, L, D]`` to ``[B, L, D]``."""
        _, x = self.decomp1(x + self.dropout(self.attention(x)))
        _, season = self.decomp2(x + self.dropout(self.ffn(x)))
        out: Tensor = season
        return out


class DecoderLayer(nn.Module):
    """Self-attention, cross-attention to the memory and a feed-forward network, each followed by a decomposition.

    Returns the season and the layer's trend, ``W (T1 + T2 + T3)`` projected to one channel.
    """

    def __init__(
        self,
        attention: nn.Module,
        cross: nn.Module,
        decomposition: Decomposition,
        d_model: int,
        d_ff: int,
        *,
        dropout: float,
        act: str,
    ) -> None:
        super().__init__()
        self.attention, self.cross = attention, cross
        self.ffn = feed_forward(d_model, d_ff, dropout=dropout, act=act)
        self.decomp1, self.decomp2, self.decomp3 = decomposition(), decomposition(), decomposition()
        self.trend = nn.Linear(d_model, 1)
        self.dropout = nn.Dropout(dropout)

    def forward(self, x: Tensor, memory: Tensor) -> tuple[Tensor, Tensor]:
        """Map ``x`` [B, N, D] and ``memory`` [B, L, D] to the season ``[B, N, D]`` and the trend ``[B, N, 1]``."""
        trend1, x = self.decomp1(x + self.dropout(self.attention(x)))
        trend2, x = self.decomp2(x + self.dropout(self.cross(x, memory)))
        trend3, x = self.decomp3(x + self.dropout(self.ffn(x)))
        return x, self.trend(trend1 + trend2 + trend3)


class Encoder(Checkpointable):
    """Encoder layers in sequence, then a :class:`SeasonalNorm`."""

    def __init__(self, layers: list[EncoderLayer], d_model: int) -> None:
        super().__init__()
        self.layers = nn.ModuleList(layers)
        self.norm = SeasonalNorm(d_model)

    def forward(self, x: Tensor) -> Tensor:
        """Map ``[B, L, D]`` to ``[B, L, D]``."""
        for layer in self.layers:
            x = self.run_block(layer, x)
        out: Tensor = self.norm(x)
        return out


class Decoder(Checkpointable):
    """Decoder layers in sequence, each adding its trend to the accumulator; a :class:`SeasonalNorm` at the end."""

    def __init__(self, layers: list[DecoderLayer], d_model: int) -> None:
        super().__init__()
        self.layers = nn.ModuleList(layers)
        self.norm = SeasonalNorm(d_model)

    def forward(self, x: Tensor, memory: Tensor, trend: Tensor) -> tuple[Tensor, Tensor]:
        """Map ``x`` [B, N, D], ``memory`` [B, L, D] and ``trend`` [B, N, 1] to the season and the trend."""
        for layer in self.layers:
            x, layer_trend = self.run_block(layer, x, memory)
            trend = trend + layer_trend
        out: Tensor = self.norm(x)
        return out, trend


class DecompositionTransformer(nn.Module):
    """The window embedded and encoded; the decoder's seasonal and trend inputs from its last ``label_len`` steps.

    A model builds its encoder, decoder and input decomposition (the attention and decomposition blocks differ)
    and hands them over.
    """

    def __init__(
        self,
        *,
        horizon: int,
        n_outputs: int,
        label_len: int,
        d_model: int,
        dropout: float,
        instance_norm: bool,
        decomposition: nn.Module,
        encoder: Encoder,
        decoder: Decoder,
    ) -> None:
        super().__init__()
        self.horizon, self.label_len, self.instance_norm = horizon, label_len, instance_norm
        self.decomposition, self.encoder, self.decoder = decomposition, encoder, decoder
        self.embed_encoder, self.embed_decoder = TokenEmbedding(d_model), TokenEmbedding(d_model)
        self.dropout = nn.Dropout(dropout)
        self.readout = nn.Linear(d_model, n_outputs)

    def forward(self, x: Tensor) -> Tensor:
        """Map ``[B, L]`` to ``[B, H, O]``."""
        return normalised(self.forecast, x, enabled=self.instance_norm)

    def forecast(self, z: Tensor, x: Tensor) -> Tensor:
        """The forecast ``[B, H, O]`` from (standardised) windows ``z`` and raw windows ``x`` (for the zeros)."""
        b, h = z.shape[0], self.horizon
        recent = z[:, -self.label_len :]  # [B, label_len]
        trend, season = self.decomposition(recent[:, :, None])  # [B, label_len, 1] each
        placeholders = z.new_zeros(b, h)  # [B, H]
        season_in = torch.cat([season[:, :, 0], placeholders], dim=1)  # [B, label_len + H]
        trend_in = torch.cat([trend[:, :, 0], z.mean(1, keepdim=True).expand(b, h)], dim=1)  # [B, label_len + H]
        steps = torch.cat([x[:, -self.label_len :], placeholders], dim=1)  # the raw steps, for the zero indicator
        memory = self.encoder(self.dropout(self.embed_encoder(value_and_indicator(x, value=z))))  # [B, L, D]
        queries = self.dropout(self.embed_decoder(value_and_indicator(steps, value=season_in)))  # [B, N, D]
        season_out, trend_out = self.decoder(queries, memory, trend_in[:, :, None])  # [B, N, D], [B, N, 1]
        out = self.readout(season_out[:, -h:])  # [B, H, D] -> [B, H, O]
        # the trend joins the location output only: [B, H, 1] beside the other outputs -> [B, H, O]
        return torch.cat([out[..., :1] + trend_out[:, -h:], out[..., 1:]], dim=-1)
